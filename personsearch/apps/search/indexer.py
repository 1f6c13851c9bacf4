"""Fill a :class:`~personsearch.apps.search.index.SearchIndex` from image files or a video.

Incremental: files are identified by (source, relative path, SHA-1 of the bytes). A re-run
processes only new and changed files; entries of changed and removed files are dropped first. A
video is identified by its SHA-1; a re-run on the same video processes only the frames not indexed
yet, a changed video is indexed again.

Batched and parallel: images/frames are read and decoded in DataLoader worker processes
(:mod:`.loading`, ``num_workers``) and run through the model ``batch_size`` at a time
(:meth:`PersonSearchPredictor.batch`). Within a batch, images are grouped by size and each group
is one forward pass, so padding never changes an embedding: the index does not depend on the
batch size. An image or frame that cannot be read or decoded is skipped, counted and logged; the
rest of its batch goes on. If a forward pass over several images fails (e.g. out of memory), they
are run one by one; an image that fails alone stops the run (a model or device error, not bad
input) after committing what was done.

Resumable: work is committed every ``shard_size`` images/frames (rounded up to whole batches), so
an interrupted run keeps everything committed and the next run continues from there.

Multi-process (``tools/search.py index --num-gpus N [--num-machines M ...]``, see
:mod:`.distributed`): every rank hashes and processes a disjoint part of the files (a contiguous
block of a video's frames); rank 0 plans (from the index), drops, and commits each step's results
of all ranks as one batch. A killed run loses at most the uncommitted step; the next run (with any
number of processes) continues from the index.
"""

import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import distributed as dist
from .entries import Entries
from .index import SearchIndex
from .loading import ImageFiles, Loaded, VideoFrames, make_loader, split_blocks
from .sources import VideoReader, file_sha1

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

    @classmethod
    def total(cls, parts: Sequence["IndexStats"]) -> "IndexStats":
        """The sum of several ranks' stats."""
        out = cls()
        for f in fields(cls):
            if f.name == "unreadable_names":
                out.unreadable_names = [n for p in parts for n in p.unreadable_names][:20]
            else:
                setattr(out, f.name, sum(getattr(p, f.name) for p in parts))
        return out


# per processed image/frame: (key, sha1, frame, time, h, w, boxes, scores, uncertainty, feats)
Result = Tuple[str, str, int, float, int, int, np.ndarray, np.ndarray, Optional[np.ndarray],
               np.ndarray]  # fmt: skip


class Indexer:
    """Runs a predictor over images/frames and appends the results to an index.

    Args:
        index: an index opened with :meth:`SearchIndex.open_for_writing` on rank 0; None on the
            other ranks of a multi-process run.
        predictor: a :class:`~personsearch.engine.PersonSearchPredictor`.
        score_thresh: detections with a lower score are not stored.
        shard_size: images/frames per commit (rounded up to whole batches).
        batch_size: images/frames per forward pass (at most; see the module docstring).
        num_workers: DataLoader worker processes reading and decoding (0: this process).
        progress: tqdm progress bars (rank 0).
    """

    def __init__(
        self,
        index: Optional[SearchIndex],
        predictor,
        score_thresh: float,
        shard_size: int = 64,
        batch_size: int = 1,
        num_workers: int = 0,
        progress: bool = True,
    ):
        if shard_size < 1:
            raise ValueError(f"--shard-size must be >= 1, got {shard_size}")
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"--num-workers must be >= 0, got {num_workers}")
        if dist.is_main() and index is None:
            raise ValueError("rank 0 needs the index opened for writing")
        self.index = index
        self.predictor = predictor
        self.score_thresh = float(score_thresh)
        self.shard_size = shard_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.progress = progress and dist.is_main()

    # -- the model ------------------------------------------------------------------------------
    def _detect(self, images: List[np.ndarray]) -> List[Tuple]:
        """Per image: boxes (n, 4), scores (n,), uncertainty (n,) or None, embeddings (n, D) of
        the detections kept; one forward pass per image size."""
        out: List[Optional[Tuple]] = [None] * len(images)
        groups: Dict[Tuple[int, int], List[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape[:2], []).append(i)
        for members in groups.values():
            batch = [images[i] for i in members]
            try:
                results = self.predictor.batch(batch)
            except Exception as e:  # noqa: BLE001  (out of memory and the like: one by one)
                if len(batch) == 1:
                    raise
                logger.warning(
                    f"a forward pass over {len(batch)} images failed ({type(e).__name__}: {e}); "
                    "running them one by one"
                )
                results = [self.predictor.batch([image])[0] for image in batch]
            for i, res in zip(members, results):
                out[i] = self._kept(res["instances"])
        return out

    def _kept(self, inst) -> Tuple:
        scores = inst.scores.numpy()
        keep = scores >= self.score_thresh
        unc = inst.uncertainty.numpy()[keep] if inst.has("uncertainty") else None
        boxes, feats = inst.pred_boxes.tensor.numpy()[keep], inst.reid_feats.numpy()[keep]
        return boxes, scores[keep], unc, feats

    def _process(self, batch: List[Loaded], stats: IndexStats) -> List[Result]:
        good = []
        for x in batch:
            if x.image is None:
                self._unreadable(stats, x.name, x.error)
            else:
                good.append(x)
        dets = self._detect([x.image for x in good]) if good else []
        out = []
        for x, (boxes, scores, unc, feats) in zip(good, dets):
            h, w = x.image.shape[:2]
            out.append((x.key, x.sha1, x.frame, x.time, h, w, boxes, scores, unc, feats))
            stats.detections += len(scores)
        return out

    def _unreadable(self, stats: IndexStats, name: str, error: Any) -> None:
        stats.unreadable += 1
        if len(stats.unreadable_names) < 20:
            stats.unreadable_names.append(name)
        logger.warning(f"Skipping unreadable {name!r} ({stats.unreadable} so far): {error}")

    # -- committing -----------------------------------------------------------------------------
    def _entries(self, results: List[Result], source: int, camera_of: Callable) -> Entries:
        dim = self.index.dim
        feats = np.concatenate([r[9] for r in results] + [np.zeros((0, dim), np.float32)])
        return Entries.from_items(
            feats.astype(np.float16),
            [(r[6], r[7], r[8]) for r in results],
            [source] * len(results),
            [r[0] for r in results],
            [r[1] for r in results],
            [(r[2], r[3], r[4], r[5]) for r in results],
            [camera_of(r[0]) for r in results],
        )

    def _commit(self, pending: List[Result], source: int, camera_of: Callable) -> None:
        """One step: every rank's results to rank 0, committed there as one batch."""
        parts = dist.gather_to_main(pending)
        if dist.is_main():
            results = [r for part in parts for r in part]
            if results:
                self.index.append(self._entries(results, source, camera_of))

    def _run(self, dataset, source: int, camera_of: Callable, stats: IndexStats, total, desc):
        """Process a dataset: batches through the model, a commit every ``shard_size`` inputs.

        Returns:
            The keys of the images/frames processed by this rank.
        """
        from tqdm import tqdm

        loader = make_loader(dataset, self.batch_size, self.num_workers)
        it = iter(loader)
        bar = tqdm(total=total, desc=desc, unit="image", disable=not self.progress)
        processed: List[Tuple[str, int]] = []
        pending: List[Result] = []
        exhausted = False
        try:
            while True:
                consumed = 0
                while not exhausted and consumed < self.shard_size:
                    try:
                        batch = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    consumed += len(batch)
                    results = self._process(batch, stats)
                    pending.extend(results)
                    processed.extend((r[0], r[2]) for r in results)
                    bar.update(len(batch))
                self._commit(pending, source, camera_of)
                pending = []
                if dist.all_true(exhausted):
                    break
        finally:
            bar.close()
            if pending and dist.is_main():
                # an error or Ctrl-C: what rank 0 processed is kept (the other ranks' pending
                # work was never committed; the next run does it)
                self.index.append(self._entries(pending, source, camera_of))
            del it
        return processed

    # -- images ---------------------------------------------------------------------------------
    def index_images(
        self,
        root: str,
        paths: Sequence[str],
        source: Dict[str, Any],
        skipped_files: Sequence[str] = (),
        cameras: Optional[Dict[str, str]] = None,
    ) -> IndexStats:
        """Index image files (every rank calls it with the same arguments).

        Args:
            root: the folder the paths are relative to.
            paths: ``/``-separated relative paths of the images (a folder scan, a dataset split).
            source: the source record (``{"kind": "images", "root": ..., ...}``).
            skipped_files: files of other types found next to them (counted and logged).
            cameras: camera name per path (missing paths: ``source["camera"]`` or none).

        Returns:
            :class:`IndexStats` (the sum over the ranks, on every rank).
        """
        world, me = dist.world_size(), dist.rank()
        stats = IndexStats()
        plan = None
        if dist.is_main():
            stats.skipped_files = len(skipped_files)
            if skipped_files:
                shown = ", ".join(repr(s) for s in list(skipped_files)[:5])
                more = "" if len(skipped_files) <= 5 else f" and {len(skipped_files) - 5} more"
                types = sorted({os.path.splitext(s)[1] or "(none)" for s in skipped_files})
                logger.warning(
                    f"{root}: skipped {len(skipped_files)} files that are not images "
                    f"({', '.join(types)}): {shown}{more}"
                )
            sid = self.index.source_id(source)
            old_sha1 = self.index.existing(sid)[0]
        # every rank hashes its part of the files
        mine: Dict[str, Optional[str]] = {}
        for rel in self._bar(paths[me::world], desc="hashing", unit="file"):
            try:
                mine[rel] = file_sha1(os.path.join(root, rel))
            except OSError as e:
                mine[rel] = None
                self._unreadable(stats, rel, e)
        hashed = dist.gather_to_main(mine)
        if dist.is_main():
            current = {k: v for part in hashed for k, v in part.items()}
            # a file unreadable now keeps its old entries; only files gone are removed
            gone = [p for p in old_sha1 if p not in current]
            changed = [p for p, s in current.items() if s and p in old_sha1 and old_sha1[p] != s]
            stats.removed, stats.changed = len(gone), len(changed)
            stats.dropped_detections = self.index.drop_items(sid, gone + changed)[1]
            todo = [p for p in paths if current[p] and old_sha1.get(p) != current[p]]
            stats.unchanged = sum(1 for p in paths if current[p] and old_sha1.get(p) == current[p])
            plan = (sid, todo, changed)
        sid, todo, changed_list = dist.broadcast(plan)
        changed_set = set(changed_list)
        stats.seen = len(paths) if dist.is_main() else 0
        default_camera = source.get("camera") or ""
        cameras = cameras or {}

        def camera_of(rel: str) -> str:
            return cameras.get(rel, default_camera)

        part = todo[me::world]
        processed = self._run(
            ImageFiles(root, part), sid, camera_of, stats, len(part), "indexing images"
        )
        stats.new = sum(1 for key, _ in processed if key not in changed_set)
        return IndexStats.total(dist.all_gather(stats))

    def _bar(self, iterable, **kwargs):
        from tqdm import tqdm

        return tqdm(iterable, disable=not self.progress, **kwargs)

    # -- video ----------------------------------------------------------------------------------
    def index_video(
        self, path: str, every: int = 1, start_time: float = 0.0, camera: str = ""
    ) -> IndexStats:
        """Index every ``every``-th frame of a video file (every rank calls it).

        Args:
            start_time: wall-clock time of frame 0 in seconds (stored times are start_time +
                frame time).
            camera: camera name stored with every frame.

        Returns:
            :class:`IndexStats` (counts are frames; ``seen`` = frames selected).
        """
        if every < 1:
            raise ValueError(f"--every must be >= 1, got {every}")
        stats = IndexStats()
        plan = None
        if dist.is_main():
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
                "start_time": float(start_time),
            }
            if camera:
                source["label"] = camera
            sid = self.index.source_id(source)
            old_sha1, old_frames = self.index.existing(sid)
            video_changed = name in old_sha1 and old_sha1[name] != sha1
            if video_changed:  # indexed again from scratch
                stats.dropped_detections = self.index.drop_items(sid, [name])[1]
                old_frames = {}
            done = sorted(set(old_frames.get(name, [])))
            plan = (sid, sha1, done, reader.frame_count, video_changed)
        sid, sha1, done, frame_count, video_changed = dist.broadcast(plan)
        done_set = set(done)
        planned = [f for f in range(0, frame_count, every) if f not in done_set]
        world, me = dist.world_size(), dist.rank()
        part = split_blocks(planned, world)[me]
        tail = (frame_count if frame_count else 0) if me == world - 1 else None
        dataset = VideoFrames(path, sha1, every, part, tail, done_set, start_time)
        total = len(planned) if frame_count else None
        processed = self._run(
            dataset, sid, lambda _: camera, stats, total and len(part), "indexing frames"
        )
        mine = (len(processed), stats)
        parts = dist.all_gather(mine)
        n_processed = sum(p[0] for p in parts)
        out = IndexStats.total([p[1] for p in parts])
        if n_processed + out.unreadable == 0 and not done:
            raise ValueError(f"--video: no frame of {path!r} could be read")
        out.unchanged = len(done)
        out.seen = len(done) + n_processed + out.unreadable
        if video_changed:
            out.changed = n_processed
        else:
            out.new = n_processed
        return out
