"""The generic person-search protocol (numpy only): per-query recall-scaled AP and top-k.

One function, :func:`evaluate_search`, scores every protocol. A protocol only decides, per query,
which gallery entries to search (:class:`GallerySpec`; built in ``galleries.py`` for CUHK-SYSU,
PRW and custom datasets). The rules reproduce the reference evaluation code (OIM
``psdb.evaluate_search``, NAE ``search_performance_calc``, SeqNet ``eval_search_cuhk`` /
``eval_search_prw``), including the order in which detections are concatenated, because it decides
ties in the top-k ranking.
"""

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import sklearn

from .boxes import adaptive_iou_threshold, pairwise_iou_numpy
from .cbgm import CBGMOptions, build_query_context, cbgm_rescore, match_context
from .ranking import recall_scaled_ap, top_k_descending

logger = logging.getLogger(__name__)

TOPK = (1, 5, 10)


@dataclass
class PackedDetections:
    """Detections of many images concatenated, with per-image offsets.

    Attributes:
        image_ids: (I,) image ids, in dataset order.
        offsets: (I + 1,) int64; the detections of image i are rows ``offsets[i]:offsets[i+1]``.
        boxes: (M, 4) float64 XYXY boxes, original pixels.
        scores: (M,) float32 detection scores.
        feats: (M, D) float32 L2-normalised features, not score-weighted.
    """

    image_ids: List[str]
    offsets: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    feats: np.ndarray

    @classmethod
    def from_per_image(
        cls,
        image_ids: Sequence[str],
        boxes: Sequence[np.ndarray],
        scores: Sequence[np.ndarray],
        feats: Sequence[np.ndarray],
        dim: int,
    ) -> "PackedDetections":
        """Pack per-image arrays ((N_i, 4), (N_i,), (N_i, D)); images with N_i = 0 are fine."""
        counts = np.array([len(np.asarray(s).reshape(-1)) for s in scores], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        m = int(offsets[-1])
        if m:
            all_boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in boxes])
            all_scores = np.concatenate([np.asarray(s, np.float32).reshape(-1) for s in scores])
            all_feats = np.concatenate(
                [np.asarray(f, np.float32).reshape(n, dim) for f, n in zip(feats, counts) if n]
            )
        else:
            all_boxes = np.zeros((0, 4))
            all_scores = np.zeros(0, np.float32)
            all_feats = np.zeros((0, dim), np.float32)
        return cls(list(image_ids), offsets, all_boxes, all_scores, all_feats)

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def counts(self) -> np.ndarray:
        """(I,) number of detections per image."""
        return np.diff(self.offsets)

    def image(self, i: int) -> slice:
        """Row slice of image ``i``."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def select(self, keep: np.ndarray) -> "PackedDetections":
        """Keep the rows where ``keep`` (M,) is True, preserving order and image boundaries."""
        keep = np.asarray(keep, dtype=bool)
        image_of = np.repeat(np.arange(self.num_images), self.counts)
        kept_per_image = np.bincount(image_of[keep], minlength=self.num_images)
        offsets = np.concatenate([[0], np.cumsum(kept_per_image)]).astype(np.int64)
        return PackedDetections(
            self.image_ids, offsets, self.boxes[keep], self.scores[keep], self.feats[keep]
        )


@dataclass
class GallerySpec:
    """What one query searches.

    Attributes:
        images: (G,) int image indices (into :class:`PackedDetections`) of the gallery entries,
            in protocol order; an image may appear more than once (each entry is processed).
        gt_entries: (T,) positions in ``images`` of the entries that show the query person.
        gt_boxes: (T, 4) XYXY box of the query person in each of those entries.
        negatives: (E,) extra images, searched after the entries, known not to show the person
            (CUHK-SYSU full gallery).
    """

    images: np.ndarray
    gt_entries: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    gt_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    negatives: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self):
        self.images = np.asarray(self.images, dtype=np.int64).reshape(-1)
        self.gt_entries = np.asarray(self.gt_entries, dtype=np.int64).reshape(-1)
        self.gt_boxes = np.asarray(self.gt_boxes, dtype=np.float64).reshape(-1, 4)
        self.negatives = np.asarray(self.negatives, dtype=np.int64).reshape(-1)
        if len(self.gt_entries) != len(self.gt_boxes):
            raise ValueError("GallerySpec: gt_entries and gt_boxes differ in length.")

    @classmethod
    def from_entries(
        cls, entries: Sequence[Tuple[int, Optional[Sequence[float]]]], negatives=()
    ) -> "GallerySpec":
        """Build from ``[(image_index, gt_box or None), ...]`` plus optional negative images."""
        images = [int(i) for i, _ in entries]
        gt_entries = [pos for pos, (_, box) in enumerate(entries) if box is not None]
        gt_boxes = [entries[pos][1] for pos in gt_entries]
        return cls(np.array(images, np.int64), np.array(gt_entries, np.int64), gt_boxes, negatives)

    @property
    def count_gt(self) -> int:
        """Number of gallery entries that show the query person (the recall denominator)."""
        return len(self.gt_entries)


@dataclass
class SearchResult:
    """Per-query search outcomes.

    Attributes:
        ap: (Q,) recall-scaled AP per query in [0, 1]; NaN for queries without any gallery match.
        hits: (Q, K) top-k hit (0/1) per query for ``topk``; meaningless where ``count_gt == 0``.
        count_gt: (Q,) gallery entries showing the query person.
        count_tp: (Q,) of those, how many have a detection labelled positive.
        topk: the k values.
        cbgm_updates: per query ``{image_index: (j, value)}`` when CBGM ran, else empty.
    """

    ap: np.ndarray
    hits: np.ndarray
    count_gt: np.ndarray
    count_tp: np.ndarray
    topk: Tuple[int, ...] = TOPK
    cbgm_updates: List[Dict[int, tuple]] = field(default_factory=list)

    @property
    def valid(self) -> np.ndarray:
        """(Q,) bool: queries that have at least one gallery match (those enter the means)."""
        return self.count_gt > 0

    @property
    def num_queries_without_match(self) -> int:
        return int((~self.valid).sum())

    @property
    def mean_ap(self) -> float:
        v = self.valid
        return float(np.mean(self.ap[v])) if v.any() else 0.0

    def topk_accuracy(self, k: int) -> float:
        v = self.valid
        return float(np.mean(self.hits[v, self.topk.index(k)])) if v.any() else 0.0

    def summary(self) -> Dict[str, float]:
        """``{"mAP", "top1", "top5", ...}`` as fractions, means over queries with a match."""
        out = {"mAP": self.mean_ap}
        for k in self.topk:
            out[f"top{k}"] = self.topk_accuracy(k)
        return out


def _expand_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + c)`` for every (s, c) without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    block_start = np.cumsum(counts) - counts
    return np.repeat(starts - block_start, counts) + np.arange(total, dtype=np.int64)


def score_query(
    sims: np.ndarray,
    labels_boxes: Callable[[int, int], np.ndarray],
    spec: GallerySpec,
    entry_pos: np.ndarray,
    entry_count: np.ndarray,
    topk: Sequence[int] = TOPK,
) -> Tuple[float, np.ndarray, int]:
    """Label one query's concatenated gallery detections and compute its AP and top-k hits.

    Protocol rule (reference ``evaluate_search``): for every gallery entry that shows the query
    person, with GT box of width w and height h, ``thr = min(0.5, w*h / ((w+10)*(h+10)))``; the
    entry's detections are re-ordered by ``np.argsort(sim)[::-1]`` (this order is also the order in
    which they enter the concatenation) and only the FIRST one with ``IoU >= thr`` is a positive
    (one true positive per entry). Entries without the person keep their detection order, all
    negative. ``AP = 0`` if no positive, else ``average_precision_score(y_true, y_score) *
    count_tp / count_gt``; top-k: ``np.argsort(y_score)[::-1]`` over the concatenation, hit if any
    positive among the first k.

    Args:
        sims: (L,) similarities, concatenated entry by entry; re-ordered in place within GT entries.
        labels_boxes: ``f(start, stop) -> (n, 4)`` boxes of the detections at positions
            ``start:stop`` of the concatenation (called before re-ordering).
        spec: the query's gallery.
        entry_pos: (G,) start of each entry's block in ``sims``.
        entry_count: (G,) length of each entry's block.
        topk: the k values.

    Returns:
        ``(ap, hits, count_tp)``: AP (not yet averaged), (K,) 0/1 hits, number of positives.
    """
    labels = np.zeros(len(sims), dtype=np.int32)
    count_tp = 0
    for e, gt in zip(spec.gt_entries, spec.gt_boxes):
        n = int(entry_count[e])
        if n == 0:
            continue
        s = int(entry_pos[e])
        block = sims[s : s + n]
        order = np.argsort(block)[::-1]
        boxes = labels_boxes(s, s + n)[order]
        sims[s : s + n] = block[order]
        ious = pairwise_iou_numpy(boxes, gt[None])[:, 0]
        hit = np.flatnonzero(ious >= adaptive_iou_threshold(gt))
        if hit.size:
            labels[s + hit[0]] = 1
            count_tp += 1
    ap = recall_scaled_ap(labels, sims, count_tp, spec.count_gt)
    ranked = labels[top_k_descending(sims, max(topk))]
    hits = np.array([min(1, int(ranked[:k].sum())) for k in topk], dtype=np.int32)
    return ap, hits, count_tp


def evaluate_search(
    dets: PackedDetections,
    query_feats: np.ndarray,
    galleries: Sequence[GallerySpec],
    det_thresh: float = 0.5,
    cws: bool = True,
    cbgm: Optional[CBGMOptions] = None,
    query_images: Optional[np.ndarray] = None,
    query_boxes: Optional[np.ndarray] = None,
    query_contexts: Optional[Sequence[Optional[np.ndarray]]] = None,
    topk: Sequence[int] = TOPK,
    chunk_size: int = 128,
) -> SearchResult:
    """Score every query against its gallery.

    Protocol rules (reference ``evaluate_search``):

    * gallery detections with ``score >= det_thresh`` (0.5) only;
    * CWS: gallery features multiplied by their detection score; the query is never weighted;
      ``sim = gallery_feats @ query_feat``;
    * per query, its gallery entries in order, each processed even when the same image is listed
      twice (the original OIM/NAE code; SeqNet's re-implementation skips a repeated image *after*
      counting it, which we do not replicate), then the extra negative images;
    * ``count_gt`` = number of entries showing the person, counted even when that image has no
      detection (this is what makes the AP recall-scaled); labelling, AP and top-k as in
      :func:`score_query`; optional CBGM re-ranking before labelling (:mod:`.cbgm`; the
      reference has no CBGM for CUHK-SYSU's full gallery, here the extra negatives are CBGM
      candidates like any other gallery image);
    * mAP and top-k are means over queries. Queries with ``count_gt == 0`` (the person is absent
      from its gallery) make the reference divide by zero; they are excluded from the means,
      counted in ``SearchResult.num_queries_without_match`` and a warning is logged.

    Implementation: similarities are computed for a chunk of queries at once, either as one
    matrix product over all detections (large galleries, e.g. PRW) or by gathering each query's
    detections with index arrays (small galleries, e.g. CUHK-SYSU TestG100); only the few entries
    that show the person need a Python loop.

    Args:
        dets: all gallery images' detections (unfiltered, unweighted features).
        query_feats: (Q, D) L2-normalised query features.
        galleries: (Q,) one :class:`GallerySpec` per query (any ``Sequence``; built lazily is fine).
        det_thresh: minimum detection score of gallery detections.
        cws: confidence-weighted similarity.
        cbgm: CBGM options, or None for no re-ranking.
        query_images: (Q,) image index of each query (needed for CBGM).
        query_boxes: (Q, 4) XYXY query boxes (needed for CBGM).
        query_contexts: optional (Q,) per query its saved (K, D) CBGM context (row 0 the query;
            the reference's forced-query detection of the query image) or None; CBGM takes the
            first k2 rows. Queries without one get the emulated context
            (:func:`~.cbgm.build_query_context`).
        topk: the k values of top-k accuracy.
        chunk_size: queries per similarity chunk.

    Returns:
        A :class:`SearchResult`.
    """
    query_feats = np.asarray(query_feats, dtype=np.float32)
    num_q = len(query_feats)
    if len(galleries) != num_q:
        raise ValueError(f"evaluate_search: {num_q} query features but {len(galleries)} galleries.")
    if cbgm is not None and (query_images is None or query_boxes is None):
        raise ValueError("evaluate_search: CBGM needs query_images and query_boxes.")
    topk = tuple(int(k) for k in topk)
    kept = dets.select(dets.scores >= det_thresh)
    feats_w = kept.feats * kept.scores[:, None] if cws else kept.feats
    feats_w = np.ascontiguousarray(feats_w, dtype=np.float32)
    num_det = len(kept.scores)
    offsets = kept.offsets

    ap = np.full(num_q, np.nan)
    hits = np.zeros((num_q, len(topk)), dtype=np.int32)
    count_gt = np.zeros(num_q, dtype=np.int64)
    count_tp = np.zeros(num_q, dtype=np.int64)
    updates: List[Dict[int, tuple]] = []

    def score_chunk(c0: int, c1: int) -> None:
        specs = [galleries[i] for i in range(c0, c1)]
        gathered = []
        for spec in specs:
            imgs = np.concatenate([spec.images, spec.negatives])
            starts = offsets[imgs]
            counts = offsets[imgs + 1] - starts
            gathered.append((imgs, counts, _expand_ranges(starts, counts)))
        total = sum(len(g[2]) for g in gathered)
        full = None
        if num_det and total > 0.25 * (c1 - c0) * num_det:
            full = query_feats[c0:c1] @ feats_w.T  # (chunk, M): cheaper than gathering
        for qi, spec, (imgs, counts, idx) in zip(range(c0, c1), specs, gathered):
            q = query_feats[qi]
            if full is not None:
                sims = full[qi - c0][idx]
            else:
                # One product per distinct image, then copied to every entry of that image, so
                # a repeated entry gets bit-identical similarities (ties, as in the reference).
                uimgs, inverse = np.unique(imgs, return_inverse=True)
                ucounts = offsets[uimgs + 1] - offsets[uimgs]
                usims = feats_w[_expand_ranges(offsets[uimgs], ucounts)] @ q
                sims = usims[_expand_ranges((np.cumsum(ucounts) - ucounts)[inverse], counts)]
            sims = np.ascontiguousarray(sims, dtype=np.float32)
            entry_pos = np.cumsum(counts) - counts
            if cbgm is not None:
                saved = None if query_contexts is None else query_contexts[qi]
                if saved is not None:
                    context = np.asarray(saved, np.float32)[: cbgm.k2]
                else:
                    context = _query_context(kept, q, query_images[qi], query_boxes[qi], cbgm.k2)

                def rescore(img, context=context):
                    return match_context(context, feats_w[kept.image(img)])

                updates.append(cbgm_rescore(sims, imgs, entry_pos, counts, cbgm.k1, rescore))
            ap_q, hits_q, tp_q = score_query(
                sims, lambda s, e, idx=idx: kept.boxes[idx[s:e]], spec, entry_pos, counts, topk
            )
            count_gt[qi] = spec.count_gt
            count_tp[qi] = tp_q
            hits[qi] = hits_q
            if spec.count_gt > 0:
                ap[qi] = ap_q

    # sklearn's AP is called once per query; its argument validation costs more than the AP
    # itself on ~1000 detections, and the inputs here are known to be finite and well-formed.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for c0 in range(0, num_q, chunk_size):
            score_chunk(c0, min(num_q, c0 + chunk_size))
    result = SearchResult(ap, hits, count_gt, count_tp, topk, updates)
    if result.num_queries_without_match:
        logger.warning(
            "%d of %d queries have no gallery entry showing the query person (count_gt = 0); "
            "they are excluded from mAP and top-k.",
            result.num_queries_without_match,
            num_q,
        )
    return result


def _query_context(kept: PackedDetections, q, image_index, query_box, k2) -> np.ndarray:
    if image_index is None or image_index < 0:
        return np.asarray(q, np.float32).reshape(1, -1)
    sl = kept.image(int(image_index))
    return build_query_context(
        q, query_box, kept.boxes[sl], kept.scores[sl], kept.feats[sl], k2, nms_thresh=0.5
    )
