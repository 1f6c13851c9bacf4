"""Tiny CUHK-SYSU and PRW trees in the exact original file formats, for tests.

Usage::

    from tests.data.fixtures import summarize, write_tiny_cuhk_sysu, write_tiny_prw

    expected = write_tiny_cuhk_sysu(str(tmp_path / "CUHK-SYSU"))
    assert summarize(load_cuhk_sysu(expected["root"], "train")) == expected["train"]["records"]

Both writers return a dict of expectations: what the loaders must produce from the tree, in the
simplified form of :func:`summarize` (plain lists, easy to compare and to print). Images are small
solid-colour JPEGs; their sizes are part of the expectations.
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.io
from PIL import Image

from personsearch.data.datasets import cuhk_sysu_writer as cw


def write_jpeg(path: str, height: int, width: int, color: Tuple[int, int, int] = (90, 120, 150)):
    """Write a solid-colour ``height`` x ``width`` JPEG (creates the folder)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (width, height), color).save(path, format="JPEG")


def summarize(records: List[dict]) -> List[dict]:
    """Records reduced to what the expectations list: per image ``image_id``, ``height``,
    ``width``, ``boxes`` ((N, 4) XYXY lists), ``person_ids`` (N,), and where present ``queries``
    (``[{"bbox", "person_id", "query_index"}]``) and ``camera_id``."""
    out = []
    for r in records:
        s = {
            "image_id": r["image_id"],
            "height": r["height"],
            "width": r["width"],
            "boxes": [list(a["bbox"]) for a in r["annotations"]],
            "person_ids": [a["person_id"] for a in r["annotations"]],
        }
        if "queries" in r:
            s["queries"] = [
                {
                    "bbox": list(q["bbox"]),
                    "person_id": q["person_id"],
                    "query_index": q["query_index"],
                }
                for q in r["queries"]
            ]
        if "camera_id" in r:
            s["camera_id"] = r["camera_id"]
        out.append(s)
    return out


def _rec(image_id, hw, boxes, pids, queries=None, camera_id=None) -> dict:
    r = {"image_id": image_id, "height": hw[0], "width": hw[1], "boxes": boxes, "person_ids": pids}
    if queries is not None:
        r["queries"] = [{"bbox": b, "person_id": p, "query_index": i} for b, p, i in queries]
    if camera_id is not None:
        r["camera_id"] = camera_id
    return r


# --------------------------------------------------------------------------------------------
# CUHK-SYSU
# --------------------------------------------------------------------------------------------
# image name -> (height, width)
CUHK_SIZES = {
    "s1.jpg": (60, 80),
    "s10.jpg": (50, 70),
    "s2.jpg": (48, 64),
    "s5.jpg": (64, 96),
    "s3.jpg": (64, 96),
    "s4.jpg": (64, 96),
    "s6.jpg": (64, 96),
}
# image name -> Images.mat boxes (x, y, w, h), in file order
CUHK_BOXES = {
    "s1.jpg": [(2, 3, 10, 20), (30, 5, 12, 25), (5, 5, 0, 10)],  # the w=0 box is dropped
    "s10.jpg": [(1.7, 2.2, 10.9, 20.5), (60, 30, 20, 30)],  # 2nd crosses the image border
    "s2.jpg": [(4, 4, 8, 16)],
    "s5.jpg": [(10, 10, 15, 30), (40, 10, 15, 30)],
    "s3.jpg": [(5, 5, 15, 30), (20, 20, 10, 10)],
    "s4.jpg": [(0, 0, 10, 20), (1, 1, 5, -3)],  # the h<0 box is dropped
    "s6.jpg": [],
}
CUHK_POOL = ["s5.jpg", "s3.jpg", "s4.jpg", "s6.jpg"]  # deliberately not sorted
CUHK_TRAIN_IDS = [
    ("p11", [("s1.jpg", (2, 3, 10, 20)), ("s10.jpg", (60, 30, 20, 30))]),
    # (1.2, 2.9, 10.1, 20.0) and Images.mat's (1.7, 2.2, 10.9, 20.5) are both (1, 2, 10, 20) as int
    ("p22", [("s10.jpg", (1.2, 2.9, 10.1, 20.0)), ("s2.jpg", (4, 4, 8, 16))]),
    # neither entry can be tied to a box: one box matches nothing, one image is unknown
    ("p33", [("s2.jpg", (99, 99, 5, 5)), ("s999.jpg", (1, 1, 5, 5))]),
]
_Q0 = ("s5.jpg", (10, 10, 15, 30))
_Q1 = ("s3.jpg", (20, 20, 10, 10))
CUHK_PROTOCOLS = {
    50: [
        {"query": _Q0, "idname": "p101", "gallery": [
            ("s3.jpg", (5, 5, 15, 30)), ("s4.jpg", None), ("s6.jpg", None), ("s4.jpg", None)]},
        {"query": _Q1, "idname": "p102", "gallery": [
            ("s4.jpg", (0, 0, 10, 20)), ("s5.jpg", None), ("s6.jpg", None)]},
    ],
    # TestG100 also labels s5's second box as person 1; the test split must not use it (it takes
    # its person ids from TestG50), so that box stays unlabeled in the test records
    100: [
        {"query": _Q0, "idname": "p101", "gallery": [
            ("s3.jpg", (5, 5, 15, 30)), ("s4.jpg", None), ("s6.jpg", None), ("s4.jpg", None)]},
        {"query": _Q1, "idname": "p102", "gallery": [
            ("s4.jpg", (0, 0, 10, 20)), ("s5.jpg", (40, 10, 15, 30)), ("s6.jpg", None),
            ("s3.jpg", None)]},
    ],
}  # fmt: skip
CUHK_SUBSETS = {"Resolution": [CUHK_PROTOCOLS[50][1]], "Occlusion": [CUHK_PROTOCOLS[50][0]]}


def _xyxy(box: Optional[Sequence[float]]) -> Optional[List[float]]:
    if box is None:
        return None
    x, y, w, h = (int(v) for v in box)
    return [float(x), float(y), float(x + w), float(y + h)]


def _protocol_expectation(queries: List[Dict]) -> List[dict]:
    return [
        {
            "query": {"image_id": q["query"][0], "bbox": _xyxy(q["query"][1])},
            "gallery": [{"image_id": im, "bbox": _xyxy(b)} for im, b in q["gallery"]],
        }
        for q in queries
    ]


def write_tiny_cuhk_sysu(
    root: str, gallery_sizes: Sequence[int] = (50, 100), subsets: bool = True
) -> dict:
    """Write a tiny CUHK-SYSU tree (7 images: 3 train, 4 test; 3 train ids, 2 queries).

    Args:
        root: the folder to create (``root/Image/SSM``, ``root/annotation/...``).
        gallery_sizes: which ``TestG{N}.mat`` files to write (any of 50 and 100).
        subsets: also write ``subset/Resolution.mat`` (query 1) and ``Occlusion.mat`` (query 0).

    Returns:
        ``{"root", "train": {"records", "num_ids", "dropped_invalid", "clipped", "unmatched",
        "unknown_image"}, "test": {"records", "dropped_invalid", "clipped"}, "protocols": {N: list},
        "subsets": {"resolution": list, "occlusion": list}}``: ``records`` in :func:`summarize` form
        and the order the loader must return; ``protocols``/``subsets`` exactly what
        ``load_cuhk_sysu_protocol`` must return; the counts are what the loader must log.
    """
    for name, (h, w) in CUHK_SIZES.items():
        write_jpeg(os.path.join(root, "Image", "SSM", name), h, w)
    cw.write_images_mat(root, list(CUHK_BOXES.items()))
    cw.write_pool_mat(root, CUHK_POOL)
    cw.write_train_mat(root, CUHK_TRAIN_IDS)
    for size in gallery_sizes:
        cw.write_test_protocol_mat(root, size, CUHK_PROTOCOLS[size])
    if subsets:
        for subset, queries in CUHK_SUBSETS.items():
            cw.write_subset_mat(root, subset, queries)

    sz = CUHK_SIZES
    train = [
        _rec("s1.jpg", sz["s1.jpg"], [[2.0, 3.0, 12.0, 23.0], [30.0, 5.0, 42.0, 30.0]], [0, -1]),
        _rec("s10.jpg", sz["s10.jpg"], [[1.0, 2.0, 11.0, 22.0], [60.0, 30.0, 70.0, 50.0]], [1, 0]),
        _rec("s2.jpg", sz["s2.jpg"], [[4.0, 4.0, 12.0, 20.0]], [1]),
    ]
    test = [
        _rec("s5.jpg", sz["s5.jpg"], [[10.0, 10.0, 25.0, 40.0], [40.0, 10.0, 55.0, 40.0]], [0, -1],
             queries=[([10.0, 10.0, 25.0, 40.0], 0, 0)]),
        _rec("s3.jpg", sz["s3.jpg"], [[5.0, 5.0, 20.0, 35.0], [20.0, 20.0, 30.0, 30.0]], [0, 1],
             queries=[([20.0, 20.0, 30.0, 30.0], 1, 1)]),
        _rec("s4.jpg", sz["s4.jpg"], [[0.0, 0.0, 10.0, 20.0]], [1]),
        _rec("s6.jpg", sz["s6.jpg"], [], []),
    ]  # fmt: skip
    return {
        "root": root,
        "train": {
            "records": train,
            "num_ids": 3,
            "dropped_invalid": 1,
            "clipped": 1,
            "unmatched": 1,
            "unknown_image": 1,
        },
        "test": {"records": test, "dropped_invalid": 1, "clipped": 0},
        "protocols": {n: _protocol_expectation(CUHK_PROTOCOLS[n]) for n in gallery_sizes},
        "subsets": {
            s.lower(): _protocol_expectation(q) for s, q in CUHK_SUBSETS.items() if subsets
        },
    }


# --------------------------------------------------------------------------------------------
# PRW
# --------------------------------------------------------------------------------------------
def write_prw_split(root: str, split: str, names: Sequence[str]) -> None:
    """Write ``frame_{split}.mat`` (``img_index_{split}``: cell (N, 1) of names without .jpg)."""
    cell = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        cell[i, 0] = np.array([name])
    scipy.io.savemat(os.path.join(root, f"frame_{split}.mat"), {f"img_index_{split}": cell})


def write_prw_annotation(root: str, name: str, rows, key: str = "box_new") -> None:
    """Write ``annotations/<name>.jpg.mat``: ``rows`` as an N x 5 double ``[id, x, y, w, h]``."""
    path = os.path.join(root, "annotations", name + ".jpg.mat")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, {key: np.asarray(rows, dtype=np.float64).reshape(-1, 5)})


def write_prw_queries(root: str, lines: Sequence[str], line_ending: str = "\r\n") -> None:
    """Write ``query_info.txt`` with the given line ending (the original file uses CRLF)."""
    with open(os.path.join(root, "query_info.txt"), "w", newline="") as f:
        f.write("".join(line + line_ending for line in lines))


# name -> (height, width)
PRW_SIZES = {
    "c2s1_000200": (90, 120),
    "c1s1_000151": (90, 120),
    "c3s2_044587": (80, 100),
    "c6s1_000010": (90, 120),
    "c1s1_000300": (90, 120),
}
PRW_TRAIN = ["c2s1_000200", "c1s1_000151"]  # file order, not sorted
PRW_TEST = ["c3s2_044587", "c6s1_000010", "c1s1_000300"]
# name -> (variable name, rows [id, x, y, w, h])
PRW_ANNOTATIONS = {
    "c2s1_000200": ("box_new", [[5, 10, 10, 20, 30], [-2, 30, 5, 10, 10]]),
    "c1s1_000151": (
        "anno_file",
        [
            [932, -3.5, 2, 20, 30],  # negative x: x1 = 0, x2 = trunc(16.5) = 16
            [1, 40.7, 10.2, 10.6, 20.9],  # -> [40, 10, 51, 31] after truncation
            [-2, 110, 80, 20, 20],  # crosses the image border: clipped to 120 x 90
            [-2, 130, 10, 5, 5],  # entirely right of the image: dropped
        ],
    ),
    "c3s2_044587": ("box_new", [[605, 0, 20, 19, 30], [-2, 50, 50, 10, 10]]),
    "c6s1_000010": ("anno_previous", [[605, 60, 10, 20, 40], [7, 5, 6, 10, 12]]),
    "c1s1_000300": ("box_new", np.zeros((0, 5))),
}
PRW_QUERY_LINES = [
    "605 -1.7030 20.5756 20.6436 30.2289 c3s2_044587",
    "",  # blank lines are ignored
    "7 5 6 10 12 c6s1_000010",
    "800 50 40 10 10 c6s1_000010",  # raw id 800 occurs only in query_info.txt
]


def write_tiny_prw(root: str, line_ending: str = "\r\n") -> dict:
    """Write a tiny PRW tree (2 train frames, 3 test frames, 3 queries).

    Args:
        root: the folder to create (``root/frames``, ``root/annotations``, ...).
        line_ending: of ``query_info.txt``, ``"\\r\\n"`` (as the original) or ``"\\n"``.

    Returns:
        ``{"root", "train": {"records", "raw_person_ids", "clipped", "dropped"}, "test":
        {"records", "raw_person_ids", "clipped", "dropped"}}``; ``records`` in :func:`summarize`
        form and loader order, ``raw_person_ids`` what ``prw_raw_person_ids`` must return (train
        raw ids 1, 5, 932 -> 0, 1, 2; test 7, 605, 800 -> 0, 1, 2), the counts what the box
        sanitiser must log.
    """
    for name, (h, w) in PRW_SIZES.items():
        write_jpeg(os.path.join(root, "frames", name + ".jpg"), h, w)
    for name, (key, rows) in PRW_ANNOTATIONS.items():
        write_prw_annotation(root, name, rows, key)
    write_prw_split(root, "train", PRW_TRAIN)
    write_prw_split(root, "test", PRW_TEST)
    write_prw_queries(root, PRW_QUERY_LINES, line_ending)

    train = [
        _rec(
            "c2s1_000200.jpg",
            (90, 120),
            [[10.0, 10.0, 30.0, 40.0], [30.0, 5.0, 40.0, 15.0]],
            [1, -1],
            camera_id=2,
        ),
        _rec(
            "c1s1_000151.jpg",
            (90, 120),
            [[0.0, 2.0, 16.0, 32.0], [40.0, 10.0, 51.0, 31.0], [110.0, 80.0, 120.0, 90.0]],
            [2, 0, -1],
            camera_id=1,
        ),
    ]
    test = [
        _rec("c3s2_044587.jpg", (80, 100), [[0.0, 20.0, 19.0, 50.0], [50.0, 50.0, 60.0, 60.0]],
             [1, -1], queries=[([0.0, 20.0, 18.0, 50.0], 1, 0)], camera_id=3),
        _rec("c6s1_000010.jpg", (90, 120), [[60.0, 10.0, 80.0, 50.0], [5.0, 6.0, 15.0, 18.0]],
             [1, 0], queries=[([5.0, 6.0, 15.0, 18.0], 0, 1), ([50.0, 40.0, 60.0, 50.0], 2, 2)],
             camera_id=6),
        _rec("c1s1_000300.jpg", (90, 120), [], [], camera_id=1),
    ]  # fmt: skip
    return {
        "root": root,
        "train": {"records": train, "raw_person_ids": [1, 5, 932], "clipped": 1, "dropped": 1},
        "test": {"records": test, "raw_person_ids": [7, 605, 800], "clipped": 0, "dropped": 0},
    }
