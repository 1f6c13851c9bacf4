"""Ranking helpers with the reference's exact ordering but without sorting whole galleries."""

import numpy as np
from sklearn.metrics import average_precision_score


def top_k_descending(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the first ``k`` elements of ``np.argsort(values)[::-1]``.

    Protocol rule (reference top-k and CBGM candidate selection): the ranking is
    ``np.argsort(values)[::-1]``. When the k largest values are distinct and the k-th largest is
    not tied with a value outside them, that ranking is fully determined by the values, so a
    partial sort gives the same indices in the same order; otherwise (ties) the full
    ``np.argsort`` is run so tie order matches the reference expression exactly.

    Args:
        values: (L,) finite scores.
        k: how many.

    Returns:
        (min(k, L),) int indices, best first.
    """
    values = np.asarray(values)
    n = len(values)
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if n <= 4 * k:
        return np.argsort(values)[::-1][:k]
    part = np.argpartition(values, n - k)[n - k :]
    top = values[part]
    kth = top.min()
    if np.count_nonzero(values >= kth) == k and len(np.unique(top)) == k:
        return part[np.argsort(top)[::-1]]
    return np.argsort(values)[::-1][:k]


def recall_scaled_ap(labels: np.ndarray, scores: np.ndarray, count_tp: int, count_gt: int) -> float:
    """AP of one query as the reference computes it.

    Protocol rule: ``0`` if ``count_tp == 0``, else
    ``sklearn.metrics.average_precision_score(labels, scores) * count_tp / count_gt``.

    Only detections scoring at least as high as the lowest-scoring positive are passed to sklearn:
    every lower threshold has recall already at its maximum, so its term in sklearn's sum
    ``sum_n (R_n - R_{n-1}) * P_n`` is exactly zero and dropping it leaves the AP unchanged (up to
    the float rounding of a shorter sum, ~1e-16). On PRW-size galleries this avoids sorting tens
    of thousands of negatives per query.

    Args:
        labels: (L,) 0/1 labels.
        scores: (L,) scores.
        count_tp: number of positives in ``labels``.
        count_gt: number of gallery entries showing the query person.

    Returns:
        The AP in [0, 1].
    """
    if count_tp == 0 or count_gt == 0:
        return 0.0
    lowest_positive = scores[labels > 0].min()
    keep = scores >= lowest_positive
    ap = float(average_precision_score(labels[keep], scores[keep]))
    return ap * count_tp / count_gt
