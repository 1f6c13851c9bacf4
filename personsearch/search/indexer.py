"""Fill a :class:`~personsearch.search.index.SearchIndex` from image files or a video.

Incremental: files are identified by (source, relative path, SHA-1 of the bytes). A re-run
processes only new and changed files; entries of changed and removed files are dropped first. A
video is identified by its SHA-1; a re-run on the same video processes only the frames not indexed
yet, a changed video is indexed again. Work is committed shard by shard (``shard_size`` images or
frames), so an interrupted run keeps everything committed and the next run continues from there.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .index import Entries, SearchIndex
from .sources import VideoReader, file_sha1, read_image_file

__all__ = ["IndexStats", "Indexer"]

logger = logging.getLogger(__name__)


@dataclass
class IndexStats:
    """What one indexing run did (all counts are images or frames unless said otherwise)."""

    seen: int = 0  # images found / frames selected (every N-th) in the source
    unchanged: int = 0  # already in the index with the same content: not processed
    new: int = 0  # processed because not in the index
    changed: int = 0  # processed because their content changed (old entries dropped)
    removed: int = 0  # in the index but gone from the source: dropped
    dropped_detections: int = 0  # detections removed with changed/removed entries
    unreadable: int = 0  # files/frames that could not be read or decoded: skipped, logged
    skipped_files: int = 0  # files of other types in an image folder: skipped, logged
    detections: int = 0  # detections stored by this run (score >= threshold)
    unreadable_names: List[str] = field(default_factory=list)  # the first few, for messages

    def summary(self) -> str:
        """One line for logs and the command line."""
        return (
            f"{self.seen} seen: {self.new} new, {self.changed} changed, {self.unchanged} "
            f"unchanged; {self.removed} removed ({self.dropped_detections} detections dropped); "
            f"{self.unreadable} unreadable, {self.skipped_files} other files skipped; "
            f"{self.detections} detections stored"
        )


class Indexer:
    """Runs a predictor over images/frames and appends the results to an index.

    Args:
        index: an index opened with :meth:`SearchIndex.open_for_writing`.
        predictor: a :class:`~personsearch.engine.PersonSearchPredictor`.
        score_thresh: detections with a lower score are not stored.
        shard_size: images/frames per shard (committed together).
        progress: tqdm progress bars.
    """

    def __init__(
        self,
        index: SearchIndex,
        predictor,
        score_thresh: float,
        shard_size: int = 64,
        progress: bool = True,
    ):
        if shard_size < 1:
            raise ValueError(f"--shard-size must be >= 1, got {shard_size}")
        self.index = index
        self.predictor = predictor
        self.score_thresh = float(score_thresh)
        self.shard_size = shard_size
        self.progress = progress
        self._pending: List[Tuple[Any, ...]] = []

    # -- per item -------------------------------------------------------------------------------
    def _detect(self, image: np.ndarray):
        """Boxes (n, 4), scores (n,), embeddings (n, D) of the detections kept."""
        inst = self.predictor(image)["instances"]
        scores = inst.scores.numpy()
        keep = scores >= self.score_thresh
        return (
            inst.pred_boxes.tensor.numpy()[keep],
            scores[keep],
            inst.reid_feats.numpy()[keep],
        )

    def _add(self, source: int, path: str, sha1: str, frame: int, time: float, image) -> int:
        boxes, scores, feats = self._detect(image)
        h, w = image.shape[:2]
        self._pending.append((source, path, sha1, (frame, time, h, w), boxes, scores, feats))
        if len(self._pending) >= self.shard_size:
            self.flush()
        return len(scores)

    def flush(self) -> None:
        """Commit the pending images/frames as one shard."""
        if not self._pending:
            return
        p = self._pending
        feats = np.concatenate([x[6] for x in p] + [np.zeros((0, self.index.dim), np.float32)])
        entries = Entries.from_items(
            feats.astype(np.float16),
            [(x[4], x[5]) for x in p],
            [x[0] for x in p],
            [x[1] for x in p],
            [x[2] for x in p],
            [x[3] for x in p],
        )
        self.index.append(entries)
        self._pending = []

    def _bar(self, iterable, **kwargs):
        from tqdm import tqdm

        return tqdm(iterable, disable=not self.progress, **kwargs)

    def _existing(self, source: int) -> Tuple[Dict[str, str], Dict[str, List[int]]]:
        """Of the items of ``source``: path -> sha1, and path -> frame indices."""
        items = self.index.items()
        mine = np.flatnonzero(items.item_source == source)
        sha1_of, frames_of = {}, {}
        for path, sha1, frame in zip(
            items.item_path[mine].tolist(),
            items.item_sha1[mine].tolist(),
            items.item_frame[mine].tolist(),
        ):
            sha1_of[path] = sha1
            frames_of.setdefault(path, []).append(frame)
        return sha1_of, frames_of

    def _drop(self, source: int, paths) -> Tuple[int, int]:
        paths = np.asarray(sorted(paths), dtype=str)
        if not len(paths):
            return 0, 0
        return self.index.drop_items(
            lambda e: (e.item_source == source) & np.isin(e.item_path, paths)
        )

    # -- images ---------------------------------------------------------------------------------
    def index_images(
        self,
        root: str,
        paths: Sequence[str],
        source: Dict[str, Any],
        skipped_files: Sequence[str] = (),
    ) -> IndexStats:
        """Index image files.

        Args:
            root: the folder the paths are relative to.
            paths: ``/``-separated relative paths of the images (a folder scan, a dataset split).
            source: the source record (``{"kind": "images", "root": ..., ...}``).
            skipped_files: files of other types found next to them (counted and logged).

        Returns:
            :class:`IndexStats`.
        """
        stats = IndexStats(seen=len(paths), skipped_files=len(skipped_files))
        if skipped_files:
            shown = ", ".join(repr(s) for s in list(skipped_files)[:5])
            more = "" if len(skipped_files) <= 5 else f" and {len(skipped_files) - 5} more"
            types = sorted({os.path.splitext(s)[1] or "(none)" for s in skipped_files})
            logger.warning(
                f"{root}: skipped {len(skipped_files)} files that are not images "
                f"({', '.join(types)}): {shown}{more}"
            )
        sid = self.index.source_id(source)
        old_sha1, _ = self._existing(sid)
        current: Dict[str, Optional[str]] = {}
        for rel in self._bar(paths, desc="hashing", unit="file"):
            try:
                current[rel] = file_sha1(os.path.join(root, rel))
            except OSError as e:
                current[rel] = None
                self._unreadable(stats, rel, e)
        # a file unreadable now keeps its old entries; only files gone from the source are removed
        gone = [p for p in old_sha1 if p not in current]
        changed = [p for p, s in current.items() if s and p in old_sha1 and old_sha1[p] != s]
        stats.removed, stats.changed = len(gone), len(changed)
        stats.dropped_detections = self._drop(sid, gone + changed)[1]
        todo = [p for p in paths if current[p] and old_sha1.get(p) != current[p]]
        stats.unchanged = sum(1 for p in paths if current[p] and old_sha1.get(p) == current[p])
        changed_set = set(changed)
        self.index.commit()  # the source record, even when nothing is new
        try:
            for rel in self._bar(todo, desc="indexing images", unit="image"):
                try:
                    image, sha1 = read_image_file(os.path.join(root, rel))
                except (OSError, ValueError) as e:
                    self._unreadable(stats, rel, e)
                    continue
                stats.detections += self._add(sid, rel, sha1, -1, float("nan"), image)
                stats.new += rel not in changed_set
        finally:
            self.flush()  # what was processed before an error or Ctrl-C is kept
        return stats

    def _unreadable(self, stats: IndexStats, name: str, error: Exception) -> None:
        stats.unreadable += 1
        if len(stats.unreadable_names) < 20:
            stats.unreadable_names.append(name)
        logger.warning(f"Skipping unreadable {name!r} ({stats.unreadable} so far): {error}")

    # -- video ----------------------------------------------------------------------------------
    def index_video(self, path: str, every: int = 1) -> IndexStats:
        """Index every ``every``-th frame of a video file.

        Returns:
            :class:`IndexStats` (counts are frames; ``seen`` = frames selected).
        """
        reader = VideoReader(path)
        sha1 = file_sha1(path)
        name = os.path.basename(path)
        source = {
            "kind": "video",
            "path": os.path.abspath(path),
            "sha1": sha1,
            "fps": reader.fps,
            "frame_count": reader.frame_count,
            "every": every,
        }
        stats = IndexStats()
        sid = self.index.source_id(source)
        old_sha1, old_frames = self._existing(sid)
        video_changed = name in old_sha1 and old_sha1[name] != sha1
        if video_changed:  # indexed again from scratch
            stats.dropped_detections = self._drop(sid, [name])[1]
            old_frames = {}
        done = set(old_frames.get(name, []))
        self.index.commit()
        total = (reader.frame_count + every - 1) // every if reader.frame_count else None
        processed = 0
        try:
            frames = reader.frames(every, skip=done)
            for frame, t, image in self._bar(frames, total=total, desc="indexing frames"):
                if image is None:
                    stats.unreadable += 1
                    continue
                stats.detections += self._add(sid, name, sha1, frame, t, image)
                processed += 1
        finally:
            self.flush()
        if reader.frames_read == 0:
            raise ValueError(f"--video: no frame of {path!r} could be read")
        stats.seen = (reader.frames_read + every - 1) // every
        stats.unchanged = len(done)
        if video_changed:
            stats.changed = processed
        else:
            stats.new = processed
        return stats
