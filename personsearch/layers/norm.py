"""BatchNorm for the person-search heads, synchronised across processes when asked.

The heads' BatchNorm layers (NAE projectors, the norm rescaler, the box regressor's BN, UGAS
modules) act on RoI batches of shape (R, C) or (R, C, H, W). Under several processes the reference
NAE code converts them to SyncBN. ``torch.nn.SyncBatchNorm`` only runs on CUDA tensors, and
detectron2's ``NaiveSyncBatchNorm`` only on 4-D inputs, so :class:`SyncBatchNormND` adapts the
latter to any input rank: it works with gloo on the CPU and NCCL on the GPU, handles RoI counts that
differ between ranks (``stats_mode="N"``) and is an ordinary BatchNorm in one process or in eval
mode (same parameters and buffers, so checkpoints move freely between BN and SyncBN).
"""

import contextlib
from typing import Iterator

import torch
from detectron2.layers import NaiveSyncBatchNorm
from torch import nn

# names accepted by the heads' norm keys (MODEL.REID_HEAD.NORM, MODEL.UGAS.*.NORM)
NORMS = ("BN", "SyncBN")


class SyncBatchNormND(NaiveSyncBatchNorm):
    """Cross-process BatchNorm for (N, C), (N, C, L) or (N, C, H, W) inputs.

    Batch statistics are averaged over all ranks weighted by their sample counts; with one process
    or in eval mode it is exactly ``BatchNorm`` over the given input.
    """

    def __init__(self, num_features: int, **kwargs):
        kwargs.setdefault("stats_mode", "N")
        super().__init__(num_features, **kwargs)

    def _check_input_dim(self, input):
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected a 2D, 3D or 4D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: (N, C, *) with 0 to 2 trailing dimensions.

        Returns:
            Normalised tensor of the same shape.
        """
        if input.dim() == 4:
            return super().forward(input)
        shape = input.shape
        return super().forward(input.reshape(shape[0], shape[1], -1, 1)).reshape(shape)


def build_norm(norm: str, channels: int, dims: int, key: str = "norm") -> nn.Module:
    """A BatchNorm layer for ``dims``-D feature inputs (1: (N, C), 2: (N, C, H, W)).

    Args:
        norm: "BN" (``nn.BatchNorm1d``/``nn.BatchNorm2d``) or "SyncBN" (:class:`SyncBatchNormND`).
        channels: number of channels C.
        dims: 1 or 2.
        key: the config key the value came from, for the error message.
    """
    if norm not in NORMS:
        raise ValueError(f"{key} must be one of {NORMS}, got {norm!r}")
    if norm == "SyncBN":
        return SyncBatchNormND(channels)
    return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)


@contextlib.contextmanager
def frozen_running_stats(module: nn.Module) -> Iterator[None]:
    """Inside the block, BatchNorm layers of ``module`` normalise with batch statistics (in
    training) as usual but leave their running statistics unchanged (momentum 0): for a second
    forward pass over the same batch (UGAS's SD students) that must not count the batch twice."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
