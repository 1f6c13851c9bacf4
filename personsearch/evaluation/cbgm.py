"""Context Bipartite Graph Matching (CBGM), SeqNet's test-time re-ranking (numpy + scipy).

For one query, the k1 gallery detections most similar to it name a few candidate images. Each
candidate image is re-scored by matching the *query context* (the query plus its best neighbours in
the query image) to all detections of that image; the detection matched to the query gets the
largest edge weight among the matched pairs as its new similarity.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from .boxes import pairwise_iou_numpy
from .ranking import top_k_descending


@dataclass(frozen=True)
class CBGMOptions:
    """CBGM hyper-parameters (reference values: CUHK-SYSU k1=10, k2=3; PRW k1=30, k2=4).

    Attributes:
        k1: number of top-similarity gallery detections whose images are re-scored.
        k2: size of the query context (the query itself plus ``k2 - 1`` neighbours).
    """

    k1: int = 10
    k2: int = 3

    def __post_init__(self):
        if self.k1 < 1 or self.k2 < 1:
            raise ValueError(f"CBGM needs k1 >= 1 and k2 >= 1, got k1={self.k1}, k2={self.k2}.")


def build_query_context(
    query_feat: np.ndarray,
    query_box: np.ndarray,
    image_boxes: np.ndarray,
    image_scores: np.ndarray,
    image_feats: np.ndarray,
    k2: int,
    nms_thresh: float = 0.5,
) -> np.ndarray:
    """The query-side nodes of the CBGM graph.

    Protocol rule (SeqNet): the reference runs the detector on the query image with the query GT
    box forced in at score 1.0 before NMS (threshold 0.5) and CWS disabled, and takes the first k2
    outputs, the query box being first. Here that is emulated from the query image's own gallery
    detections: the query feature first, then the ``k2 - 1`` highest-scoring detections (stable
    order on equal scores) whose IoU with the query box is ``<= nms_thresh`` (the ones NMS would
    keep next to a score-1.0 query box), with their *unweighted* features. Detections that the
    forced query box would have un-suppressed cannot be recovered; this is the only difference.

    Args:
        query_feat: (D,) L2-normalised query embedding.
        query_box: (4,) XYXY query box.
        image_boxes: (N, 4) detections of the query image (already filtered by score).
        image_scores: (N,) their scores.
        image_feats: (N, D) their L2-normalised, NOT score-weighted, features.
        k2: context size.
        nms_thresh: IoU above which a detection counts as the query box itself.

    Returns:
        (K, D) context features, ``1 <= K <= k2``, row 0 the query.
    """
    query_feat = np.asarray(query_feat, dtype=np.float32).reshape(1, -1)
    if k2 <= 1 or len(image_boxes) == 0:
        return query_feat
    order = np.argsort(-np.asarray(image_scores, dtype=np.float64), kind="stable")
    ious = pairwise_iou_numpy(np.asarray(image_boxes)[order], np.asarray(query_box).reshape(1, 4))[
        :, 0
    ]
    order = order[ious <= nms_thresh][: k2 - 1]
    return np.concatenate([query_feat, np.asarray(image_feats, dtype=np.float32)[order]], axis=0)


def match_context(context: np.ndarray, gallery_feats: np.ndarray):
    """Maximum-weight bipartite matching of the query context to one gallery image.

    Protocol rule (SeqNet ``run_kuhn_munkres`` + ``get_max_value_result``): edge weight = dot
    product of a context feature and a gallery feature; a maximum-weight matching of the complete
    bipartite graph that saturates the smaller side; the new similarity is the **maximum** edge
    weight among the matched pairs and it goes to the gallery detection matched to the query
    (row 0). ``scipy.optimize.linear_sum_assignment(maximize=True)`` solves the same problem as the
    reference Kuhn-Munkres code: that code also matches every node of the smaller side (the graph
    is complete, so negative weights never leave a node unmatched) and maximises the total weight.
    The only possible difference is *which* optimum is returned when several matchings have the
    same total weight (and the reference's 1e-8 tolerance on label equality); when the gallery
    image has fewer detections than the context, the query row may stay unmatched in both.

    Args:
        context: (K, D) query context, row 0 the query.
        gallery_feats: (N, D) features of the gallery image (as used for the similarity, i.e.
            CWS-weighted when CWS is on).

    Returns:
        ``(j, value)``: the detection index matched to the query and the new similarity, or
        ``(None, None)`` when the query row is not matched (or N == 0).
    """
    if len(gallery_feats) == 0:
        return None, None
    weights = np.asarray(context, dtype=np.float64) @ np.asarray(gallery_feats, np.float64).T
    rows, cols = linear_sum_assignment(weights, maximize=True)
    hit = np.flatnonzero(rows == 0)
    if hit.size == 0:
        return None, None
    return int(cols[hit[0]]), float(weights[rows, cols].max())


def cbgm_rescore(
    sims: np.ndarray,
    images: np.ndarray,
    entry_pos: np.ndarray,
    entry_count: np.ndarray,
    k1: int,
    rescore_image: Callable[[int], Tuple[Optional[int], Optional[float]]],
) -> Dict[int, tuple]:
    """Apply CBGM to one query's similarity list, in place.

    Protocol rule (SeqNet ``eval_search_*`` with ``cbgm=True``): over the detections of the
    query's gallery, each image counted once (the reference keeps one similarity array per image),
    take the ``k1`` highest similarities (``np.argsort(sims)[-k1:]``), collect their images,
    re-score each of them with :func:`match_context` and overwrite the similarity of the detection
    matched to the query. An image listed several times (duplicated gallery entries) gets the
    update in every one of its blocks.

    Args:
        sims: (L,) similarities of the query's gallery detections, concatenated entry by entry.
        images: (G,) image index of each entry.
        entry_pos: (G,) start of each entry's block in ``sims``.
        entry_count: (G,) number of detections of each entry.
        k1: number of top detections whose images are re-scored.
        rescore_image: ``f(image_index) -> (j, value)`` as returned by :func:`match_context`.

    Returns:
        ``{image_index: (j, value)}`` for the re-scored images (for inspection and tests).
    """
    if len(sims) == 0:
        return {}
    images = np.asarray(images, dtype=np.int64)
    if len(images) > 1 and np.any(np.diff(images) <= 0):  # repeats possible: first occurrences
        _, first = np.unique(images, return_index=True)
        first.sort()
    else:
        first = np.arange(len(images))
    starts, counts = entry_pos[first], entry_count[first]
    total = int(counts.sum())
    positions = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total)
    top = positions[top_k_descending(sims[positions], k1)]
    top_entries = first[np.searchsorted(starts, top, side="right") - 1]
    updates = {}
    for img in np.unique(images[top_entries]):
        j, value = rescore_image(int(img))
        updates[int(img)] = (j, value)
        if j is not None:
            sims[entry_pos[images == img] + j] = value
    return updates
