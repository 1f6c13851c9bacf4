"""Reading and decoding gallery images and video frames in DataLoader workers.

``tools/search.py index --num-workers N`` decodes in N worker processes of a
:class:`torch.utils.data.DataLoader` while the model runs in the main process; batches of
``--batch-size`` :class:`Loaded` records come out. A file or frame that cannot be read or decoded
(missing, truncated, corrupt) is a record with ``image=None`` and the reason in ``error``: the
indexer counts, logs and skips it, and the rest of its batch goes on.

* :class:`ImageFiles`: a map-style dataset of image paths (reading, SHA-1 of the bytes, decoding).
* :class:`VideoFrames`: an iterable dataset over the frames of one video; each worker decodes a
  contiguous block of the planned frames (seeking to its start).
"""

import math
import os
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Set

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from .sources import VideoReader, read_image_file

__all__ = ["ImageFiles", "Loaded", "VideoFrames", "make_loader", "split_blocks"]


@dataclass
class Loaded:
    """One image or video frame, decoded (or not).

    Attributes:
        key: the image's path relative to its source root, or the video file name.
        frame: video frame index, -1 for a still image.
        time: video time in seconds (start time + frame time), NaN for a still image.
        sha1: SHA-1 of the image file / the video file ("" if the file could not be read).
        image: (H, W, 3) uint8 BGR, or None if it could not be read or decoded.
        error: why ``image`` is None.
    """

    key: str
    frame: int
    time: float
    sha1: str
    image: Optional[np.ndarray]
    error: str = ""

    @property
    def name(self) -> str:
        """For messages: the path, or ``video.mp4 frame 12``."""
        return self.key if self.frame < 0 else f"{self.key} frame {self.frame}"


class ImageFiles(Dataset):
    """Images ``root/path`` for each path.

    Args:
        root: the folder the paths are relative to.
        paths: ``/``-separated relative paths.
    """

    def __init__(self, root: str, paths: Sequence[str]):
        self.root = root
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Loaded:
        rel = self.paths[i]
        try:
            image, sha1 = read_image_file(os.path.join(self.root, rel))
        except (OSError, ValueError) as e:
            return Loaded(rel, -1, float("nan"), "", None, str(e))
        return Loaded(rel, -1, float("nan"), sha1, image)


def split_blocks(values: Sequence[int], parts: int) -> List[Sequence[int]]:
    """``values`` cut into ``parts`` contiguous blocks of near-equal size (some may be empty)."""
    n = len(values)
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [values[bounds[i] : bounds[i + 1]] for i in range(parts)]


class VideoFrames(IterableDataset):
    """Planned frames of one video.

    Args:
        path: the video file.
        sha1: its SHA-1 (stored with every frame).
        every: the frame selection (frames whose index is a multiple of ``every``).
        frames: the planned frames of this process (sorted; may be empty).
        tail_start: None, or also read every selected frame after the planned ones up to the end
            of the stream, from this frame on if no frame is planned (the container's frame count
            may be short or unknown; set for the last part of a video).
        done: frames already in the index (never decoded).
        start_time: added to every frame's time (wall-clock time of frame 0, or 0).
    """

    def __init__(
        self,
        path: str,
        sha1: str,
        every: int,
        frames: Sequence[int],
        tail_start: Optional[int],
        done: Set[int],
        start_time: float = 0.0,
    ):
        self.path = path
        self.sha1 = sha1
        self.every = every
        self.frames = list(frames)
        self.tail_start = tail_start
        self.done = set(done)
        self.start_time = float(start_time)

    def ranges(self, worker: int, workers: int) -> List[tuple]:
        """The (start, stop) frame ranges worker ``worker`` of ``workers`` reads (stop None: to
        the end); contiguous blocks of the planned frames, the last one open if ``tail_start``."""
        blocks = split_blocks(self.frames, workers)
        nonempty = [w for w, b in enumerate(blocks) if len(b)]
        if not nonempty:
            return [(self.tail_start, None)] if self.tail_start is not None and worker == 0 else []
        if worker not in nonempty:
            return []
        block, i = blocks[worker], nonempty.index(worker)
        if i + 1 < len(nonempty):
            stop = blocks[nonempty[i + 1]][0]
        else:
            stop = None if self.tail_start is not None else block[-1] + 1
        return [(block[0], stop)]

    def __iter__(self) -> Iterator[Loaded]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        name = os.path.basename(self.path)
        for start, stop in self.ranges(worker, workers):
            reader = VideoReader(self.path)
            for frame, t, image in reader.frames(self.every, self.done, start, stop):
                t = self.start_time + t if not math.isnan(t) else float("nan")
                if image is None:
                    yield Loaded(name, frame, t, self.sha1, None, "the frame cannot be decoded")
                else:
                    yield Loaded(name, frame, t, self.sha1, image)


def _worker_init(_):
    import cv2

    cv2.setNumThreads(1)  # workers decode in parallel; no thread pool per worker
    torch.set_num_threads(1)


def make_loader(dataset, batch_size: int, num_workers: int) -> DataLoader:
    """A DataLoader of lists of :class:`Loaded` (``batch_size`` each, the last may be shorter).

    Workers are started with ``spawn``, not forked: a process forked after OpenCV's thread pool
    has run (any ``cv2.resize`` in the parent) inherits the pool's locks and deadlocks in its
    first OpenCV call (seen: two workers blocked in ``pthread_cond_destroy`` inside cv2). A
    spawned worker imports torch and OpenCV afresh (a few seconds, once per run).

    Args:
        num_workers: decoding processes (0: decode in this process).
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=list,
        shuffle=False,
        worker_init_fn=_worker_init if num_workers else None,
        prefetch_factor=2 if num_workers else None,
        persistent_workers=False,
        multiprocessing_context="spawn" if num_workers else None,
    )
