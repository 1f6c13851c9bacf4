"""Detections and the images/frames they were found in, as arrays (one batch of indexing work, or
a whole small index read back with :meth:`~personsearch.apps.search.index.SearchIndex.load`)."""

from dataclasses import dataclass, fields
from typing import Optional, Sequence, Tuple

import numpy as np

from .errors import SearchIndexError

__all__ = ["DET_FIELDS", "ITEM_FIELDS", "Entries"]

DET_FIELDS = ("feats", "boxes", "scores", "uncertainty", "det_item")
ITEM_FIELDS = (
    "item_source",
    "item_path",
    "item_sha1",
    "item_frame",
    "item_time",
    "item_hw",
    "item_camera",
)


@dataclass
class Entries:
    """N detections and M images/frames.

    ==================  ===========  ======================================================
    array               shape/dtype  meaning
    ==================  ===========  ======================================================
    ``feats``           (N, D) f16   L2-normalised embeddings
    ``boxes``           (N, 4) f32   XYXY boxes in original-image pixels
    ``scores``          (N,) f32     detection scores
    ``uncertainty``     (N,) f32     the model's per-detection uncertainty, NaN when it has none
    ``det_item``        (N,) i64     the image/frame of each detection (non-decreasing)
    ``item_source``     (M,) i32     source id (the index's ``sources`` table)
    ``item_path``       (M,) str     path relative to the source's root, or the video file name
    ``item_sha1``       (M,) str     SHA-1 of the image file / of the video file
    ``item_frame``      (M,) i64     video frame index, -1 for still images
    ``item_time``       (M,) f64     time in seconds (video: start + frame / fps), NaN if none
    ``item_hw``         (M, 2) i32   image/frame height and width
    ``item_camera``     (M,) str     camera name, ``""`` if none
    ==================  ===========  ======================================================
    """

    feats: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    uncertainty: np.ndarray
    det_item: np.ndarray
    item_source: np.ndarray
    item_path: np.ndarray
    item_sha1: np.ndarray
    item_frame: np.ndarray
    item_time: np.ndarray
    item_hw: np.ndarray
    item_camera: np.ndarray

    @property
    def num_dets(self) -> int:
        """N."""
        return int(len(self.scores))

    @property
    def num_items(self) -> int:
        """M."""
        return int(len(self.item_source))

    @property
    def dim(self) -> int:
        """D."""
        return int(self.feats.shape[1])

    @classmethod
    def empty(cls, dim: int) -> "Entries":
        """No detections, no items, embeddings of size ``dim``."""
        return cls.from_items(np.zeros((0, dim), np.float16), [], [], [], [], [])

    @classmethod
    def from_items(
        cls,
        feats: np.ndarray,
        per_item: Sequence[Tuple],
        sources: Sequence[int],
        paths: Sequence[str],
        sha1s: Sequence[str],
        frames: Sequence[Tuple[int, float, int, int]],
        cameras: Optional[Sequence[str]] = None,
    ) -> "Entries":
        """Build entries from per-item detections.

        Args:
            feats: (N, D) embeddings of all items' detections, item after item.
            per_item: per item ``(boxes (n_i, 4), scores (n_i,))`` or ``(boxes, scores,
                uncertainty (n_i,) or None)``; sum n_i = N.
            sources, paths, sha1s: per item its source id, path and content hash.
            frames: per item ``(frame, time_s, height, width)``.
            cameras: per item its camera name (``""`` = none); default none.
        """
        m = len(per_item)
        counts = np.array([len(p[1]) for p in per_item], dtype=np.int64)
        unc = [
            np.asarray(p[2], np.float32) if len(p) > 2 and p[2] is not None else np.full(c, np.nan)
            for p, c in zip(per_item, counts)
        ]
        return cls(
            feats=np.ascontiguousarray(feats, dtype=np.float16),
            boxes=np.concatenate([p[0] for p in per_item] + [np.zeros((0, 4))]).astype(np.float32),
            scores=np.concatenate([p[1] for p in per_item] + [np.zeros(0)]).astype(np.float32),
            uncertainty=np.concatenate(unc + [np.zeros(0)]).astype(np.float32),
            det_item=np.repeat(np.arange(m, dtype=np.int64), counts),
            item_source=np.asarray(sources, dtype=np.int32).reshape(m),
            item_path=np.asarray(paths, dtype=str).reshape(m),
            item_sha1=np.asarray(sha1s, dtype=str).reshape(m),
            item_frame=np.asarray([f[0] for f in frames], dtype=np.int64).reshape(m),
            item_time=np.asarray([f[1] for f in frames], dtype=np.float64).reshape(m),
            item_hw=np.asarray([f[2:] for f in frames], dtype=np.int32).reshape(m, 2),
            item_camera=np.asarray(cameras if cameras is not None else [""] * m, dtype=str).reshape(
                m
            ),
        )

    @classmethod
    def concat(cls, parts: Sequence["Entries"], dim: int) -> "Entries":
        """One :class:`Entries` of several (``det_item`` renumbered)."""
        if not parts:
            return cls.empty(dim)
        offsets = np.cumsum([0] + [p.num_items for p in parts[:-1]])
        values = {}
        for f in fields(cls):
            arrays = [getattr(p, f.name) for p in parts]
            if f.name == "det_item":
                arrays = [a + o for a, o in zip(arrays, offsets)]
            values[f.name] = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        return cls(**values)

    def item_ranges(self) -> np.ndarray:
        """(M + 1,) offsets: item m's detections are rows ``[r[m], r[m + 1])``."""
        return np.searchsorted(self.det_item, np.arange(self.num_items + 1), side="left")

    def validate(self, where: str, dim: Optional[int] = None) -> None:
        """Check shapes, dtypes and consistency; ``SearchIndexError`` naming ``where`` if not."""
        n, m = self.num_dets, self.num_items

        def fail(msg):
            raise SearchIndexError(f"{where}: {msg}")

        if self.feats.ndim != 2 or self.feats.dtype != np.float16:
            fail(f"'feats' must be (N, D) float16, got {self.feats.shape} {self.feats.dtype}")
        if dim is not None and self.feats.shape[1] != dim:
            fail(f"embeddings have size {self.feats.shape[1]}, the index's are {dim}")
        expected = {
            "feats": (n, self.feats.shape[1]),
            "boxes": (n, 4),
            "scores": (n,),
            "uncertainty": (n,),
            "det_item": (n,),
            "item_source": (m,),
            "item_path": (m,),
            "item_sha1": (m,),
            "item_frame": (m,),
            "item_time": (m,),
            "item_hw": (m, 2),
            "item_camera": (m,),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                fail(f"'{name}' has shape {getattr(self, name).shape}, expected {shape}")
        if n and (self.det_item.min() < 0 or self.det_item.max() >= m):
            fail("'det_item' refers to images/frames that are not in the batch")
        if n > 1 and np.any(np.diff(self.det_item) < 0):
            fail("'det_item' is not sorted")
        if not (np.isfinite(self.scores).all() and np.isfinite(self.boxes).all()):
            fail("boxes or scores are not finite")
        if not np.isfinite(self.feats).all():
            fail("embeddings are not finite")
