"""Approximate nearest-neighbour index over a search index's rows (FAISS).

Kinds (``--ann``):

* ``ivf-pq`` (large galleries, chosen automatically from :data:`AUTO_MIN_DETS` live detections):
  an inverted file of ``nlist`` k-means cells, each embedding stored as ``m`` one-byte product
  quantisation codes (``m = D / 8``: 64 bytes for D = 512) plus its 8-byte row id. A query visits
  the ``nprobe`` nearest cells and returns its ``rerank`` best candidates by the PQ estimate; the
  searcher then scores those candidates exactly with the stored float16 embeddings (exact
  re-ranking), so the approximation can only miss hits, never mis-score them. From 4096 cells up
  the cells are found with an HNSW graph over the centroids (FAISS ``IVF{nlist}_HNSW32``), which
  makes assigning 10M embeddings affordable on a CPU.
* ``ivf-flat``: the same inverted file with the embeddings stored in float16 (FAISS ``SQfp16``):
  exact distances inside the visited cells, 2 x D bytes per detection in memory.

Both search L2 distances between unit vectors (the same ranking as the cosine). The k-means and
the PQ codebooks are trained on a uniform sample of the rows (:data:`TRAIN_PER_CELL` per cell).

On disk (``OUT/ann/``): ``ann.json`` (kind, parameters, how many rows it covers) names the FAISS
file ``index_<generation>.faiss``; a new generation is written next to the old one and ``ann.json``
is replaced atomically, then the old file is deleted, so an interrupted update leaves the previous
index usable. Rows committed after the index was built (past ``covered``) are searched exactly by
the searcher and added by the next update; rows removed from the index are removed from it at the
next update and filtered out until then.

Written by hand here: only the choice of parameters, the sampling, the storage and the update
rules; the index itself, its training and its search are FAISS's.
"""

import contextlib
import json
import logging
import math
import os
from typing import Any, Dict, Optional

import numpy as np

from personsearch.utils.file_io import atomic_path, atomic_write

from .errors import SearchIndexError
from .index import ANN_DIR, Columns, SearchIndex, now

__all__ = ["ANN_KINDS", "AUTO_MIN_DETS", "AnnIndex", "default_params", "update_ann"]

logger = logging.getLogger(__name__)

ANN_KINDS = ("ivf-pq", "ivf-flat")
# live detections from which ``--ann auto`` builds an ivf-pq index (exact search below); about
# where one exact query over D = 512 float16 embeddings takes 50 ms on 2 CPU cores
AUTO_MIN_DETS = 200_000
# training points per k-means cell (FAISS warns below 39; 32 keeps training affordable at 10M)
TRAIN_PER_CELL = 32
# a trained ivf index is retrained when the live rows grow beyond this factor of its training size
RETRAIN_GROWTH = 4.0
ANN_META = "ann.json"


def _pq_m(dim: int) -> int:
    """Sub-quantisers of the PQ: D / 8 (8 dimensions each), or the largest divisor of D not above
    it."""
    target = max(1, dim // 8)
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


def default_params(num: int, dim: int, kind: str) -> Dict[str, int]:
    """Parameters of an index over ``num`` rows.

    Returns:
        ``{"nlist", "m", "nprobe", "rerank"}``: ``nlist`` ~ sqrt(N) rounded to a power of two
        (64..16384, at most N / 39), ``m`` = PQ sub-quantisers, ``nprobe`` = nlist / 64 (at least
        8): the same share of the rows is scanned at every size (measured on 1M simulated
        detections, D = 512: 1/64 of the cells gave recall@10 0.996, 1/128 gave 0.978),
        ``rerank`` = candidates re-scored exactly (256).
    """
    nlist = 2 ** int(round(math.log2(max(1.0, math.sqrt(max(num, 1))))))
    nlist = int(min(16384, max(64, nlist), max(1, num // 39)))
    return {
        "nlist": max(1, nlist),
        "m": _pq_m(dim),
        "nprobe": int(min(nlist, max(8, nlist // 64))),
        "rerank": 256,
    }


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError(
            "The approximate index needs the faiss-cpu package: pip install faiss-cpu (or pip "
            "install -e '.[faiss]'); exact search (--ann none, --backend exact) needs nothing."
        ) from e
    return faiss


def _float32(block: np.ndarray) -> np.ndarray:
    """float16 rows as contiguous float32 (torch's vectorised cast)."""
    import torch

    out = np.empty(block.shape, np.float32)
    torch.from_numpy(out).copy_(torch.from_numpy(np.ascontiguousarray(block)))
    return out


class AnnIndex:
    """A FAISS inverted-file index whose ids are the search index's rows.

    Attributes:
        index: the FAISS index.
        meta: ``{"kind", "factory", "nlist", "m", "nprobe", "rerank", "dim", "trained_rows",
            "covered", "removed", "built", "updated", "file", "generation"}``.
    """

    def __init__(self, index, meta: Dict[str, Any]):
        self.index = index
        self.meta = meta

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        feats: np.ndarray,
        live_rows: np.ndarray,
        kind: str,
        params: Optional[Dict[str, int]] = None,
        seed: int = 0,
    ) -> "AnnIndex":
        """A trained, empty index.

        Args:
            feats: (R, D) float16 embeddings (a memory map).
            live_rows: the rows it may train on.
            kind: one of :data:`ANN_KINDS`.
            params: overrides of :func:`default_params`.
            seed: of the training sample.

        Raises:
            ValueError: unknown kind, or too few rows to train on.
        """
        faiss = _faiss()
        if kind not in ANN_KINDS:
            raise ValueError(f"Unknown approximate index kind {kind!r}; choose from {ANN_KINDS}")
        dim = feats.shape[1]
        p = default_params(len(live_rows), dim, kind)
        p.update({k: int(v) for k, v in (params or {}).items() if v})
        nlist, m = p["nlist"], p["m"]
        if dim % m:
            raise ValueError(f"--pq-m {m} must divide the embedding size {dim}")
        need = max(nlist, 256 if kind == "ivf-pq" else 1)
        if len(live_rows) < need:
            raise ValueError(
                f"an {kind} index with {nlist} cells needs at least {need} detections to train "
                f"on, the index has {len(live_rows)}; use exact search (--ann none) or fewer "
                "cells (--nlist)"
            )
        quantizer = "_HNSW32" if nlist >= 4096 else ""
        code = f"PQ{m}" if kind == "ivf-pq" else "SQfp16"
        factory = f"IVF{nlist}{quantizer},{code}"
        index = faiss.index_factory(dim, factory)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.cp.niter = 10
        if kind == "ivf-pq":
            ivf.pq.cp.max_points_per_centroid = 128
            ivf.pq.cp.niter = 15
            # polysemous codes (the factory's default) only serve Hamming pre-filtering, which is
            # not used; their training dominated (measured: 254 s -> 46 s for 65,536 x 512)
            ivf.do_polysemous_training = False
        rng = np.random.default_rng(seed)
        n_train = int(min(len(live_rows), max(TRAIN_PER_CELL * nlist, 65536)))
        sample = np.sort(rng.choice(live_rows, n_train, replace=False))
        logger.info(f"training {factory} on {n_train} of {len(live_rows)} embeddings")
        index.train(_float32(feats[sample]))
        meta = {
            "kind": kind,
            "factory": factory,
            "dim": dim,
            **p,
            "trained_rows": int(len(live_rows)),
            "covered": 0,
            "removed": 0,
            "built": now(),
            "updated": now(),
            "file": "",
            "generation": 0,
        }
        return cls(index, meta)

    def add(
        self, feats: np.ndarray, rows: np.ndarray, progress: bool = False, chunk: int = 131072
    ) -> None:
        """Add the given rows (ids = rows), chunk by chunk."""
        starts = range(0, len(rows), chunk)
        if progress and len(rows) > chunk:
            from tqdm import tqdm

            starts = tqdm(starts, desc="adding to the approximate index", unit="chunk")
        for s in starts:
            part = np.asarray(rows[s : s + chunk], dtype=np.int64)
            self.index.add_with_ids(_float32(feats[part]), part)

    def remove(self, rows: np.ndarray) -> int:
        """Remove rows (ids); returns how many were in it."""
        faiss = _faiss()
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if not len(rows):
            return 0
        return int(self.index.remove_ids(faiss.IDSelectorBatch(len(rows), faiss.swig_ptr(rows))))

    # -- searching ------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Rows in the index."""
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int, nprobe: Optional[int] = None) -> np.ndarray:
        """The ``k`` best candidate rows of every query by the index's estimate.

        Args:
            queries: (Q, D) float32, unit norm.
            nprobe: cells visited (default: the index's).

        Returns:
            (Q, k) int64 rows, -1 where a query has fewer candidates.
        """
        faiss = _faiss()
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.meta["dim"])
        nprobe = min(int(nprobe or self.meta["nprobe"]), self.meta["nlist"])
        if "HNSW" in self.meta["factory"]:
            # the HNSW search over the centroids must look wider than the cells it returns:
            # with FAISS's default (efSearch 16) recall@10 dropped from 0.855 to 0.796 at nprobe
            # 64 (300k simulated detections, IVF1024); 2 x nprobe matched the flat quantizer
            hnsw = faiss.SearchParametersHNSW(efSearch=max(64, 2 * nprobe))
            params = faiss.SearchParametersIVF(nprobe=nprobe, quantizer_params=hnsw)
        else:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
        _, ids = self.index.search(q, int(k), params=params)
        return ids.astype(np.int64)

    # -- storage --------------------------------------------------------------------------------
    @staticmethod
    def folder(index: SearchIndex) -> str:
        """``OUT/ann``."""
        return os.path.join(index.path, ANN_DIR)

    @classmethod
    def exists(cls, index: SearchIndex) -> bool:
        """Whether the index has an approximate index."""
        return os.path.isfile(os.path.join(cls.folder(index), ANN_META))

    @classmethod
    def load(cls, index: SearchIndex) -> "AnnIndex":
        """Read ``OUT/ann`` (the FAISS index is read into memory).

        Raises:
            SearchIndexError: damaged, or built for other embeddings; the message names the file.
        """
        faiss = _faiss()
        folder = cls.folder(index)
        meta_file = os.path.join(folder, ANN_META)
        try:
            with open(meta_file, "rb") as f:
                meta = json.loads(f.read().decode("utf-8"))
            file = os.path.join(folder, meta["file"])
            size = os.path.getsize(file)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SearchIndexError(
                f"Approximate index {meta_file!r} cannot be read ({type(e).__name__}: {e}); "
                "rebuild it with 'tools/search.py ann --index ... --rebuild' or search exactly "
                "(--backend exact)"
            ) from e
        if size != meta.get("bytes"):
            raise SearchIndexError(
                f"Approximate index file {file!r} has {size} bytes, {meta_file!r} says "
                f"{meta.get('bytes')}: truncated or changed; rebuild it with 'tools/search.py ann "
                "--index ... --rebuild' or search exactly (--backend exact)"
            )
        try:
            ann = faiss.read_index(file)
        except RuntimeError as e:
            raise SearchIndexError(
                f"Approximate index file {file!r} cannot be read ({e}); rebuild it with "
                "'tools/search.py ann --index ... --rebuild'"
            ) from e
        if meta.get("dim") != index.dim or ann.d != index.dim:
            raise SearchIndexError(
                f"Approximate index {file!r} holds embeddings of size {ann.d}, the search index's "
                f"are {index.dim}; rebuild it"
            )
        if meta.get("covered", 0) > index.num_rows:
            raise SearchIndexError(
                f"Approximate index {file!r} covers {meta['covered']} rows, the search index has "
                f"{index.num_rows}: it belongs to another index; rebuild it"
            )
        return cls(ann, meta)

    def save(self, index: SearchIndex) -> None:
        """Write a new generation and switch ``ann.json`` to it (the caller holds the lock)."""
        faiss = _faiss()
        folder = self.folder(index)
        os.makedirs(folder, exist_ok=True)
        old = self.meta.get("file")
        self.meta["generation"] = int(self.meta.get("generation", 0)) + 1
        name = f"index_{self.meta['generation']:06d}.faiss"
        file = os.path.join(folder, name)
        with atomic_path(file) as tmp:
            faiss.write_index(self.index, tmp)
        self.meta.update(file=name, bytes=os.path.getsize(file), updated=now())
        data = json.dumps(self.meta, indent=1).encode("utf-8")
        with atomic_write(os.path.join(folder, ANN_META), "wb") as f:
            f.write(data)
        for n in os.listdir(folder):
            if n not in (name, ANN_META) and (n.endswith(".faiss") or n.endswith(".tmp")):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, n))
        if old and old != name:
            logger.debug(f"replaced {old} by {name}")

    def describe(self) -> str:
        """One line for ``info`` and logs."""
        m = self.meta
        return (
            f"{m['kind']} ({m['factory']}, nprobe {m['nprobe']}, re-rank {m['rerank']}): "
            f"{self.ntotal} rows, covers rows < {m['covered']}, trained on {m['trained_rows']}"
        )


def update_ann(
    index: SearchIndex,
    kind: str = "auto",
    params: Optional[Dict[str, int]] = None,
    rebuild: bool = False,
    columns: Optional[Columns] = None,
    progress: bool = True,
) -> Optional[AnnIndex]:
    """Build or bring up to date the approximate index of ``index`` (opened for writing).

    Args:
        kind: ``"auto"`` (ivf-pq from :data:`AUTO_MIN_DETS` live detections; keeps the kind of an
            existing one), ``"none"`` (nothing is built or updated), or one of :data:`ANN_KINDS`.
        params: overrides of :func:`default_params` (``nlist``, ``m``, ``nprobe``, ``rerank``).
        rebuild: train a new one even if one exists.
        columns: the index's :meth:`~SearchIndex.columns` if already read.

    Returns:
        The approximate index, or None when there is none.
    """
    if kind == "none":
        return None
    if kind != "auto" and kind not in ANN_KINDS:
        raise ValueError(f"--ann must be auto, none or one of {ANN_KINDS}, got {kind!r}")
    if kind == "auto":
        try:
            _faiss()
        except ImportError as e:
            logger.warning(f"no approximate index: {e}")
            return None
    columns = columns or index.columns(progress=progress)
    live = np.flatnonzero(columns.live)
    feats = index.embeddings()
    ann = None
    if AnnIndex.exists(index) and not rebuild:
        try:
            ann = AnnIndex.load(index)
        except SearchIndexError as e:
            logger.warning(f"{e}; building a new one")
            ann = None
    if ann is not None:
        wrong_kind = kind != "auto" and ann.meta["kind"] != kind
        changed = any(params and params.get(k) and params[k] != ann.meta[k]
                      for k in ("nlist", "m"))  # fmt: skip
        grown = len(live) > RETRAIN_GROWTH * max(1, ann.meta["trained_rows"])
        if wrong_kind or changed or grown:
            why = (
                "another kind"
                if wrong_kind
                else (
                    "other parameters"
                    if changed
                    else (f"{len(live)} live rows, trained on {ann.meta['trained_rows']}")
                )
            )
            logger.info(f"training a new approximate index ({why})")
            ann = None
    if ann is None:
        if kind == "auto" and len(live) < AUTO_MIN_DETS:
            return None
        ann = AnnIndex.train(feats, live, "ivf-pq" if kind == "auto" else kind, params)
    elif params:
        for k in ("nprobe", "rerank"):
            if params.get(k):
                ann.meta[k] = int(params[k])
    covered = int(ann.meta["covered"])
    dead = np.flatnonzero(~columns.live[:covered])
    if len(dead) != ann.meta.get("removed", 0):
        ann.remove(dead)
        ann.meta["removed"] = int(len(dead))
    new = live[live >= covered]
    ann.add(feats, new, progress=progress)
    ann.meta["covered"] = int(columns.num_rows)
    ann.save(index)
    logger.info(f"approximate index: {ann.describe()}")
    return ann
