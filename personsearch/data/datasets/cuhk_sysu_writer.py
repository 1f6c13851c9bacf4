"""Write person-search annotations in CUHK-SYSU's original MATLAB layout.

Used by the synthetic dataset (so that it goes through the real CUHK-SYSU loader) and by the tests
(tiny trees in the exact original format). The layouts are those ``scipy.io.loadmat`` returns for
the original files (see ``datasets/README.md``)::

    annotation/Images.mat               Img: struct (1, N_images) {imname, nAppear, box}
                                          box: struct (1, nAppear) {idlocate (1x4 x y w h), ishard}
    annotation/pool.mat                 pool: cell (N_test, 1) of image names
    annotation/test/train_test/Train.mat   Train: cell (N_ids, 1) of struct (1,1)
                                          {idname, nAppear, scene: struct (1, nAppear)
                                           {imname, idlocate, ishard}}
    annotation/test/train_test/TestG{N}.mat  TestG{N}: struct (1, N_queries) {Query, Gallery}
                                          Query: struct (1,1) {imname, idlocate, ishard, idname}
                                          Gallery: struct (1, N) {imname, idlocate, ishard};
                                          idlocate is empty (1x0) where the person is absent
    annotation/test/subset/Resolution.mat  Test_Size: same layout as TestG{N} (low-resolution)
    annotation/test/subset/Occlusion.mat   Occlusion1: same layout (occluded queries)
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.io

BoxXYWH = Sequence[float]

TEST_DIR = os.path.join("annotation", "test", "train_test")
SUBSET_DIR = os.path.join("annotation", "test", "subset")
# file stem -> variable name inside the file, for the two official query subsets
SUBSET_FILES = {"Resolution": "Test_Size", "Occlusion": "Occlusion1"}


def _str(s: str) -> np.ndarray:
    return np.array([s])


def _box(box: Optional[BoxXYWH]) -> np.ndarray:
    if box is None:
        return np.zeros((1, 0))
    return np.asarray(box, dtype=np.float64).reshape(1, 4)


def _struct(fields: Sequence[str], rows: List[Tuple]) -> np.ndarray:
    """A MATLAB struct array of shape (1, len(rows))."""
    arr = np.empty((1, len(rows)), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        arr[0, i] = row
    return arr


def write_images_mat(root: str, images: List[Tuple[str, List[BoxXYWH]]]) -> None:
    """Write ``annotation/Images.mat``.

    Args:
        images: ``(image name, [box x y w h, ...])`` for every image, train and test.
    """
    rows = []
    for name, boxes in images:
        box = _struct(["idlocate", "ishard"], [(_box(b), np.zeros((1, 1))) for b in boxes])
        rows.append((_str(name), np.array([[float(len(boxes))]]), box))
    _save(
        root,
        os.path.join("annotation", "Images.mat"),
        "Img",
        _struct(["imname", "nAppear", "box"], rows),
    )


def write_pool_mat(root: str, test_images: Sequence[str]) -> None:
    """Write ``annotation/pool.mat``: the test (gallery) image names, in order."""
    cell = np.empty((len(test_images), 1), dtype=object)
    for i, name in enumerate(test_images):
        cell[i, 0] = _str(name)
    _save(root, os.path.join("annotation", "pool.mat"), "pool", cell)


def write_train_mat(root: str, identities: List[Tuple[str, List[Tuple[str, BoxXYWH]]]]) -> None:
    """Write ``Train.mat``.

    Args:
        identities: ``(idname, [(image name, box x y w h), ...])`` per training identity; the
            position in this list becomes the identity's person_id.
    """
    cell = np.empty((len(identities), 1), dtype=object)
    for i, (idname, scenes) in enumerate(identities):
        scene = _struct(
            ["imname", "idlocate", "ishard"],
            [(_str(im), _box(b), np.zeros((1, 1))) for im, b in scenes],
        )
        cell[i, 0] = _struct(
            ["idname", "nAppear", "scene"],
            [(_str(idname), np.array([[float(len(scenes))]]), scene)],
        )
    _save(root, os.path.join(TEST_DIR, "Train.mat"), "Train", cell)


def _protocol_struct(queries: List[Dict]) -> np.ndarray:
    rows = []
    for q in queries:
        im, box = q["query"]
        query = _struct(
            ["imname", "idlocate", "ishard", "idname"],
            [(_str(im), _box(box), np.zeros((1, 1)), _str(q.get("idname", "")))],
        )
        gallery = _struct(
            ["imname", "idlocate", "ishard"],
            [(_str(g_im), _box(g_box), np.zeros((1, 1))) for g_im, g_box in q["gallery"]],
        )
        rows.append((query, gallery))
    return _struct(["Query", "Gallery"], rows)


def write_test_protocol_mat(root: str, gallery_size: int, queries: List[Dict]) -> None:
    """Write ``TestG{gallery_size}.mat``.

    Args:
        queries: per query ``{"query": (image name, box x y w h), "idname": str, "gallery":
            [(image name, box x y w h or None), ...]}``; list positive gallery entries first,
            as the original files do.
    """
    key = f"TestG{gallery_size}"
    _save(root, os.path.join(TEST_DIR, key + ".mat"), key, _protocol_struct(queries))


def write_subset_mat(root: str, subset: str, queries: List[Dict]) -> None:
    """Write ``subset/Resolution.mat`` or ``subset/Occlusion.mat`` (same layout as TestG{N})."""
    key = SUBSET_FILES[subset]
    _save(root, os.path.join(SUBSET_DIR, subset + ".mat"), key, _protocol_struct(queries))


def _save(root: str, rel: str, key: str, value: np.ndarray) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, {key: value})
