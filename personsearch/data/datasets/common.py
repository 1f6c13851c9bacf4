"""Helpers shared by the dataset loaders: clear errors, box sanitising, image sizes, id remapping.

Every loader returns Detectron2 dataset dicts ("records") in one convention:

.. code-block:: python

    {
        "file_name": "/abs/path/to/image.jpg",
        "image_id": "image.jpg",          # str, the image's file name, unique in the split
        "height": 600, "width": 800,      # original image size in pixels
        "annotations": [                  # every person, labeled or not
            {"bbox": [x1, y1, x2, y2],    # XYXY_ABS, original pixels, inside the image
             "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0,
             "person_id": 3},             # 0..N-1 contiguous within the split, -1 = unlabeled
        ],
        "queries": [                      # test splits only, images that hold query boxes
            {"bbox": [x1, y1, x2, y2], "person_id": 3, "query_index": 17},
        ],
        "camera_id": 2,                   # PRW only
    }
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

logger = logging.getLogger(__name__)

UNLABELED_PID = -1
SPLITS = ("train", "test")
DATASETS_README = "datasets/README.md"


class DatasetFormatError(ValueError):
    """An annotation file does not have the expected structure; the message names file and field."""


def check_dataset_root(root: str, dataset: str, required: Sequence[str] = ()) -> None:
    """Fail clearly when a dataset folder or one of its required files is missing.

    Args:
        root: the dataset folder, e.g. ``$DETECTRON2_DATASETS/CUHK-SYSU``.
        dataset: human-readable dataset name for the message.
        required: paths relative to ``root`` that must exist.

    Raises:
        FileNotFoundError: naming the missing path and pointing to ``datasets/README.md``.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"{dataset} dataset root not found: {root!r}. Put the dataset there or set "
            f"$DETECTRON2_DATASETS; the expected tree is described in {DATASETS_README}."
        )
    for rel in required:
        path = os.path.join(root, rel)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{dataset}: expected {path!r} is missing (see {DATASETS_README} for the tree)."
            )


class BoxSanitizer:
    """Clips out-of-image boxes and drops degenerate ones, counting both for one log line.

    Example::

        san = BoxSanitizer("cuhk_sysu train")
        boxes, keep = san(boxes_xyxy, width, height)
        ...
        san.log_summary()
    """

    def __init__(self, source: str):
        self.source = source
        self.num_boxes = 0
        self.num_clipped = 0
        self.num_dropped = 0

    def __call__(self, boxes: np.ndarray, width: int, height: int) -> Tuple[np.ndarray, np.ndarray]:
        """Sanitise the boxes of one image.

        Args:
            boxes: (N, 4) XYXY boxes in original pixels.
            width, height: the image size.

        Returns:
            (K, 4) float64 boxes that lie inside the image and have positive width and height, and
            the (N,) bool mask of the input boxes that were kept.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        clipped = boxes.copy()
        clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
        clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
        keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        changed = np.any(clipped != boxes, axis=1) & keep
        self.num_boxes += len(boxes)
        self.num_clipped += int(changed.sum())
        self.num_dropped += int((~keep).sum())
        return clipped[keep], keep

    def log_summary(self) -> None:
        """Log how many boxes were clipped or dropped (nothing is removed silently)."""
        if self.num_clipped or self.num_dropped:
            logger.warning(
                "%s: %d of %d boxes were outside the image and clipped; %d had zero or negative "
                "size and were dropped.",
                self.source,
                self.num_clipped,
                self.num_boxes,
                self.num_dropped,
            )


def read_image_size(path: str) -> Tuple[int, int]:
    """Return ``(height, width)`` of an image file from its header.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file exists but is not a readable image; the message names it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}")
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"Cannot read image {path!r}: {e}") from e
    return height, width


def read_image_sizes(
    paths: Sequence[str], desc: str = "reading image sizes"
) -> List[Tuple[int, int]]:
    """Read ``(height, width)`` of many images (headers only, threaded, with a progress bar)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        it = pool.map(read_image_size, paths)
        return list(tqdm(it, total=len(paths), desc=desc, disable=len(paths) < 2000))


def contiguous_id_map(ids: Iterable[int]) -> Dict[int, int]:
    """Map raw labeled person ids (>= 0 or arbitrary ints other than the unlabeled marker) to
    0..K-1 in sorted order. The caller decides which raw values mean "unlabeled" and skips them."""
    return {raw: new for new, raw in enumerate(sorted(set(int(i) for i in ids)))}


def register_person_search_dataset(name: str, loader: Callable[[], List[dict]], **metadata) -> None:
    """Register a person-search split in Detectron2's catalogs, with readable errors.

    Args:
        name: the dataset name, e.g. ``"cuhk_sysu_train"``.
        loader: zero-argument function returning the records (called lazily by Detectron2).
        metadata: values for ``MetadataCatalog.get(name)``; ``thing_classes=["person"]`` and
            ``evaluator_type="person_search"`` are added.

    Raises:
        ValueError: ``name`` is already registered, or its metadata holds conflicting values.
    """
    if name in DatasetCatalog.list():
        raise ValueError(
            f"Dataset {name!r} is already registered; choose another name or call "
            f"DatasetCatalog.remove({name!r}) and MetadataCatalog.remove({name!r}) first."
        )
    DatasetCatalog.register(name, loader)
    try:
        MetadataCatalog.get(name).set(
            thing_classes=["person"], evaluator_type="person_search", **metadata
        )
    except AssertionError as e:  # Metadata.set refuses to change an existing value
        DatasetCatalog.remove(name)
        raise ValueError(
            f"Dataset {name!r}: MetadataCatalog already holds different metadata for this name "
            f"({e}); call MetadataCatalog.remove({name!r}) first."
        ) from e


def build_records(
    names: Sequence[str],
    paths: Sequence[str],
    boxes: Dict[str, np.ndarray],
    pids: Dict[str, Sequence[int]],
    queries: Dict[str, List[dict]],
    source: str,
    extras: Optional[Dict[str, dict]] = None,
) -> List[dict]:
    """Build records: read image sizes, sanitise boxes, attach queries (shared with PRW).

    Args:
        names: image names (the records' ``image_id``), in output order.
        paths: the image files, aligned with ``names``.
        boxes: per image name, (N, 4) XYXY boxes in original pixels.
        pids: per image name, the N person ids of its boxes.
        queries: per image name, ``[{"bbox", "person_id", "query_index", "where"}]`` where
            ``where`` names the file and entry for the error of a query box outside its image.
        source: "dataset split" for log lines.
        extras: per image name, additional record fields (e.g. ``camera_id``).

    Raises:
        FileNotFoundError, ValueError: an image is missing or unreadable (names the image).
        DatasetFormatError: a query box has no area inside its image.
    """
    sizes = read_image_sizes(list(paths), desc=f"{source}: reading image sizes")
    sanitizer = BoxSanitizer(source)
    query_sanitizer = BoxSanitizer(f"{source} queries")
    records = []
    for name, path, (height, width) in zip(names, paths, sizes):
        kept, keep = sanitizer(boxes[name], width, height)
        kept_pids = np.asarray(pids[name], dtype=np.int64).reshape(-1)[keep]
        record = {
            "file_name": path,
            "image_id": name,
            "height": height,
            "width": width,
            "annotations": [
                {
                    "bbox": [float(v) for v in box],
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "category_id": 0,
                    "person_id": int(pid),
                }
                for box, pid in zip(kept, kept_pids)
            ],
        }
        if extras and name in extras:
            record.update(extras[name])
        if name in queries:
            record["queries"] = []
            for q in queries[name]:
                qbox, qkeep = query_sanitizer(np.asarray(q["bbox"]), width, height)
                if not qkeep[0]:
                    raise DatasetFormatError(
                        f"{q['where']}: query box {list(q['bbox'])} (x1 y1 x2 y2) has no area "
                        f"inside image {path!r} ({width}x{height})."
                    )
                record["queries"].append(
                    {
                        "bbox": [float(v) for v in qbox[0]],
                        "person_id": int(q["person_id"]),
                        "query_index": int(q["query_index"]),
                    }
                )
        records.append(record)
    sanitizer.log_summary()
    query_sanitizer.log_summary()
    return records


def log_loaded(what: str, records: Sequence[dict], num_identities: int) -> None:
    """Log one summary line of loaded records: images, boxes (labeled), identities, queries.

    Args:
        what: names the split and its source, e.g. ``"CUHK-SYSU test from /data/CUHK-SYSU"``.
        records: the loaded records.
        num_identities: the number of labeled identities of the split.
    """
    num_boxes = sum(len(r["annotations"]) for r in records)
    num_labeled = sum(a["person_id"] >= 0 for r in records for a in r["annotations"])
    num_queries = sum(len(r.get("queries", [])) for r in records)
    logger.info(
        "Loaded %s: %d images, %d boxes (%d labeled), %d identities%s.",
        what,
        len(records),
        num_boxes,
        num_labeled,
        num_identities,
        f", {num_queries} queries" if num_queries else "",
    )
