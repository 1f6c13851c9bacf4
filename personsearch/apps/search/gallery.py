"""Every detection of an index, searchable: exact or approximate, filtered, CBGM re-ranked.

How a query is answered (:meth:`GallerySearch.search_rows`):

* **no filter, no approximate index** (or ``backend="exact"``): exact chunked search over the
  memory-mapped float16 embeddings (:class:`~personsearch.apps.search.exact.ExactSearcher`),
  dead rows excluded;
* **no filter, approximate index**: its ``rerank`` best candidates (``nprobe`` cells visited) are
  scored exactly with the stored embeddings (cosine x detection score with CWS) and sorted; rows
  committed after the approximate index was last updated are searched exactly and merged;
* **filter matching at most** ``exact_limit`` **rows** (estimated, see
  :class:`~personsearch.apps.search.filters.CompiledFilter`): every matching row is gathered and
  searched exactly (pre-filtering; exact results);
* **filter matching more rows, approximate index**: post-filtering with over-fetch. The index is
  asked for ``rerank / fraction`` candidates from ``nprobe / fraction`` cells (``fraction`` =
  estimated share of matching rows: as many matching rows are looked at as without a filter),
  the candidates that match are re-scored exactly; if fewer than needed match, the query is
  asked again with 4x the candidates and twice the cells, and as a last resort the matching rows
  are searched exactly. So a filtered query always returns the requested number of hits when
  that many rows match.
"""

import copy
import logging
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .ann import AnnIndex
from .errors import SearchIndexError
from .exact import ExactSearcher, merge_top_k
from .filters import CompiledFilter, SearchFilter
from .index import SearchIndex
from .report import Hit
from .rerank import cbgm_rerank

__all__ = ["BACKENDS", "EXACT_LIMIT", "GallerySearch"]

logger = logging.getLogger(__name__)

# "auto": the approximate index when the index has one, else exact; "exact": chunked products;
# "faiss": FAISS IndexFlatIP (exact, float32 copy); "ann": the approximate index (required)
BACKENDS = ("auto", "exact", "faiss", "ann")
# filtered queries whose matching rows are at most this many are answered exactly over them
EXACT_LIMIT = 100_000
# most candidates asked of the approximate index for one query before falling back to exact
MAX_CANDIDATES = 65_536


class GallerySearch:
    """Search the detections of an index.

    Args:
        index: an opened index.
        backend: one of :data:`BACKENDS`.
        cws: rank by cosine x detection score (the benchmark protocols' default) instead of cosine.
        progress: progress bars while reading.
        verify: check the CRC-32 of every commit first; default (None): when the search reads
            every row anyway (no approximate index used).
        nprobe, rerank: approximate search: cells visited and candidates re-scored (default: the
            approximate index's).
        exact_limit: filtered queries matching at most this many rows are searched exactly.

    Raises:
        SearchIndexError: the index holds no detection, is damaged, or ``backend="ann"`` without
        an approximate index.
    """

    def __init__(
        self,
        index: SearchIndex,
        backend: str = "auto",
        cws: bool = True,
        progress: bool = True,
        verify: Optional[bool] = None,
        nprobe: Optional[int] = None,
        rerank: Optional[int] = None,
        exact_limit: int = EXACT_LIMIT,
    ):
        if backend not in BACKENDS:
            raise ValueError(
                f"Unknown search backend {backend!r}; choose from {', '.join(BACKENDS)}"
            )
        self.index = index
        self.cws = cws
        self.columns = index.columns(progress=progress)
        if self.columns.num_live == 0:
            raise SearchIndexError(
                f"Search index {index.path!r} is empty: {index.num_items} images/frames and no "
                "detection (index some images first, or lower --score-thresh)"
            )
        self.feats = index.embeddings()
        self.weights = self.columns.score if cws else None
        self.ann: Optional[AnnIndex] = None
        if backend in ("auto", "ann"):
            if AnnIndex.exists(index):
                try:
                    self.ann = AnnIndex.load(index)
                except ImportError as e:
                    if backend == "ann":
                        raise
                    logger.warning(f"searching exactly: {e}")
            elif backend == "ann":
                raise SearchIndexError(
                    f"Search index {index.path!r} has no approximate index; build one with "
                    f"'python tools/search.py ann --index {index.path}' or search exactly"
                )
        self.backend = backend if backend != "auto" else ("ann" if self.ann else "exact")
        if verify if verify is not None else self.ann is None:
            index.verify(progress=progress)
        self.nprobe = int(nprobe or (self.ann.meta["nprobe"] if self.ann else 0))
        self.rerank = int(rerank or (self.ann.meta["rerank"] if self.ann else 0))
        if self.ann is not None and (self.nprobe < 1 or self.rerank < 1):
            raise ValueError(f"--nprobe and --rerank must be >= 1, got {nprobe}, {rerank}")
        self.exact_limit = int(exact_limit)
        self._full = None
        self.last_strategy = ""

    def with_backend(self, backend: str) -> "GallerySearch":
        """The same gallery (sharing the columns and memory maps) searched with another backend
        (``"exact"``, ``"faiss"``, or ``"ann"`` if it has an approximate index)."""
        if backend not in ("exact", "faiss", "ann"):
            raise ValueError(f"with_backend: expected exact, faiss or ann, got {backend!r}")
        if backend == "ann" and self.ann is None:
            raise SearchIndexError(f"Search index {self.index.path!r} has no approximate index")
        other = copy.copy(self)
        other.backend, other._full = backend, None
        return other

    # -- the searchers --------------------------------------------------------------------------
    def _full_searcher(self):
        if self._full is None:
            if self.backend == "faiss":
                from .faiss_backend import FaissSearcher

                live = np.flatnonzero(self.columns.live)
                w = None if self.weights is None else self.weights[live]
                self._full = (FaissSearcher(np.asarray(self.feats[live]), w), live)
            else:
                self._full = (
                    ExactSearcher(self.feats, self.weights, valid=self.columns.live),
                    None,
                )
        return self._full

    def _exact_all(self, q: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        searcher, rows = self._full_searcher()
        s, i = searcher.search(q, k)
        return s, (i if rows is None else rows[i])

    def exact_in(self, q: np.ndarray, rows: np.ndarray, k: int, chunk: int = 1 << 18):
        """Exact top-k of queries (Q, D) among ``rows`` (sorted), gathered from the memory map
        ``chunk`` rows at a time (at most ``chunk`` x D float16 in memory).

        Returns:
            ``(scores, rows)``, both (Q, min(k, len(rows))).
        """
        q = np.ascontiguousarray(q, dtype=np.float32).reshape(-1, self.index.dim)
        if not len(rows):
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores, found = [], []
        for s in range(0, len(rows), chunk):
            part = rows[s : s + chunk]
            w = None if self.weights is None else self.weights[part]
            sc, i = ExactSearcher(np.asarray(self.feats[part]), w).search(q, k)
            scores.append(sc)
            found.append(part[i])
        return merge_top_k(np.concatenate(scores, 1), np.concatenate(found, 1), k)

    def _score(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact scores of one query (D,) against ``rows``."""
        if not len(rows):
            return np.zeros(0, np.float32)
        order = np.argsort(rows, kind="stable")
        f = np.asarray(self.feats[rows[order]], dtype=np.float32)
        s = np.empty(len(rows), np.float32)
        s[order] = f @ q
        if self.weights is not None:
            s *= self.weights[rows]
        return s

    # -- search ---------------------------------------------------------------------------------
    def search_rows(
        self,
        queries: np.ndarray,
        k: int,
        filters: Optional[SearchFilter] = None,
        exclude: Optional[Sequence[np.ndarray]] = None,
    ) -> List[Tuple[np.ndarray, np.ndarray]]:
        """The ``k`` best rows of every query (the core of :meth:`search`).

        Args:
            queries: (Q, D) embeddings.
            k: hits per query.
            filters: conditions the hits must meet.
            exclude: per query, rows it must not return.

        Returns:
            Per query ``(scores (n,), rows (n,))``, n <= k, decreasing scores (ties: lower row).
        """
        q = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, self.index.dim))
        exclude = list(exclude) if exclude is not None else [np.zeros(0, np.int64)] * len(q)
        compiled = None
        if filters is not None and not filters.is_empty:
            compiled = CompiledFilter(filters, self.index, self.columns)
        extra = max((len(x) for x in exclude), default=0)
        use_ann = self.backend == "ann"
        if compiled is not None:
            estimate = compiled.estimate()
            if not use_ann or estimate <= self.exact_limit:
                self.last_strategy = "exact over the filtered rows"
                rows = compiled.rows()
                s, r = self.exact_in(q, rows, k + extra)
                return [self._finish(s[j], r[j], exclude[j], k) for j in range(len(q))]
            fraction = max(estimate / max(1, self.columns.num_live), 1e-6)
        else:
            fraction = 1.0
            if not use_ann:
                self.last_strategy = f"exact ({self.backend})"
                s, r = self._exact_all(q, k + extra)
                return [self._finish(s[j], r[j], exclude[j], k) for j in range(len(q))]
        self.last_strategy = "approximate" + (" + post-filter" if compiled is not None else "")
        return [self._ann_one(q[j], k, compiled, fraction, exclude[j]) for j in range(len(q))]

    @staticmethod
    def _finish(s, r, excluded, k):
        keep = np.isfinite(s) & ~np.isin(r, excluded)
        return s[keep][:k], r[keep][:k]

    def _ann_one(self, q, k, compiled, fraction, excluded):
        ann = self.ann
        covered = int(ann.meta["covered"])
        want = max(k, self.rerank)
        # a filter keeps about a fraction of the rows: ask for 1/fraction as many candidates from
        # 1/fraction as many cells, so that as many matching rows are looked at as without one
        n_cand = int(min(MAX_CANDIDATES, max(want, math.ceil(want / fraction))))
        nprobe = int(min(ann.meta["nlist"], math.ceil(self.nprobe / fraction)))
        # rows committed after the approximate index was last updated: exact
        tail = np.arange(covered, self.columns.num_rows)
        tail = tail[self.columns.live[tail]]
        if compiled is not None and len(tail):
            tail = tail[compiled.passes(tail)]
        while True:
            cand = ann.search(q[None], n_cand, nprobe)[0]
            cand = cand[cand >= 0]
            cand = cand[self.columns.live[cand]]  # removed since the last update
            if compiled is not None:
                cand = cand[compiled.passes(cand)]
            cand = cand[~np.isin(cand, excluded)][:want]
            enough = len(cand) + len(tail) >= k
            exhausted = n_cand >= MAX_CANDIDATES or n_cand >= ann.ntotal
            if enough:
                break
            if exhausted:
                if compiled is None:
                    if nprobe >= ann.meta["nlist"]:
                        break  # every cell visited: fewer than k live rows
                    nprobe = min(ann.meta["nlist"], nprobe * 2)
                    continue
                # a rare filter (even when every cell was visited: the candidates are capped at
                # MAX_CANDIDATES): search every matching row exactly
                self.last_strategy = "exact over the filtered rows (after over-fetch)"
                rows = compiled.rows()
                s, r = self.exact_in(q[None], rows, k + len(excluded))
                return self._finish(s[0], r[0], excluded, k)
            n_cand = int(min(MAX_CANDIDATES, n_cand * 4))
            nprobe = min(ann.meta["nlist"], nprobe * 2)
        rows = np.concatenate([cand, tail[~np.isin(tail, excluded)]])
        s = self._score(q, rows)
        s, r = merge_top_k(s[None], rows[None], k)
        return s[0], r[0]

    def rows_of_item(self, item: int) -> np.ndarray:
        """The rows of an image/frame id."""
        first, n = self.index.item_ranges([item]).get(int(item), (0, 0))
        return np.arange(first, first + n)

    def search(
        self,
        queries: Sequence[Dict],
        top_k: int,
        cbgm: bool = False,
        k1: int = 10,
        exclude_query_image: bool = False,
        filters: Optional[SearchFilter] = None,
    ) -> List[List[Hit]]:
        """Rank the gallery for every query.

        Args:
            queries: :func:`~personsearch.apps.search.searcher.embed_queries` results.
            top_k: hits per query.
            cbgm: re-rank with CBGM (the queries need a ``"context"``).
            k1: CBGM: hits whose images are re-scored.
            exclude_query_image: leave out the detections of the query image itself (matched by
                content hash), as the benchmark protocols do.
            filters: conditions every hit must meet.

        Returns:
            Per query its ranked hits.
        """
        if top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {top_k}")
        excluded = [
            self.index.rows_of_sha1(q["sha1"]) if exclude_query_image else np.zeros(0, np.int64)
            for q in queries
        ]
        want = max(top_k, k1 if cbgm else 0)
        feats = np.stack([q["feat"] for q in queries]).astype(np.float32)
        found = self.search_rows(feats, want, filters, excluded)
        compiled = None
        if cbgm and filters is not None and not filters.is_empty:
            compiled = CompiledFilter(filters, self.index, self.columns)
        results = []
        for q, (s, r) in zip(queries, found):
            rescored_rows = set()
            if cbgm:
                s, r, rescored = cbgm_rerank(
                    s, r, self.feats, self.columns.score, self.columns.item, self.rows_of_item,
                    q["context"], k1, len(s), self.cws,
                )  # fmt: skip
                if compiled is not None:  # a re-scored detection must meet the filter too
                    keep = compiled.passes(r)
                    s, r = s[keep], r[keep]
                rescored_rows = {row for row, _ in rescored.values() if row is not None}
            results.append(self._hits(q["feat"], s[:top_k], r[:top_k], rescored_rows))
        return results

    def _hits(self, feat, scores, rows, rescored_rows) -> List[Hit]:
        records = self.index.row_records(rows.tolist())
        cos = self._score_cosine(feat, rows)
        hits = []
        for rank, (score, row, c) in enumerate(zip(scores.tolist(), rows.tolist(), cos.tolist())):
            rec = records[row]
            src = rec["source"]
            file = src["path"] if src["kind"] == "video" else os.path.join(src["root"], rec["path"])
            hits.append(
                Hit(
                    rank=rank + 1,
                    score=float(score),
                    cosine=float(c),
                    det_score=rec["score"],
                    box=rec["box"],
                    source=rec["path"],
                    file=file,
                    frame=rec["frame"],
                    time=rec["time"],
                    row=int(row),
                    cbgm=row in rescored_rows,
                    sha1=rec["sha1"],
                    camera=rec["camera"],
                    uncertainty=rec["uncertainty"],
                )
            )
        return hits

    def _score_cosine(self, feat, rows) -> np.ndarray:
        if not len(rows):
            return np.zeros(0, np.float32)
        return np.asarray(self.feats[np.asarray(rows)], np.float32) @ np.asarray(feat, np.float32)

    def item_sha1(self, hit: Hit) -> str:
        """The content hash the hit's image/video had when it was indexed."""
        return hit.sha1
