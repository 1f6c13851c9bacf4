"""Optional FAISS backend (``pip install faiss-cpu``, or ``pip install -e .[faiss]``).

``IndexFlatIP`` is exact inner-product search, so it returns the same top-k as
:class:`~personsearch.apps.search.exact.ExactSearcher` (up to the order of equal scores). It needs
the gallery as float32 (twice the float16 memory). CWS is applied by scaling the stored vectors by
the detection scores: ``<q, s * g> = s * <q, g>``.
"""

from typing import Optional, Tuple

import numpy as np
import torch

__all__ = ["FaissSearcher", "faiss_available"]


def faiss_available() -> bool:
    """Whether ``import faiss`` works."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _float32(gallery: np.ndarray, weights: Optional[np.ndarray], chunk: int = 65536) -> np.ndarray:
    """(N, D) float32 copy of ``gallery`` times ``weights`` (cast chunk by chunk with torch)."""
    out = np.empty(gallery.shape, dtype=np.float32)
    src, dst = torch.from_numpy(np.ascontiguousarray(gallery)), torch.from_numpy(out)
    for s in range(0, len(gallery), chunk):
        dst[s : s + chunk].copy_(src[s : s + chunk])
    if weights is not None:
        out *= np.asarray(weights, dtype=np.float32)[:, None]
    return out


class FaissSearcher:
    """FAISS ``IndexFlatIP`` over the (weighted) gallery; same interface as ``ExactSearcher``.

    Args:
        gallery: (N, D) float16/float32 embeddings.
        weights: optional (N,) factors (CWS: detection scores).

    Raises:
        ImportError: faiss is not installed (the message says how to install it).
    """

    name = "faiss"

    def __init__(self, gallery: np.ndarray, weights: Optional[np.ndarray] = None):
        try:
            import faiss
        except ImportError as e:
            raise ImportError(
                "The FAISS backend needs the faiss-cpu package: pip install faiss-cpu (or "
                "pip install -e '.[faiss]'); the default exact backend needs nothing."
            ) from e
        if gallery.ndim != 2:
            raise ValueError(f"gallery: expected (N, D) embeddings, got shape {gallery.shape}")
        self._n = len(gallery)
        self.index = faiss.IndexFlatIP(gallery.shape[1])
        if self._n:
            self.index.add(_float32(gallery, weights))

    def __len__(self) -> int:
        return self._n

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """See :meth:`ExactSearcher.search` (ties may come in another order)."""
        d = self.index.d
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float32).reshape(-1, d))
        k = min(int(k), self._n)
        if k < 1 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores, indices = self.index.search(queries, k)
        return scores.astype(np.float32), indices.astype(np.int64)
