"""Choosing a search backend by name."""

from typing import Optional

import numpy as np

from .exact import ExactSearcher

__all__ = ["SEARCH_BACKENDS", "build_searcher"]

# what ``tools/search.py query --backend`` accepts (see personsearch.apps.search.gallery):
# "auto" (the approximate index if the index has one, else "exact"), "exact" (chunked matrix
# products, no extra package), "faiss" (FAISS IndexFlatIP, exact), "ann" (the approximate index)
SEARCH_BACKENDS = ("auto", "exact", "faiss", "ann")


def build_searcher(backend: str, gallery: np.ndarray, weights: Optional[np.ndarray] = None):
    """An exact searcher over ``gallery`` (N, D) with optional (N,) similarity ``weights``.

    Args:
        backend: ``"exact"`` or ``"faiss"``.

    Returns:
        An object with ``search(queries (Q, D), k) -> (scores (Q, k), indices (Q, k))``.
    """
    if backend == "exact":
        return ExactSearcher(gallery, weights)
    if backend == "faiss":
        from .faiss_backend import FaissSearcher

        return FaissSearcher(gallery, weights)
    raise ValueError(f"Unknown exact search backend {backend!r}; choose from exact, faiss")
