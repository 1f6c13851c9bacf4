"""Per-image post-processing shared by the NAE-family heads (NAE, NAE+, both SeqNet stages).

It follows the reference (torchvision 0.4 ``RoIHeads.postprocess_detections`` as NAE and SeqNet
use it) step by step: clip the decoded boxes to the image, keep scores strictly above the
threshold, drop boxes with a side below ``min_size`` (1e-2), NMS, keep the ``topk`` best.
detectron2's ``fast_rcnn_inference`` is the same except for the small-box filter, which it lacks.

The candidates that enter NMS are also returned: the query-image context of CBGM (the detector run
on the query image with the query box forced in at score 1 before NMS) is computed from them in
the same backbone pass (:func:`query_context`).
"""

from dataclasses import dataclass
from typing import List, Tuple

import torch
from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances, pairwise_iou


@dataclass
class Candidates:
    """One image's detections before NMS (after the score threshold and the small-box filter).

    Attributes:
        boxes: (N, 4) clipped XYXY boxes, input-image coordinates.
        scores: (N,) detection scores.
        feats: (N, D) L2-normalised embeddings (never score-weighted).
        nms_thresh: the NMS threshold the detections were produced with.
        topk: the detections-per-image limit.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    feats: torch.Tensor
    nms_thresh: float
    topk: int


def person_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    feats: torch.Tensor,
    image_size: Tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    topk: int,
    min_size: float = 1e-2,
) -> Tuple[Instances, torch.Tensor, Candidates]:
    """Detections of one image.

    Args:
        boxes: (R, 4) decoded XYXY boxes of the image's RoIs (input-image coordinates).
        scores: (R,) detection scores.
        feats: (R, D) embeddings of the RoIs (L2-normalised).
        image_size: (height, width) of the input image, for clipping.
        score_thresh: keep scores strictly greater.
        nms_thresh: NMS IoU threshold.
        topk: maximum detections (< 0: no limit).
        min_size: drop boxes whose width or height is smaller.

    Returns:
        ``(instances, kept, candidates)``: ``Instances`` with ``pred_boxes``, ``scores``,
        ``pred_classes`` (0) and ``reid_feats``; the indices (into the R inputs) of the kept RoIs;
        the pre-NMS :class:`Candidates`.
    """
    boxes = Boxes(boxes.reshape(-1, 4).clone())
    boxes.clip(image_size)
    b = boxes.tensor
    valid = torch.isfinite(b).all(dim=1) & torch.isfinite(scores)
    widths, heights = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    keep = valid & (scores > score_thresh) & (widths >= min_size) & (heights >= min_size)
    idx = torch.nonzero(keep).squeeze(1)
    cand = Candidates(b[idx], scores[idx], feats[idx], nms_thresh, topk)
    order = nms_topk(cand.boxes, cand.scores, nms_thresh, topk)
    kept = idx[order]
    result = Instances(image_size)
    result.pred_boxes = Boxes(cand.boxes[order])
    result.scores = cand.scores[order]
    result.pred_classes = torch.zeros(len(order), dtype=torch.int64, device=b.device)
    result.reid_feats = cand.feats[order]
    return result, kept, cand


def nms_topk(boxes: torch.Tensor, scores: torch.Tensor, nms_thresh: float, topk: int):
    """Indices kept by NMS, best first, at most ``topk`` (< 0: all)."""
    keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.int64), nms_thresh)
    return keep[:topk] if topk >= 0 else keep


def query_context(
    cand: Candidates, query_box: torch.Tensor, query_feat: torch.Tensor, size: int
) -> torch.Tensor:
    """The CBGM context of one query: the query image's detections with the query box forced in.

    Reference (SeqNet ``query_img_as_gallery``): the query box is appended to the candidates with
    score 1.0 and its own embedding, CWS is off, NMS runs as usual and the query comes out first.
    Greedy NMS visits the score-1 query box first, which removes every candidate overlapping it by
    more than the NMS threshold; NMS over the remaining candidates then gives the rest. That is
    computed here directly, so the query stays first even if a candidate also scores exactly 1.0.

    Args:
        cand: the image's pre-NMS candidates.
        query_box: (4,) XYXY query box, input-image coordinates.
        query_feat: (D,) L2-normalised query embedding.
        size: number of context entries to return (the query included).

    Returns:
        (K, D) with ``1 <= K <= size``; row 0 is the query.
    """
    q = query_feat.reshape(1, -1)
    if size <= 1 or len(cand.scores) == 0:
        return q
    ious = pairwise_iou(Boxes(cand.boxes), Boxes(query_box.reshape(1, 4)))[:, 0]
    rest = torch.nonzero(ious <= cand.nms_thresh).squeeze(1)
    limit = size - 1 if cand.topk < 0 else min(size, cand.topk) - 1
    order = nms_topk(cand.boxes[rest], cand.scores[rest], cand.nms_thresh, limit)
    return torch.cat([q, cand.feats[rest[order]]], dim=0)


def query_contexts(
    candidates: List[Candidates], query_boxes: List[Boxes], query_feats: List[torch.Tensor], size
) -> List[List[torch.Tensor]]:
    """:func:`query_context` for every query of every image (``size`` <= 0: empty lists)."""
    out = []
    for cand, boxes, feats in zip(candidates, query_boxes, query_feats):
        if size <= 0:
            out.append([])
            continue
        out.append([query_context(cand, b, f, size) for b, f in zip(boxes.tensor, feats)])
    return out
