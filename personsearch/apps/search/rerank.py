"""CBGM re-ranking of a query's hits (SeqNet's Context Bipartite Graph Matching, as in the
evaluator, on an index instead of a protocol gallery)."""

from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from personsearch.evaluation.cbgm import build_query_context, match_context

__all__ = ["cbgm_rerank", "query_context_of"]


def query_context_of(
    output: Dict, query_box: Sequence[float], score_thresh: float, k2: int
) -> np.ndarray:
    """The CBGM context of the first query of a predictor output (row 0 the query).

    The model's own context (``output["query_contexts"][0]``, the NAE-family heads: the query box
    forced into the image's detections before NMS) when it has one; otherwise the evaluator's
    emulation from the query image's detections with a score >= ``score_thresh``
    (:func:`personsearch.evaluation.cbgm.build_query_context`).

    Args:
        output: ``PersonSearchPredictor(image, query_boxes=[query_box])``.
        query_box: (4,) XYXY, original pixels.
        score_thresh: the index's detection threshold.
        k2: context size.

    Returns:
        (K, D) float32, 1 <= K <= k2.
    """
    contexts = output.get("query_contexts") or []
    if contexts and len(contexts[0]):
        return contexts[0][:k2].numpy().astype(np.float32)
    inst = output["instances"]
    scores = inst.scores.numpy()
    keep = scores >= score_thresh
    return build_query_context(
        output["query_feats"][0].numpy(),
        np.asarray(query_box, dtype=np.float64),
        inst.pred_boxes.tensor.numpy()[keep],
        scores[keep],
        inst.reid_feats.numpy()[keep],
        k2,
    )


def cbgm_rerank(
    scores: np.ndarray,
    rows: np.ndarray,
    feats: np.ndarray,
    det_scores: np.ndarray,
    det_item: np.ndarray,
    rows_of_item: Callable[[int], np.ndarray],
    context: np.ndarray,
    k1: int,
    top_k: int,
    cws: bool,
) -> Tuple[np.ndarray, np.ndarray, Dict[int, Tuple[Optional[int], Optional[float]]]]:
    """Re-score the images of the ``k1`` best hits with CBGM and rank again.

    Each image among the first ``k1`` hits is matched to the query context
    (:func:`~personsearch.evaluation.cbgm.match_context`, gallery features CWS-weighted when
    ``cws``); the detection matched to the query gets the matching's value as its new score. That
    value is never below the detection's old score (the query-detection edge is one of the matched
    pairs), so ranking the union of the candidates and the re-scored detections is exact when the
    candidates are the best ``max(top_k, k1)`` of the gallery.

    Args:
        scores: (K,) candidate scores, decreasing. rows: (K,) their gallery rows.
        feats: (R, D) gallery embeddings (float16 or float32; a memory map is fine).
        det_scores: (R,) detection scores. det_item: (R,) image/frame id of each row.
        rows_of_item: the rows of an image/frame id.
        context: (C, D) query context, row 0 the query.
        k1: hits whose images are re-scored. top_k: hits returned.
        cws: multiply gallery features by their detection score.

    Returns:
        ``(scores, rows, rescored)``: the new top-``top_k`` (sorted, ties: lower row first) and
        ``{image: (row, value)}`` of the re-scored images (row None when no detection matched).
    """
    new = dict(zip(rows.tolist(), scores.tolist()))
    rescored = {}
    for item in np.unique(det_item[rows[:k1]]).tolist():
        item_rows = np.asarray(rows_of_item(item), dtype=np.int64)
        f = np.asarray(feats[item_rows], dtype=np.float32)
        if cws:
            f = f * det_scores[item_rows, None]
        j, value = match_context(context, f)
        if j is None:
            rescored[item] = (None, None)
            continue
        rescored[item] = (int(item_rows[j]), value)
        new[int(item_rows[j])] = value
    idx = np.fromiter(new.keys(), dtype=np.int64, count=len(new))
    val = np.fromiter(new.values(), dtype=np.float64, count=len(new))
    order = np.lexsort((idx, -val))[:top_k]
    return val[order].astype(np.float32), idx[order], rescored
