"""Small indexes written through the index API (no model): random clustered embeddings with
cameras, times, paths, scores and uncertainties."""

import numpy as np

from personsearch.apps.search import Entries, SearchIndex

MODEL = {"fingerprint": "f" * 40, "weights": "/nowhere/model.pth", "weights_sha1": "a" * 40,
         "config_sha1": "c" * 40, "config": "MODEL: {}\n"}  # fmt: skip


def random_batch(rng, items, dim, source, start_frame=0, with_uncertainty=True, centres=None):
    """A batch of ``items`` images with 0..5 detections each; embeddings near ``centres`` (a few
    identities) so that approximate search has structure to find."""
    counts = rng.integers(0, 6, items)
    n = int(counts.sum())
    if centres is None:
        centres = rng.standard_normal((50, dim)).astype(np.float32)
    f = centres[rng.integers(0, len(centres), n)] + 0.3 * rng.standard_normal((n, dim))
    f = (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float16)
    cam = rng.integers(0, 4, items)
    frames = start_frame + np.arange(items)
    x1 = rng.uniform(0, 50, n)
    return Entries(
        feats=f,
        boxes=np.stack([x1, x1, x1 + 10, x1 + 20], 1).astype(np.float32),
        scores=rng.uniform(0.5, 1.0, n).astype(np.float32),
        uncertainty=(rng.normal(0, 1, n) if with_uncertainty else np.full(n, np.nan)).astype(
            np.float32
        ),
        det_item=np.repeat(np.arange(items), counts).astype(np.int64),
        item_source=np.full(items, source, np.int32),
        item_path=np.array([f"cam{c}/{f:05d}.jpg" for c, f in zip(cam, frames)]),
        item_sha1=np.array([f"{f:040x}" for f in frames]),
        item_frame=np.full(items, -1, np.int64),
        item_time=(frames * 10.0).astype(np.float64),
        item_hw=np.tile(np.array([[100, 200]], np.int32), (items, 1)),
        item_camera=np.array([f"cam{c}" for c in cam]),
    )


def make_index(path, batches=4, items=100, dim=16, seed=0, with_uncertainty=True):
    """An index of ``batches`` commits; returns the folder."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim)).astype(np.float32)
    with SearchIndex.open_for_writing(str(path), MODEL, {"score_thresh": 0.5, "dim": dim}) as idx:
        sid = idx.source_id({"kind": "images", "root": "/data/archive", "label": "archive"})
        for b in range(batches):
            idx.append(random_batch(rng, items, dim, sid, b * items, with_uncertainty, centres))
    return path
