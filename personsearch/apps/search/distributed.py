"""The collectives of multi-process indexing (``tools/search.py index --num-gpus N``).

Processes are started by detectron2's ``launch`` as for training (gloo on CPU, NCCL on GPU; the
objects below go through detectron2's CPU gloo group either way). Rank 0 alone opens the index
for writing; every rank runs the model on its own part of the work, and at each step the ranks'
results are gathered to rank 0, which commits them as one batch. Without a process group every
function is the single-process identity.
"""

from typing import Any, List

from detectron2.utils import comm

from personsearch.utils import comm as collectives

__all__ = ["all_gather", "all_true", "broadcast", "gather_to_main", "is_main", "rank", "world_size"]


def world_size() -> int:
    """Processes taking part (1 without a process group)."""
    return comm.get_world_size()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return comm.get_rank()


def is_main() -> bool:
    """Whether this is rank 0 (the index writer)."""
    return rank() == 0


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (the other ranks' arguments are ignored)."""
    return collectives.broadcast_object(obj)


def gather_to_main(obj: Any) -> List[Any]:
    """Every rank's ``obj`` in rank order on rank 0, ``[]`` on the others."""
    return collectives.gather_to_main(obj)


def all_gather(obj: Any) -> List[Any]:
    """Every rank's ``obj`` in rank order, on every rank."""
    return collectives.all_gather_objects(obj)


def all_true(flag: bool) -> bool:
    """Whether ``flag`` is true on every rank."""
    return collectives.all_true(flag)
