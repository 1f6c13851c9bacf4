"""Choosing a search backend by name."""

from typing import Optional

import numpy as np

from .exact import ExactSearcher

__all__ = ["SEARCH_BACKENDS", "build_searcher"]

# "exact": chunked matrix products (default, no extra package); "faiss": FAISS IndexFlatIP.
SEARCH_BACKENDS = ("exact", "faiss")


def build_searcher(backend: str, gallery: np.ndarray, weights: Optional[np.ndarray] = None):
    """A searcher over ``gallery`` (N, D) with optional (N,) similarity ``weights``.

    Args:
        backend: one of :data:`SEARCH_BACKENDS`.

    Returns:
        An object with ``search(queries (Q, D), k) -> (scores (Q, k), indices (Q, k))``.
    """
    if backend == "exact":
        return ExactSearcher(gallery, weights)
    if backend == "faiss":
        from .faiss_backend import FaissSearcher

        return FaissSearcher(gallery, weights)
    raise ValueError(
        f"Unknown search backend {backend!r}; choose from {', '.join(SEARCH_BACKENDS)}"
    )
