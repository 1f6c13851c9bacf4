"""The random gallery of ``tools/benchmark.py search-index``: the embeddings and scores of a search
index of N detections, to time top-k search without a model."""

import numpy as np


def random_search_gallery(num: int, dim: int, seed: int = 0, chunk: int = 65536):
    """A random index's arrays: (N, D) float16 L2-normalised embeddings and (N,) scores in
    [0.5, 1), generated chunk by chunk (no (N, D) float32 array)."""
    rng = np.random.default_rng(seed)
    feats = np.empty((num, dim), dtype=np.float16)
    for s in range(0, num, chunk):
        x = rng.standard_normal((min(chunk, num - s), dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        feats[s : s + len(x)] = x
    return feats, rng.uniform(0.5, 1.0, num).astype(np.float32)
