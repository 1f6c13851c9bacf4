"""Box helpers shared by the evaluation protocols (numpy only)."""

import warnings

import numpy as np


def pairwise_iou_numpy(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of every pair of XYXY boxes, computed exactly as the reference protocols do.

    The numpy counterpart of :func:`detectron2.structures.pairwise_iou` (which takes two
    ``Boxes`` and returns a tensor); formerly also named ``pairwise_iou``, which shadowed it.

    Protocol rule: coordinates are used as given (no "+1" pixel convention);
    ``inter = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1))`` and
    ``union = area1 + area2 - inter``.

    Args:
        boxes1: (N, 4) XYXY boxes.
        boxes2: (M, 4) XYXY boxes.

    Returns:
        (N, M) float64 IoU matrix. A pair whose union is 0 (two degenerate boxes) gets IoU 0.
    """
    a = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(0.0, ix2 - ix1) * np.maximum(0.0, iy2 - iy1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def adaptive_iou_threshold(gt_box) -> float:
    """IoU a detection needs to count as the query person in a gallery image.

    Protocol rule (CUHK-SYSU / PRW search): ``min(0.5, w * h / ((w + 10) * (h + 10)))`` with
    ``w, h`` the width and height of the ground-truth box, so small people get a laxer threshold.

    Args:
        gt_box: (4,) XYXY ground-truth box.

    Returns:
        The threshold, a float in (0, 0.5].
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(gt_box).reshape(4))
    w, h = x2 - x1, y2 - y1
    return min(0.5, (w * h) / ((w + 10.0) * (h + 10.0)))


def deprecated_pairwise_iou(stacklevel: int = 2):
    """``pairwise_iou_numpy`` under its old name ``pairwise_iou``, with a ``DeprecationWarning``
    (the old name is kept for one release)."""
    warnings.warn(
        "personsearch.evaluation.pairwise_iou is deprecated and will be removed in the next "
        "release (it shadowed detectron2.structures.pairwise_iou); use pairwise_iou_numpy.",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return pairwise_iou_numpy


def __getattr__(name: str):
    if name == "pairwise_iou":
        return deprecated_pairwise_iou()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
