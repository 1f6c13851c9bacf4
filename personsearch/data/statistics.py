"""Statistics of a person-search split (records in the project convention).

Used by ``tools/analyze_dataset.py`` (the table: :mod:`personsearch.data.statistics_report`; the
"diverse scale" figure: :mod:`personsearch.visualization.dataset_plots`) and reusable by any
analysis that groups people by height (e.g. detection recall or IoU per height bin)::

    from personsearch.data.statistics import compute_dataset_statistics, height_bin_index
    stats = compute_dataset_statistics(DatasetCatalog.get("cuhk_sysu_test"))
    stats["box_height"]["bins"]   # {"[0,60)": n0, "[60,100)": n1, ...}

All heights are box heights ``y2 - y1`` in original-image pixels.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
from detectron2.structures import BoxMode
from tqdm import tqdm

__all__ = [
    "HEIGHT_BIN_EDGES",
    "HEIGHT_BIN_LABELS",
    "PERCENTILES",
    "DatasetArrays",
    "collect_dataset_arrays",
    "compute_dataset_statistics",
    "describe",
    "height_bin_index",
    "height_histogram",
    "statistics_from_arrays",
]

# Lower edges of the height bins [0,60), [60,100), [100,200), [200,400), >=400 (original pixels):
# the bins of the scale and IoU-by-height analyses (MODEL_ZOO.md, "SeqNet's boxes by person
# height").
HEIGHT_BIN_EDGES = (0, 60, 100, 200, 400)
HEIGHT_BIN_LABELS = ("[0,60)", "[60,100)", "[100,200)", "[200,400)", ">=400")
PERCENTILES = (5, 25, 50, 75, 95)


@dataclass
class DatasetArrays:
    """Per-image, per-box and per-query values of one split, as flat numpy arrays.

    Attributes:
        image_ids: (I,) image ids in record order.
        image_heights, image_widths: (I,) image sizes in pixels.
        boxes_per_image: (I,) number of annotated people per image.
        box_heights, box_widths: (B,) box sizes in original pixels, every annotation.
        box_pids: (B,) person ids, -1 for unlabeled people.
        query_heights: (Q,) query box heights.
        query_pids: (Q,) query person ids.
        query_image_ids: (Q,) image id of each query.
        gallery_sizes: (G,) length of ``gallery_image_ids`` for the queries that give one.
        camera_ids: (C,) camera id of the images that have one.
    """

    image_ids: List[str] = field(default_factory=list)
    image_heights: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    image_widths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    boxes_per_image: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    box_heights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    box_widths: np.ndarray = field(default_factory=lambda: np.zeros(0))
    box_pids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    query_heights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    query_pids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    query_image_ids: List[str] = field(default_factory=list)
    gallery_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    camera_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def appearances_per_identity(self) -> np.ndarray:
        """(K,) number of boxes of each labeled identity (identities in sorted id order)."""
        labeled = self.box_pids[self.box_pids >= 0]
        if len(labeled) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.unique(labeled, return_counts=True)[1]


def _xyxy(bbox: Sequence[float], mode) -> List[float]:
    if mode is None or mode == BoxMode.XYXY_ABS:
        return list(bbox)
    return BoxMode.convert(list(bbox), mode, BoxMode.XYXY_ABS)


def collect_dataset_arrays(records: Sequence[Dict], desc: Optional[str] = None) -> DatasetArrays:
    """Gather the per-image, per-box and per-query values of a split.

    Args:
        records: dataset dicts in the project convention.
        desc: progress-bar label (shown for splits of 1000 images or more).
    """
    image_ids, heights, widths, per_image = [], [], [], []
    box_h, box_w, box_pid, q_h, q_pid, q_image, gallery, cams = [], [], [], [], [], [], [], []
    for record in tqdm(records, desc=desc or "collecting statistics", disable=len(records) < 1000):
        image_ids.append(record["image_id"])
        heights.append(record["height"])
        widths.append(record["width"])
        anns = record.get("annotations", [])
        per_image.append(len(anns))
        for ann in anns:
            x1, y1, x2, y2 = _xyxy(ann["bbox"], ann.get("bbox_mode"))
            box_h.append(y2 - y1)
            box_w.append(x2 - x1)
            box_pid.append(ann["person_id"])
        for query in record.get("queries", []):
            x1, y1, x2, y2 = query["bbox"]
            q_h.append(y2 - y1)
            q_pid.append(query["person_id"])
            q_image.append(record["image_id"])
            if query.get("gallery_image_ids") is not None:
                gallery.append(len(query["gallery_image_ids"]))
        if record.get("camera_id") is not None:
            cams.append(record["camera_id"])
    return DatasetArrays(
        image_ids=image_ids,
        image_heights=np.asarray(heights, dtype=np.int64),
        image_widths=np.asarray(widths, dtype=np.int64),
        boxes_per_image=np.asarray(per_image, dtype=np.int64),
        box_heights=np.asarray(box_h, dtype=np.float64),
        box_widths=np.asarray(box_w, dtype=np.float64),
        box_pids=np.asarray(box_pid, dtype=np.int64),
        query_heights=np.asarray(q_h, dtype=np.float64),
        query_pids=np.asarray(q_pid, dtype=np.int64),
        query_image_ids=q_image,
        gallery_sizes=np.asarray(gallery, dtype=np.int64),
        camera_ids=np.asarray(cams, dtype=np.int64),
    )


def height_bin_index(heights: np.ndarray) -> np.ndarray:
    """Index (0..4) of each height's bin in :data:`HEIGHT_BIN_EDGES`."""
    heights = np.asarray(heights, dtype=np.float64)
    return np.searchsorted(np.asarray(HEIGHT_BIN_EDGES[1:], dtype=np.float64), heights, "right")


def height_histogram(heights: np.ndarray) -> Dict[str, int]:
    """Number of heights in each bin, keyed by :data:`HEIGHT_BIN_LABELS`."""
    counts = np.bincount(height_bin_index(heights), minlength=len(HEIGHT_BIN_LABELS))
    return {label: int(c) for label, c in zip(HEIGHT_BIN_LABELS, counts)}


def describe(values: np.ndarray) -> Optional[Dict[str, float]]:
    """``{"min", "mean", "max"}`` of the values, or None when there are none."""
    values = np.asarray(values)
    if values.size == 0:
        return None
    return {"min": _num(values.min()), "mean": float(values.mean()), "max": _num(values.max())}


def _num(value) -> float:
    """A JSON-friendly number: int when integral."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _height_statistics(heights: np.ndarray) -> Optional[Dict]:
    if heights.size == 0:
        return None
    stats = describe(heights)
    stats["percentiles"] = {
        f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(heights, PERCENTILES))
    }
    bins = height_histogram(heights)
    stats["bins"] = bins
    stats["bin_fractions"] = {k: v / heights.size for k, v in bins.items()}
    return stats


def compute_dataset_statistics(records: Sequence[Dict], desc: Optional[str] = None) -> Dict:
    """Statistics of one split, as a JSON-serialisable dict.

    Args:
        records: dataset dicts in the project convention.
        desc: progress-bar label.

    Returns:
        A dict with ``num_images``, ``num_images_without_boxes``, ``num_boxes``,
        ``num_labeled_boxes``, ``num_unlabeled_boxes``, ``num_identities``,
        ``appearances_per_identity`` and ``boxes_per_image`` (``{min, mean, max}`` or None),
        ``num_queries``, ``num_images_with_queries``, ``num_query_identities``,
        ``num_queries_with_gallery`` and ``gallery_size`` (``{min, mean, max}`` or None),
        ``num_cameras`` (None without camera ids), ``image_height``/``image_width``
        (``{min, mean, max}``), ``num_distinct_image_sizes``, ``most_common_image_sizes``
        (up to 5 ``["WxH", count]``), and ``box_height``/``query_height``: ``{min, mean, max,
        percentiles: {p5, p25, p50, p75, p95}, bins: {label: count}, bin_fractions: {label:
        fraction}}`` (None when there are no boxes/queries).
    """
    return statistics_from_arrays(collect_dataset_arrays(records, desc))


def statistics_from_arrays(arrays: DatasetArrays) -> Dict:
    """:func:`compute_dataset_statistics` from already collected arrays."""
    labeled = arrays.box_pids >= 0
    sizes = Counter(f"{w}x{h}" for w, h in zip(arrays.image_widths, arrays.image_heights))
    return {
        "num_images": len(arrays.image_ids),
        "num_images_without_boxes": int((arrays.boxes_per_image == 0).sum()),
        "num_boxes": int(arrays.box_pids.size),
        "num_labeled_boxes": int(labeled.sum()),
        "num_unlabeled_boxes": int((~labeled).sum()),
        "num_identities": int(np.unique(arrays.box_pids[labeled]).size),
        "appearances_per_identity": describe(arrays.appearances_per_identity),
        "boxes_per_image": describe(arrays.boxes_per_image),
        "num_queries": int(arrays.query_pids.size),
        "num_images_with_queries": len(set(arrays.query_image_ids)),
        "num_query_identities": int(np.unique(arrays.query_pids).size),
        "num_queries_with_gallery": int(arrays.gallery_sizes.size),
        "gallery_size": describe(arrays.gallery_sizes),
        "num_cameras": int(np.unique(arrays.camera_ids).size) if arrays.camera_ids.size else None,
        "image_height": describe(arrays.image_heights),
        "image_width": describe(arrays.image_widths),
        "num_distinct_image_sizes": len(sizes),
        "most_common_image_sizes": [[k, int(v)] for k, v in sizes.most_common(5)],
        "box_height": _height_statistics(arrays.box_heights),
        "query_height": _height_statistics(arrays.query_heights),
    }
