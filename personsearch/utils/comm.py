"""Tensor collectives for training-time state that must be identical on every rank."""

import torch
import torch.distributed as dist
from detectron2.utils import comm


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate along dim 0 the tensors of all ranks, in rank order (rows may differ per rank).

    Uses ``torch.distributed.all_gather`` on padded tensors (no pickling), so it works with gloo on
    CPU and NCCL on GPU. Without an initialised process group, or with one process, returns the
    input unchanged.

    Args:
        tensor: (N_r, ...) on this rank.

    Returns:
        (sum_r N_r, ...) with rank 0's rows first.
    """
    world = comm.get_world_size()
    if world == 1:
        return tensor
    n = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    padded = tensor.new_zeros((max(sizes),) + tuple(tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    out = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(out, padded.contiguous())
    return torch.cat([o[:s] for o, s in zip(out, sizes)], dim=0)


def all_reduce_max(value: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over ranks (identity without distributed training)."""
    if comm.get_world_size() == 1:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value
