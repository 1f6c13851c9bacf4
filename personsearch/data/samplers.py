"""A training data stream that can be resumed at any iteration with exactly the same batches.

detectron2's training loader restarts its infinite index stream at the beginning when training is
resumed, draws augmentation randomness from per-worker RNGs that restart too, and (with aspect-ratio
grouping) loses the images waiting in the partly filled bucket. This module replaces it with a
stream whose batch ``k`` is a pure function of ``(seed, rank, world size, k)``:

* :class:`ResumableTrainingSampler`: detectron2's ``TrainingSampler`` (same seeding, shuffling and
  rank interleaving of the global index stream) that can start at any position of this rank's
  stream;
* :class:`ResumableBatchStream`: groups the indices into batches at the index level (so that
  aspect-ratio grouping can be replayed without reading images), maps each sample with its
  random number generators seeded from ``(seed, stream position)``, and shards whole batches over
  data-loader workers;
* :class:`ResumableTrainLoader`: the ``DataLoader`` over it, with :meth:`set_seed` and
  :meth:`set_start_iter` to call before its iterator is created.
"""

import contextlib
import itertools
import logging
import random
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.utils.data as torchdata
from detectron2.data.common import DatasetFromList
from detectron2.data.samplers import TrainingSampler
from detectron2.utils import comm

logger = logging.getLogger(__name__)

# Distinct streams derived from one run seed (see derive_seed).
SAMPLE_STREAM = 0
STEP_STREAM = 1
# How many replacement images are tried when the mapper drops a (corrupt) record.
MAX_REPLACEMENT_TRIES = 100


def derive_seed(seed: int, *keys: int) -> int:
    """A 64-bit seed that depends only on ``seed`` and ``keys`` (numpy ``SeedSequence`` mixing).

    Args:
        seed: the run seed (>= 0).
        keys: non-negative integers naming the stream and the position in it.

    Returns:
        An integer in ``[0, 2**64)``.
    """
    words = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(
        2, dtype=np.uint32
    )
    return (int(words[0]) << 32) | int(words[1])


def seed_all_rngs(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch's RNGs (all devices) from ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded_host_rngs(seed: int):
    """Run a block with python's, numpy's and torch's CPU RNGs seeded from ``seed``, then restore
    their previous states, so the block neither depends on nor changes the surrounding streams.
    CUDA generators are not touched."""
    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


class ResumableTrainingSampler(TrainingSampler):
    """detectron2's ``TrainingSampler`` that can begin anywhere in this rank's stream.

    The global stream is ``shuffle(range(size)) + shuffle(range(size)) + ...`` from a
    ``torch.Generator`` seeded with ``seed``; rank ``r`` of ``W`` takes its elements ``r, r + W,
    r + 2W, ...``, exactly as ``TrainingSampler`` does. ``start`` skips that many elements of this
    rank's share.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None, start: int = 0):
        """
        Args:
            size, shuffle, seed: see ``TrainingSampler`` (``seed`` None: a random seed shared by
                all ranks, which needs every rank to construct the sampler).
            start: number of this rank's indices to skip.
        """
        super().__init__(size, shuffle=shuffle, seed=seed)
        self.start = int(start)

    @property
    def seed(self) -> int:
        """The seed of the shuffle (the same on every rank)."""
        return self._seed

    def set_seed(self, seed: int) -> None:
        """Change the seed; affects iterators created afterwards."""
        self._seed = int(seed)

    def __iter__(self) -> Iterator[int]:
        for _, index in self.iter_with_positions():
            yield index

    def iter_with_positions(self, start: Optional[int] = None) -> Iterator[Tuple[int, int]]:
        """``(j, index)`` pairs of this rank's stream: ``index`` is its ``j``-th element.

        Args:
            start: first ``j`` (default: ``self.start``).
        """
        start = self.start if start is None else int(start)
        first = self._rank + start * self._world_size
        stream = itertools.islice(self._infinite_indices(), first, None, self._world_size)
        return zip(itertools.count(start), stream)


class ResumableBatchStream(torchdata.IterableDataset):
    """This rank's infinite stream of training batches (lists of mapped records).

    * Batching: batches of ``batch_size`` consecutive indices of the sampler; with
      ``aspect_ratio_grouping``, detectron2's two buckets (width > height, width <= height, from
      the records' ``width``/``height``) fill in stream order and a batch is emitted when one is
      full. Grouping happens on indices, before any image is read, so batch ``k`` can be found
      again by replaying the (cheap) index stream.
    * Mapping: the element at position ``j`` of this rank's stream is mapped with python's,
      numpy's and torch's CPU RNGs seeded from ``derive_seed(seed, SAMPLE_STREAM, rank, j)``,
      so augmentations (flips, random sizes) do not depend on worker processes or restarts. A
      record the mapper drops (it returns None, e.g. a skipped corrupt image) is replaced by a
      record drawn with an RNG seeded the same way (of the same orientation with grouping).
    * Workers: data-loader worker ``w`` of ``N`` maps the batches ``k`` with ``k % N == w``; the
      ``DataLoader`` takes one batch from each worker in turn, so batches arrive in order.
    """

    def __init__(
        self,
        dataset: Sequence[dict],
        mapper: Callable[[dict], Optional[dict]],
        sampler: ResumableTrainingSampler,
        batch_size: int,
        aspect_ratio_grouping: bool,
    ):
        """
        Args:
            dataset: the records (a list, or a ``DatasetFromList``).
            mapper: record -> model input, or None to drop the record.
            sampler: the index stream (its ``start`` is managed by this object).
            batch_size: images per batch on this rank.
            aspect_ratio_grouping: batch landscape and portrait images separately.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self._orientation = np.asarray(
            [0 if d["width"] > d["height"] else 1 for d in dataset], dtype=np.int8
        )
        self._by_orientation = [np.flatnonzero(self._orientation == o).tolist() for o in (0, 1)]
        if not isinstance(dataset, DatasetFromList):
            dataset = DatasetFromList(dataset, copy=False)
        self.dataset = dataset
        self.mapper = mapper
        self.sampler = sampler
        self.batch_size = batch_size
        self.aspect_ratio_grouping = aspect_ratio_grouping
        self.start_iter = 0
        self.rank = comm.get_rank()

    def set_start_iter(self, start_iter: int) -> None:
        """Make the stream begin with batch ``start_iter`` (takes effect for new iterators)."""
        if start_iter < 0:
            raise ValueError(f"start_iter must be >= 0, got {start_iter}")
        self.start_iter = int(start_iter)

    def index_batches(self) -> Iterator[List[Tuple[int, int]]]:
        """Batches of ``(j, index)`` pairs, from batch ``start_iter`` on (nothing is read)."""
        if self.aspect_ratio_grouping:
            # The bucket contents at batch start_iter depend on the whole history: replay it.
            batches = self._grouped(self.sampler.iter_with_positions(0))
            yield from itertools.islice(batches, self.start_iter, None)
        else:  # batch k is elements [k * batch_size, (k + 1) * batch_size) of the stream
            stream = self.sampler.iter_with_positions(self.start_iter * self.batch_size)
            while True:
                yield list(itertools.islice(stream, self.batch_size))

    def _grouped(self, stream: Iterator[Tuple[int, int]]) -> Iterator[List[Tuple[int, int]]]:
        buckets: List[List[Tuple[int, int]]] = [[], []]
        for item in stream:
            bucket = buckets[self._orientation[item[1]]]
            bucket.append(item)
            if len(bucket) == self.batch_size:
                batch = bucket[:]
                del bucket[:]
                yield batch

    def __iter__(self) -> Iterator[List[dict]]:
        info = torchdata.get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        batches = itertools.islice(self.index_batches(), worker, None, num_workers)
        for batch in batches:
            yield [self._map(j, index) for j, index in batch]

    def _map(self, position: int, index: int) -> dict:
        seed = derive_seed(self.sampler.seed, SAMPLE_STREAM, self.rank, position)
        with seeded_host_rngs(seed):
            out = self.mapper(self.dataset[index])
            if out is not None:
                return out
            pick = random.Random(seed)
            # with grouping, a replacement of the same orientation keeps the batch homogeneous
            candidates = (
                self._by_orientation[self._orientation[index]]
                if self.aspect_ratio_grouping
                else range(len(self.dataset))
            )
            for _ in range(MAX_REPLACEMENT_TRIES):
                replacement = candidates[pick.randrange(len(candidates))]
                out = self.mapper(self.dataset[replacement])
                if out is not None:
                    logger.warning(
                        f"Training record {index} was dropped by the mapper; "
                        f"using record {replacement} instead."
                    )
                    return out
        raise RuntimeError(
            f"The mapper dropped training record {index} and {MAX_REPLACEMENT_TRIES} randomly "
            "chosen replacements; check the training images."
        )


def _no_collate(batch):
    return batch


class ResumableTrainLoader(torchdata.DataLoader):
    """``DataLoader`` over a :class:`ResumableBatchStream`: iterating it yields lists of mapped
    records (this rank's batches). Call :meth:`set_seed` / :meth:`set_start_iter` before the
    iterator is created; an iterator created earlier keeps its position."""

    def __init__(self, stream: ResumableBatchStream, num_workers: int = 0):
        """
        Args:
            stream: the batches.
            num_workers: data-loading processes (0: load in this process).
        """
        # A private generator: creating an iterator draws its base seed from it instead of the
        # global torch RNG, which would shift the model's random stream.
        generator = torch.Generator()
        generator.manual_seed(0)
        super().__init__(
            stream,
            batch_size=None,
            num_workers=num_workers,
            collate_fn=_no_collate,
            generator=generator,
        )

    @property
    def stream(self) -> ResumableBatchStream:
        """The batch stream."""
        return self.dataset

    @property
    def seed(self) -> int:
        """The seed of the index shuffle and of the per-sample augmentation RNGs."""
        return self.dataset.sampler.seed

    @property
    def start_iter(self) -> int:
        """Index of the first batch new iterators yield."""
        return self.dataset.start_iter

    def set_seed(self, seed: int) -> None:
        """Set the seed (see :attr:`seed`)."""
        self.dataset.sampler.set_seed(seed)

    def set_start_iter(self, start_iter: int) -> None:
        """Start new iterators at batch ``start_iter`` (the iteration training resumes at)."""
        self.dataset.set_start_iter(start_iter)


def build_resumable_train_loader(
    dataset: List[dict],
    mapper: Callable[[dict], Optional[dict]],
    *,
    total_batch_size: int,
    aspect_ratio_grouping: bool,
    num_workers: int,
    seed: Optional[int] = None,
    shuffle: bool = True,
) -> ResumableTrainLoader:
    """The resumable replacement of ``build_detection_train_loader`` with a ``TrainingSampler``.

    Args:
        dataset: training records.
        mapper: record -> model input (or None to drop it).
        total_batch_size: ``SOLVER.IMS_PER_BATCH``, divided evenly over the ranks.
        aspect_ratio_grouping: ``DATALOADER.ASPECT_RATIO_GROUPING``.
        num_workers: ``DATALOADER.NUM_WORKERS``.
        seed: the run seed; None draws one shared by all ranks (every rank must call this then).
        shuffle: shuffle the index stream.

    Returns:
        The loader; iterating it gives this rank's batches from ``start_iter`` (0) on.
    """
    world_size = comm.get_world_size()
    if total_batch_size <= 0 or total_batch_size % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={total_batch_size} must be a positive multiple of the number "
            f"of processes ({world_size})"
        )
    sampler = ResumableTrainingSampler(len(dataset), shuffle=shuffle, seed=seed)
    stream = ResumableBatchStream(
        dataset, mapper, sampler, total_batch_size // world_size, aspect_ratio_grouping
    )
    logger.info(
        f"Resumable training loader: {total_batch_size // world_size} images per batch and rank, "
        f"aspect-ratio grouping {'on' if aspect_ratio_grouping else 'off'}, "
        f"{num_workers} workers"
    )
    return ResumableTrainLoader(stream, num_workers=num_workers)
