"""PRW: read the original PRW-v16.04.20 files into person-search records.

Expected tree (see ``datasets/README.md``)::

    PRW-v16.04.20/
      frames/c{cam}s{seq}_{frame}.jpg
      annotations/c{cam}s{seq}_{frame}.jpg.mat   N x 5 double [id, x, y, w, h] under the key
                                                 box_new, else anno_file, else anno_previous
      frame_train.mat                            img_index_train: cell (N, 1) of names (no .jpg)
      frame_test.mat                             img_index_test:  cell (N, 1) of names (no .jpg)
      query_info.txt                             lines "pid x y w h imgname" (test queries)

Choices, where the reference implementations differ or are wrong:

* **Boxes.** ``[x, y, w, h]`` is converted to ``[x1, y1, x2, y2] = [x, y, x + w, y + h]`` first,
  negative coordinates are then clipped to 0, and the result is truncated to integers (the
  references cast to int32). Clipping *after* the conversion keeps the box's right and bottom edges
  where the annotation put them. The official SeqNet code clips ``x, y, w, h`` before converting,
  which moves the right (bottom) edge of a box with a negative ``x`` (``y``) outwards by the
  clipped amount (``x = -3.5, w = 20`` gives ``x2 = 20`` there, ``x2 = 16`` here); we deliberately
  do not reproduce that. Query boxes follow the same rule. Boxes are then clipped to the image
  and degenerate ones dropped (:class:`~.common.BoxSanitizer`, logged).
* **Person ids.** Raw id -2 marks an unlabeled person (``person_id = -1``); any other negative raw
  id is also treated as unlabeled and counted in a warning. Labeled raw ids are remapped to
  0..K-1 in sorted raw order, per split: train uses the ids of the train annotations (483
  identities on the real data, so 0..482; the official codes size their lookup table for 482
  identities, a bug we do not copy), test uses the ids of the test annotations and of
  ``query_info.txt``.
* **Raw ids.** The contiguous -> raw mapping of a split is ``prw_raw_person_ids(root, split)``
  (element ``k`` is the raw PRW id of ``person_id`` ``k``); it reads only annotation files, not
  images. A split registered with :func:`register_prw` also stores it as
  ``MetadataCatalog.get(name).raw_person_ids`` when its records are loaded (Detectron2 loads
  records lazily, so the mapping cannot be known at registration time without reading every
  annotation file).
* ``query_info.txt`` is parsed with ``str.split()``, so CRLF and LF line endings both work (some
  references cut the last two characters, which assumes CRLF); blank lines are ignored.
* ``camera_id`` is the digit of the ``c{cam}`` prefix of the image name (1..6).

Malformed files raise :class:`~.common.DatasetFormatError` naming the file and the field or line;
missing files raise ``FileNotFoundError`` naming the path.
"""

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
from detectron2.data import MetadataCatalog

from personsearch.data.datasets.common import (
    SPLITS,
    UNLABELED_PID,
    DatasetFormatError,
    build_records,
    check_dataset_root,
    contiguous_id_map,
    log_loaded,
    register_person_search_dataset,
)
from personsearch.data.datasets.matlab import load_mat_variable, mat_cell_strings

logger = logging.getLogger(__name__)

__all__ = ["load_prw", "prw_box_to_xyxy", "prw_raw_person_ids", "register_prw"]

FRAME_DIR = "frames"
ANNOTATION_DIR = "annotations"
QUERY_FILE = "query_info.txt"
# split -> (file, variable name)
SPLIT_FILES = {
    "train": ("frame_train.mat", "img_index_train"),
    "test": ("frame_test.mat", "img_index_test"),
}
# the annotation files use one of these variable names, tried in this order
ANNOTATION_KEYS = ("box_new", "anno_file", "anno_previous")
UNLABELED_RAW_ID = -2
_CAMERA_RE = re.compile(r"^c(\d)")
_INT32_LIMIT = 2**31 - 1


def prw_box_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """Convert PRW boxes to integer-valued XYXY: convert, clip negatives to 0, truncate.

    Args:
        xywh: (N, 4) ``[x, y, w, h]`` float boxes (coordinates may be negative).

    Returns:
        (N, 4) float64 ``[x1, y1, x2, y2]`` with integer values (not yet clipped to the image).
    """
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    # clip after converting (keeps x2 = x + w; see the module docstring), then cast like int32
    return np.trunc(np.maximum(xyxy, 0.0))


def _read_split_names(root: str, split: str) -> List[str]:
    file, key = SPLIT_FILES[split]
    path = os.path.join(root, file)
    names = mat_cell_strings(load_mat_variable(path, [key])[1], f"{path}: {key}")
    seen = set()
    for i, name in enumerate(names):
        if name in seen:
            raise DatasetFormatError(f"{path}: {key}{{{i}}}: image {name!r} is listed twice.")
        if not _CAMERA_RE.match(name):
            raise DatasetFormatError(
                f"{path}: {key}{{{i}}}: image name {name!r} does not start with c<camera digit>."
            )
        seen.add(name)
    return names


def _read_annotation(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """One ``annotations/<name>.jpg.mat`` file as ``(raw ids (N,) int64, xywh (N, 4) float64)``."""
    key, arr = load_mat_variable(path, ANNOTATION_KEYS)
    where = f"{path}: {key}"
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        raise DatasetFormatError(
            f"{where}: expected an N x 5 numeric array [id, x, y, w, h], got "
            f"{type(arr).__name__} of dtype {getattr(arr, 'dtype', None)}."
        )
    if arr.size == 0:
        return np.zeros((0,), dtype=np.int64), np.zeros((0, 4))
    if arr.ndim == 1 and arr.size == 5:  # a squeezed single row
        arr = arr.reshape(1, 5)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise DatasetFormatError(
            f"{where}: expected an N x 5 array [id, x, y, w, h], got shape {arr.shape}."
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)) or np.any(np.abs(arr) > _INT32_LIMIT):
        raise DatasetFormatError(f"{where}: holds non-finite or huge values.")
    ids = arr[:, 0]
    if np.any(ids != np.round(ids)):
        raise DatasetFormatError(
            f"{where}: person ids (column 0) must be integers: {ids.tolist()}."
        )
    return ids.astype(np.int64), arr[:, 1:]


@dataclass
class _Query:
    raw_id: int
    xywh: np.ndarray  # (4,)
    image: str  # name without .jpg
    line: int  # 1-based line number in query_info.txt


def _read_query_info(path: str) -> List[_Query]:
    """Parse ``query_info.txt`` (``pid x y w h imgname`` per line, CRLF or LF, blanks ignored)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PRW query file not found: {path!r} (see datasets/README.md).")
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"Cannot read {path!r} as UTF-8 text: {e}.") from e
    queries = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            if len(tokens) != 6:
                raise ValueError(f"expected 6 fields, got {len(tokens)}")
            raw_id = float(tokens[0])
            xywh = np.array([float(t) for t in tokens[1:5]])
            if not raw_id.is_integer() or raw_id < 0:
                raise ValueError(f"person id {tokens[0]!r} is not a labeled (>= 0) integer id")
            if not np.all(np.isfinite(xywh)) or np.any(np.abs(xywh) > _INT32_LIMIT):
                raise ValueError("non-finite or huge coordinates")
        except ValueError as e:
            raise DatasetFormatError(
                f"{path}, line {line_no}: malformed query {line.strip()[:100]!r} ({e}); "
                f"expected 'pid x y w h imgname'."
            ) from e
        queries.append(_Query(int(raw_id), xywh, tokens[5], line_no))
    return queries


@dataclass
class _PrwSplit:
    """Everything of a split that the annotation files define (no image sizes)."""

    names: List[str]
    raw_ids: Dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N,) raw ids
    boxes: Dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, 4) xyxy
    queries: List[_Query] = field(default_factory=list)
    id_map: Dict[int, int] = field(default_factory=dict)  # raw id -> contiguous person_id


def _read_split(root: str, split: str) -> _PrwSplit:
    if split not in SPLITS:
        raise ValueError(f"Unknown PRW split {split!r}; valid splits are {list(SPLITS)}.")
    required = [FRAME_DIR, ANNOTATION_DIR, SPLIT_FILES[split][0]]
    check_dataset_root(root, "PRW", required + ([QUERY_FILE] if split == "test" else []))

    data = _PrwSplit(_read_split_names(root, split))
    num_odd_ids = 0
    for name in data.names:
        ids, xywh = _read_annotation(os.path.join(root, ANNOTATION_DIR, name + ".jpg.mat"))
        num_odd_ids += int(np.sum((ids < 0) & (ids != UNLABELED_RAW_ID)))
        data.raw_ids[name] = ids
        data.boxes[name] = prw_box_to_xyxy(xywh)
    if num_odd_ids:
        logger.warning(
            "PRW %s: %d boxes have a negative person id other than %d; treated as unlabeled.",
            split,
            num_odd_ids,
            UNLABELED_RAW_ID,
        )
    labeled = [int(i) for ids in data.raw_ids.values() for i in ids if i >= 0]
    if split == "test":
        path = os.path.join(root, QUERY_FILE)
        data.queries = _read_query_info(path)
        for q in data.queries:
            if q.image not in data.raw_ids:
                raise DatasetFormatError(
                    f"{path}, line {q.line}: query image {q.image + '.jpg'!r} is not in the test "
                    f"split ({os.path.join(root, SPLIT_FILES['test'][0])})."
                )
        labeled += [q.raw_id for q in data.queries]
    data.id_map = contiguous_id_map(labeled)
    return data


def prw_raw_person_ids(root: str, split: str) -> List[int]:
    """The raw PRW id of each contiguous ``person_id`` of a split (element k <-> person_id k).

    Reads the split's annotation files (and ``query_info.txt`` for test), not the images.
    """
    return sorted(_read_split(root, split).id_map)


def _load_prw(root: str, split: str) -> Tuple[List[dict], List[int]]:
    data = _read_split(root, split)
    source = f"PRW {split}"
    pids = {
        name: [data.id_map[int(i)] if i >= 0 else UNLABELED_PID for i in ids]
        for name, ids in data.raw_ids.items()
    }
    query_path = os.path.join(root, QUERY_FILE)
    queries: Dict[str, List[dict]] = {}
    for index, q in enumerate(data.queries):
        queries.setdefault(q.image, []).append(
            {
                "bbox": prw_box_to_xyxy(q.xywh)[0].tolist(),
                "person_id": data.id_map[q.raw_id],
                "query_index": index,
                "where": f"{query_path}, line {q.line}",
            }
        )
    image_ids = [n + ".jpg" for n in data.names]
    paths = [os.path.abspath(os.path.join(root, FRAME_DIR, n)) for n in image_ids]
    records = build_records(
        image_ids,
        paths,
        {n + ".jpg": data.boxes[n] for n in data.names},
        {n + ".jpg": pids[n] for n in data.names},
        {n + ".jpg": q for n, q in queries.items()},
        source,
        extras={n + ".jpg": {"camera_id": int(_CAMERA_RE.match(n).group(1))} for n in data.names},
    )
    log_loaded(f"PRW {split} from {root}", records, len(data.id_map))
    return records, sorted(data.id_map)


def load_prw(root: str, split: str) -> List[dict]:
    """Load a PRW split from the original files.

    Args:
        root: the PRW folder (e.g. ``datasets/PRW-v16.04.20``).
        split: ``"train"`` or ``"test"``.

    Returns:
        Records in the convention of :mod:`personsearch.data.datasets.common`, in the order of
        ``frame_{split}.mat``, with ``camera_id``. Test records of images that hold queries carry
        ``queries`` (``query_index`` = line order in ``query_info.txt``, blank lines skipped).
        ``prw_raw_person_ids(root, split)[person_id]`` gives the raw PRW id of a person.

    Raises:
        ValueError: unknown split.
        FileNotFoundError: the root, a split/annotation/query file or an image is missing.
        DatasetFormatError: a file is malformed; names the file and the field or line.
    """
    return _load_prw(root, split)[0]


def register_prw(name: str, root: str, split: str) -> None:
    """Register a PRW split; its records are loaded by :func:`load_prw` on first use.

    The metadata holds ``thing_classes=["person"]``, ``evaluator_type="person_search"``,
    ``protocol="prw"``, ``root`` and ``split``; loading the records also sets ``raw_person_ids``
    (see the module docstring).

    Raises:
        ValueError: unknown split, or ``name`` already registered.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown PRW split {split!r}; valid splits are {list(SPLITS)}.")

    def load(name=name, root=root, split=split) -> List[dict]:
        records, raw_ids = _load_prw(root, split)
        meta = MetadataCatalog.get(name)
        old = getattr(meta, "raw_person_ids", None)
        if old is None:
            meta.set(raw_person_ids=raw_ids)
        elif list(old) != raw_ids:
            raise ValueError(
                f"Dataset {name!r}: the person ids in {root!r} changed since the split was last "
                f"loaded in this process (metadata raw_person_ids differs)."
            )
        return records

    register_person_search_dataset(name, load, protocol="prw", root=root, split=split)
