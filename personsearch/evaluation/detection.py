"""Detection metrics of the person-search protocol: recall-scaled AP and recall at IoU 0.5.

Pure numpy; reproduces the reference evaluation code (OIM ``psdb.evaluate_detections``, NAE
``detection_performance_calc``, SeqNet ``eval_detection``) including its matching quirks.
"""

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from sklearn.metrics import average_precision_score

from .boxes import pairwise_iou_numpy

logger = logging.getLogger(__name__)


@dataclass
class DetectionResult:
    """Detection metrics as fractions in [0, 1] plus the counts they come from."""

    ap: float
    recall: float
    num_gt: int
    num_tp: int
    num_det: int


def match_detections(gt_boxes: np.ndarray, det_boxes: np.ndarray, iou_thresh: float = 0.5):
    """Mark which detections of one image are true positives.

    Protocol rule (reference ``evaluate_detections``), applied in this order:

    1. ``tfmat[i, j] = IoU(gt_i, det_j) >= iou_thresh``, with the IoU stored in float32 as the
       reference does.
    2. For every detection j keep only ``tfmat[argmax_i IoU[:, j], j]`` (its best GT).
    3. For every GT i keep only ``tfmat[i, argmax_j IoU[i, :]]``, the argmax running over *all*
       detections of the image (first index on ties). A GT whose best detection was assigned to
       another GT in step 2 therefore gets no true positive, even if another detection overlaps it
       by more than ``iou_thresh``; this quirk is replicated on purpose.
    4. Detection j is a true positive iff any entry of column j survives.

    An image without GT boxes (the reference would fail on it) gives only false positives.

    Args:
        gt_boxes: (G, 4) XYXY ground-truth boxes.
        det_boxes: (N, 4) XYXY detections (already filtered by score).
        iou_thresh: IoU needed for a match.

    Returns:
        ``(is_tp, num_tp)``: (N,) bool array and the number of surviving (GT, detection) pairs.
    """
    num_gt, num_det = len(gt_boxes), len(det_boxes)
    if num_det == 0:
        return np.zeros(0, dtype=bool), 0
    if num_gt == 0:
        return np.zeros(num_det, dtype=bool), 0
    ious = pairwise_iou_numpy(gt_boxes, det_boxes).astype(np.float32)
    keep = ious >= iou_thresh
    best_gt = np.zeros_like(keep)
    best_gt[np.argmax(ious, axis=0), np.arange(num_det)] = True
    best_det = np.zeros_like(keep)
    best_det[np.arange(num_gt), np.argmax(ious, axis=1)] = True
    keep &= best_gt & best_det
    return keep.any(axis=0), int(keep.sum())


def evaluate_detections(
    gt_boxes: Sequence[np.ndarray],
    det_boxes: Sequence[np.ndarray],
    det_scores: Sequence[np.ndarray],
    gt_person_ids: Optional[Sequence[np.ndarray]] = None,
    det_thresh: float = 0.01,
    iou_thresh: float = 0.5,
    labeled_only: bool = False,
) -> DetectionResult:
    """Detection AP and recall over the gallery images.

    Protocol rule (reference detection evaluation):

    * detections with ``score >= det_thresh`` only (default 0.01, the value the reference engines
      pass);
    * per image, true positives from :func:`match_detections` at IoU ``iou_thresh`` (0.5);
    * ``recall = #TP / #GT`` over all images; images without any detection still add their GT;
    * ``AP = sklearn.metrics.average_precision_score(y_true, y_score) * recall``, where y_true and
      y_score run over all kept detections of all images (in image order, detection order);
    * ``labeled_only``: GT boxes with ``person_id < 0`` are dropped and an image left without GT is
      skipped entirely (its detections are not counted as false positives), as the reference does.

    Args:
        gt_boxes: per image (G_i, 4) XYXY ground-truth boxes.
        det_boxes: per image (N_i, 4) XYXY detections.
        det_scores: per image (N_i,) detection scores.
        gt_person_ids: per image (G_i,) person ids (-1 = unlabeled); needed for ``labeled_only``.
        det_thresh: minimum detection score.
        iou_thresh: IoU for a true positive.
        labeled_only: only labeled people count as GT.

    Returns:
        A :class:`DetectionResult`; AP and recall are 0 when there is no GT or no true positive.
    """
    if not (len(gt_boxes) == len(det_boxes) == len(det_scores)):
        raise ValueError(
            f"evaluate_detections: {len(gt_boxes)} GT lists, {len(det_boxes)} box lists and "
            f"{len(det_scores)} score lists; one of each per image is needed."
        )
    if labeled_only and gt_person_ids is None:
        raise ValueError("evaluate_detections: labeled_only=True needs gt_person_ids.")
    y_true, y_score = [], []
    count_gt, count_tp = 0, 0
    for i in range(len(gt_boxes)):
        gts = np.asarray(gt_boxes[i], dtype=np.float64).reshape(-1, 4)
        if labeled_only:
            gts = gts[np.asarray(gt_person_ids[i]).reshape(-1) >= 0]
            if len(gts) == 0:
                continue
        scores = np.asarray(det_scores[i], dtype=np.float64).reshape(-1)
        keep = scores >= det_thresh
        boxes = np.asarray(det_boxes[i], dtype=np.float64).reshape(-1, 4)[keep]
        count_gt += len(gts)
        if len(boxes) == 0:
            continue
        is_tp, num_tp = match_detections(gts, boxes, iou_thresh)
        count_tp += num_tp
        y_true.append(is_tp)
        y_score.append(scores[keep])
    num_det = int(sum(len(s) for s in y_score))
    if count_gt == 0:
        logger.warning("Detection evaluation: no ground-truth boxes; AP and recall set to 0.")
        return DetectionResult(0.0, 0.0, 0, 0, num_det)
    recall = count_tp / count_gt
    if count_tp == 0:
        ap = 0.0
    else:
        ap = float(average_precision_score(np.concatenate(y_true), np.concatenate(y_score)))
        ap *= recall
    return DetectionResult(float(ap), float(recall), int(count_gt), int(count_tp), num_det)
