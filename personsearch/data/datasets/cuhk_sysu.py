"""CUHK-SYSU: read the original MATLAB annotation files into person-search records.

Expected tree (see ``datasets/README.md``)::

    CUHK-SYSU/
      Image/SSM/*.jpg
      annotation/Images.mat                    every image and its boxes (x, y, w, h)
      annotation/pool.mat                      the test (gallery) image names
      annotation/test/train_test/Train.mat     the training identities and their boxes
      annotation/test/train_test/TestG{N}.mat  query / gallery lists, N in 50 .. 4000
      annotation/test/subset/Resolution.mat    low-resolution queries (optional)
      annotation/test/subset/Occlusion.mat     occluded queries (optional)

The layouts are those ``scipy.io.loadmat`` returns (written by
:mod:`personsearch.data.datasets.cuhk_sysu_writer`). The loader follows the reference parsing:

* test split = the images of ``pool.mat`` in file order; train split = every other image of
  ``Images.mat``, sorted by name;
* ``Images.mat`` boxes with ``w <= 0`` or ``h <= 0`` are dropped (counted and logged); the rest are
  cast to integers (``astype(int32)``, i.e. truncated) and converted with ``x2 = x + w``,
  ``y2 = y + h``;
* train person ids: the i-th identity of ``Train.mat`` is person ``i``; a ``Train.mat`` box is tied
  to the ``Images.mat`` box of the same image with exactly equal integer ``(x, y, w, h)``;
* test person ids: query ``i`` of the protocol file (``TestG50.mat``, else the smallest
  ``TestG{N}.mat`` present; all of them list the same queries in the same order) is person ``i``,
  and so are its query box and every non-empty gallery box of query ``i``.

Entries that cannot be tied to a box are counted and logged as warnings, never dropped silently.
Malformed files raise :class:`~personsearch.data.datasets.common.DatasetFormatError` naming the file
and the field; missing files raise ``FileNotFoundError`` naming the path.

"""

import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from personsearch.data.datasets.common import (
    SPLITS,
    UNLABELED_PID,
    DatasetFormatError,
    build_records,
    check_dataset_root,
    log_loaded,
    register_person_search_dataset,
)
from personsearch.data.datasets.matlab import (
    Where,
    cell_structs,
    describe_value,
    format_location,
    load_mat_variable,
    mat_cell_strings,
    mat_string,
    struct_elements,
    unwrap_cells,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SPLITS",
    "available_gallery_sizes",
    "load_cuhk_sysu",
    "load_cuhk_sysu_protocol",
    "register_cuhk_sysu",
]

IMAGE_DIR = os.path.join("Image", "SSM")
IMAGES_MAT = os.path.join("annotation", "Images.mat")
POOL_MAT = os.path.join("annotation", "pool.mat")
TEST_DIR = os.path.join("annotation", "test", "train_test")
TRAIN_MAT = os.path.join(TEST_DIR, "Train.mat")
SUBSET_DIR = os.path.join("annotation", "test", "subset")
# subset name -> (file stem, variable name inside the file)
SUBSETS = {"resolution": ("Resolution", "Test_Size"), "occlusion": ("Occlusion", "Occlusion1")}
DEFAULT_TEST_GALLERY_SIZE = 50
_TESTG_RE = re.compile(r"^TestG(\d+)\.mat$")
# box coordinates are cast to int32 by the reference loaders; larger values are a format error
_INT32_LIMIT = 2**31 - 1

# one protocol entry: (image name, raw x y w h box or None where the person is absent)
_Entry = Tuple[str, Optional[np.ndarray]]


def _xywh(value, where: Where) -> Optional[np.ndarray]:
    """A MATLAB 1x4 double box ``[x, y, w, h]`` as a float64 (4,) array; None when empty."""
    value = unwrap_cells(value)
    if isinstance(value, (int, float, np.number)):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf":
        raise DatasetFormatError(
            f"{format_location(where)}: expected 4 numbers [x y w h], got {describe_value(value)}."
        )
    if value.size == 0:
        return None
    if value.size != 4:
        raise DatasetFormatError(
            f"{format_location(where)}: expected 4 numbers [x y w h], got an array of shape "
            f"{value.shape}."
        )
    box = value.astype(np.float64).reshape(4)
    if not np.all(np.isfinite(box)) or np.any(np.abs(box) > _INT32_LIMIT):
        raise DatasetFormatError(
            f"{format_location(where)}: box {box.tolist()} has non-finite or huge values."
        )
    return box


def _int_xywh(box: np.ndarray) -> Tuple[int, int, int, int]:
    # The reference loaders cast the doubles with astype(int32), which truncates towards zero.
    return tuple(int(v) for v in np.trunc(box))


def _xyxy(box_int: Sequence[int]) -> List[float]:
    x, y, w, h = box_int
    return [float(x), float(y), float(x + w), float(y + h)]


def _check_split(split: str, dataset: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"Unknown {dataset} split {split!r}; valid splits are {list(SPLITS)}.")


def register_cuhk_sysu(name: str, root: str, split: str) -> None:
    """Register a CUHK-SYSU split; its records are loaded by :func:`load_cuhk_sysu` on first use.

    The metadata holds ``thing_classes=["person"]``, ``evaluator_type="person_search"``,
    ``protocol="cuhk_sysu"``, ``root`` and ``split`` (the evaluator reads the gallery lists from
    ``root``).

    Raises:
        ValueError: unknown split, or ``name`` already registered.
    """
    _check_split(split, "CUHK-SYSU")
    register_person_search_dataset(
        name,
        lambda root=root, split=split: load_cuhk_sysu(root, split),
        protocol="cuhk_sysu",
        root=root,
        split=split,
    )


# --------------------------------------------------------------------------------------------
# Annotation files
# --------------------------------------------------------------------------------------------
def _read_images_mat(root: str) -> Tuple[Dict[str, List[Optional[np.ndarray]]], List[str]]:
    """``Images.mat`` as ``({image name: [raw x y w h box or None, ...]}, names in file order)``."""
    path = os.path.join(root, IMAGES_MAT)
    _, img = load_mat_variable(path, ["Img"])
    boxes: Dict[str, List[Optional[np.ndarray]]] = {}
    for i, elem in enumerate(struct_elements(img, ("imname", "box"), f"{path}: Img")):
        name = mat_string(elem["imname"], f"{path}: Img[{i}].imname")
        if name in boxes:
            raise DatasetFormatError(f"{path}: image {name!r} is listed twice (Img[{i}]).")
        where = f"{path}: Img[{i}] ({name}).box"
        boxes[name] = [
            _xywh(b["idlocate"], (where, "[", j, "].idlocate"))
            for j, b in enumerate(struct_elements(elem["box"], ("idlocate",), where))
        ]
    return boxes, list(boxes)


def _valid_int_boxes(raw: List[Optional[np.ndarray]]) -> Tuple[List[Tuple[int, ...]], int]:
    """Keep boxes with w > 0 and h > 0 (tested on the doubles, as the reference), cast to int."""
    kept = [_int_xywh(b) for b in raw if b is not None and b[2] > 0 and b[3] > 0]
    return kept, len(raw) - len(kept)


def _read_protocol(path: str, key: str) -> List[Tuple[_Entry, List[_Entry]]]:
    """A ``TestG{N}.mat``-layout file as ``[((query image, box), [(gallery image, box|None)])]``."""
    _, value = load_mat_variable(path, [key])
    out = []
    for i, item in enumerate(struct_elements(value, ("Query", "Gallery"), f"{path}: {key}")):
        qwhere = f"{path}: {key}[{i}].Query"
        query = struct_elements(item["Query"], ("imname", "idlocate"), qwhere)
        if len(query) != 1:
            raise DatasetFormatError(f"{qwhere}: expected one struct, got {len(query)}.")
        q_name = mat_string(query[0]["imname"], f"{qwhere}.imname")
        q_box = _xywh(query[0]["idlocate"], f"{qwhere}.idlocate")
        if q_box is None:
            raise DatasetFormatError(f"{qwhere}.idlocate: the query box is empty.")
        gwhere = f"{path}: {key}[{i}].Gallery"
        gallery = [
            (
                mat_string(g["imname"], (gwhere, "[", j, "].imname")),
                _xywh(g["idlocate"], (gwhere, "[", j, "].idlocate")),
            )
            for j, g in enumerate(struct_elements(item["Gallery"], ("imname", "idlocate"), gwhere))
        ]
        out.append(((q_name, q_box), gallery))
    return out


def available_gallery_sizes(root: str) -> List[int]:
    """The gallery sizes N of the ``TestG{N}.mat`` protocol files present, sorted."""
    folder = os.path.join(root, TEST_DIR)
    if not os.path.isdir(folder):
        return []
    sizes = [int(m.group(1)) for m in map(_TESTG_RE.match, os.listdir(folder)) if m]
    return sorted(sizes)


def _protocol_file(root: str, gallery_size: int, subset: Optional[str]) -> Tuple[str, str]:
    """``(path, variable name)`` of a gallery protocol file; FileNotFoundError when absent."""
    if subset is not None:
        if subset.lower() not in SUBSETS:
            raise ValueError(
                f"Unknown CUHK-SYSU query subset {subset!r}; valid subsets are {list(SUBSETS)}."
            )
        stem, key = SUBSETS[subset.lower()]
        path = os.path.join(root, SUBSET_DIR, stem + ".mat")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"CUHK-SYSU {subset} subset file not found: {path!r} (see datasets/README.md)."
            )
        return path, key
    key = f"TestG{gallery_size}"
    path = os.path.join(root, TEST_DIR, key + ".mat")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"CUHK-SYSU protocol file for gallery size {gallery_size} not found: {path!r}. "
            f"Gallery sizes available under {os.path.join(root, TEST_DIR)!r}: "
            f"{available_gallery_sizes(root)}."
        )
    return path, key


def load_cuhk_sysu_protocol(
    root: str, gallery_size: int = 100, subset: Optional[str] = None
) -> List[dict]:
    """Load the query / gallery lists of a CUHK-SYSU search protocol, exactly as in the file.

    Args:
        root: the CUHK-SYSU folder.
        gallery_size: N of ``annotation/test/train_test/TestG{N}.mat`` (50, 100, ..., 4000).
        subset: ``"resolution"`` or ``"occlusion"`` to load ``annotation/test/subset/
            Resolution.mat`` / ``Occlusion.mat`` instead (``gallery_size`` is then ignored).

    Returns:
        One dict per query, in file order::

            {"query": {"image_id": str, "bbox": [x1, y1, x2, y2]},
             "gallery": [{"image_id": str, "bbox": [x1, y1, x2, y2] or None}, ...]}

        Boxes are integer-valued floats (``x2 = x + w`` on the int-cast values). Gallery entries
        keep the file's order and duplicates; ``bbox`` is None where the person is absent.

    Raises:
        FileNotFoundError: root or protocol file missing (the message lists the gallery sizes
            available).
        DatasetFormatError: the file is not in the ``TestG{N}`` layout; names file and field.
    """
    check_dataset_root(root, "CUHK-SYSU")
    path, key = _protocol_file(root, gallery_size, subset)

    def entry(name: str, box: Optional[np.ndarray]) -> dict:
        return {"image_id": name, "bbox": None if box is None else _xyxy(_int_xywh(box))}

    return [
        {"query": entry(*query), "gallery": [entry(*g) for g in gallery]}
        for query, gallery in _read_protocol(path, key)
    ]


def _default_test_protocol(root: str) -> Tuple[str, str]:
    """The protocol file that defines test person ids: TestG50, else the smallest TestG{N}."""
    sizes = available_gallery_sizes(root)
    if not sizes:
        raise FileNotFoundError(
            f"CUHK-SYSU test split: no protocol file TestG{{N}}.mat in "
            f"{os.path.join(root, TEST_DIR)!r}; the query list and test person ids come from it "
            f"(see datasets/README.md)."
        )
    size = DEFAULT_TEST_GALLERY_SIZE if DEFAULT_TEST_GALLERY_SIZE in sizes else sizes[0]
    return _protocol_file(root, size, None)


# --------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------
class _PidAssigner:
    """Ties (image, x y w h) entries to annotation boxes by exact integer equality."""

    def __init__(self, boxes: Dict[str, List[Tuple[int, ...]]], source: str):
        self.boxes = boxes
        self.pids = {name: [UNLABELED_PID] * len(b) for name, b in boxes.items()}
        self.source = source
        self.unknown_image: List[Where] = []
        self.unmatched: List[Where] = []
        self.conflicts = 0

    def assign(self, name: str, box: Optional[np.ndarray], pid: int, where: Where) -> bool:
        if name not in self.boxes:
            self.unknown_image.append(where)
            return False
        if box is not None:
            target = _int_xywh(box)
            # first exactly equal box wins, as in the reference loaders
            for k, b in enumerate(self.boxes[name]):
                if b == target:
                    if self.pids[name][k] not in (UNLABELED_PID, pid):
                        self.conflicts += 1
                    self.pids[name][k] = pid
                    return True
        self.unmatched.append(where)
        return False

    def log_summary(self) -> None:
        for what, items in (
            ("name an image outside the split", self.unknown_image),
            ("match no annotation box of their image", self.unmatched),
        ):
            if items:
                logger.warning(
                    "%s: %d entries %s and give no person id (first: %s).",
                    self.source,
                    len(items),
                    what,
                    "; ".join(map(format_location, items[:3])),
                )
        if self.conflicts:
            logger.warning(
                "%s: %d boxes were claimed by two identities; the later one was kept.",
                self.source,
                self.conflicts,
            )


def load_cuhk_sysu(root: str, split: str) -> List[dict]:
    """Load a CUHK-SYSU split from the original annotation files.

    Args:
        root: the CUHK-SYSU folder (holding ``Image/SSM`` and ``annotation``).
        split: ``"train"`` or ``"test"``.

    Returns:
        Records in the convention of :mod:`personsearch.data.datasets.common`: train images sorted
        by name, test images in ``pool.mat`` order. Test records of images that hold queries carry
        ``queries`` (query ``i`` of the protocol file has ``query_index`` and ``person_id`` ``i``).

    Raises:
        ValueError: unknown split.
        FileNotFoundError: the root, an annotation file or an image is missing.
        DatasetFormatError: an annotation file is malformed; names the file and field.
    """
    _check_split(split, "CUHK-SYSU")
    required = [IMAGE_DIR, IMAGES_MAT, POOL_MAT] + ([TRAIN_MAT] if split == "train" else [])
    check_dataset_root(root, "CUHK-SYSU", required)

    raw_boxes, all_names = _read_images_mat(root)
    pool_path = os.path.join(root, POOL_MAT)
    pool = mat_cell_strings(load_mat_variable(pool_path, ["pool"])[1], f"{pool_path}: pool")
    seen = set()
    for name in pool:
        if name in seen:
            raise DatasetFormatError(f"{pool_path}: image {name!r} is listed twice.")
        if name not in raw_boxes:
            raise DatasetFormatError(
                f"{pool_path}: test image {name!r} is not in {os.path.join(root, IMAGES_MAT)}."
            )
        seen.add(name)
    if split == "test":
        names = pool
    else:
        names = sorted(n for n in all_names if n not in seen)

    boxes, num_invalid = {}, 0
    for name in names:
        boxes[name], dropped = _valid_int_boxes(raw_boxes[name])
        num_invalid += dropped
    if num_invalid:
        logger.warning(
            "CUHK-SYSU %s: dropped %d boxes of %s that are empty or have w <= 0 or h <= 0.",
            split,
            num_invalid,
            os.path.join(root, IMAGES_MAT),
        )

    source = f"CUHK-SYSU {split}"
    assigner = _PidAssigner(boxes, source)
    queries: Dict[str, List[dict]] = {}
    if split == "train":
        path = os.path.join(root, TRAIN_MAT)
        identities = cell_structs(
            load_mat_variable(path, ["Train"])[1], ("scene",), f"{path}: Train"
        )
        for pid, ident in enumerate(identities):
            where = f"{path}: Train{{{pid}}}.scene"
            for j, scene in enumerate(
                struct_elements(ident["scene"], ("imname", "idlocate"), where)
            ):
                name = mat_string(scene["imname"], (where, "[", j, "].imname"))
                box = _xywh(scene["idlocate"], (where, "[", j, "].idlocate"))
                assigner.assign(name, box, pid, (where, "[", j, "] (", name, ")"))
        num_ids = len(identities)
    else:
        path, key = _default_test_protocol(root)
        protocol = _read_protocol(path, key)
        for qi, ((q_name, q_box), gallery) in enumerate(protocol):
            where = f"{path}: {key}[{qi}]"
            if q_name not in boxes:
                raise DatasetFormatError(
                    f"{where}.Query.imname: query image {q_name!r} is not a test image (pool.mat)."
                )
            assigner.assign(q_name, q_box, qi, (where, ".Query (", q_name, ")"))
            for j, (g_name, g_box) in enumerate(gallery):
                if g_box is not None:
                    assigner.assign(g_name, g_box, qi, (where, ".Gallery[", j, "] (", g_name, ")"))
            queries.setdefault(q_name, []).append(
                {
                    "bbox": _xyxy(_int_xywh(q_box)),
                    "person_id": qi,
                    "query_index": qi,
                    "where": f"{where}.Query.idlocate",
                }
            )
        num_ids = len(protocol)
    assigner.log_summary()

    paths = [os.path.abspath(os.path.join(root, IMAGE_DIR, n)) for n in names]
    xyxy = {n: np.array([_xyxy(b) for b in boxes[n]]).reshape(-1, 4) for n in names}
    records = build_records(names, paths, xyxy, assigner.pids, queries, source)
    log_loaded(f"CUHK-SYSU {split} from {root}", records, num_ids)
    return records
