"""Bilinear resizing of many small maps (NAE+'s RoI maps) with the fast kernels.

``F.interpolate(x, size, mode="bilinear", align_corners=False)`` on a CUDA tensor in NCHW order
runs a kernel with one thread per *output pixel* that loops over every map and channel
(``upsample_bilinear2d_out_frame``): for the 7x7 output of NAE+'s RoI maps (300 RoIs x 128
channels per image) that is 49 threads doing 38,400 iterations each, milliseconds for a few
megabytes of data, and the likely cause of NAE+ being 1.6x the plain detector on a GPU in
issue 22. The channels_last (NHWC) kernel spreads the same work over every output element, on the
GPU and on the CPU (where it is also ~8x faster than the NCHW one for these shapes, measured in
MODEL_ZOO.md). :func:`resize_bilinear` therefore resizes a channels_last view of its input; the
values are those of ``F.interpolate`` on the NCHW tensor (``tests/layers/test_resize.py``).
"""

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["resize_bilinear"]


def resize_bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` by the NHWC kernel.

    Args:
        x: (N, C, H, W) maps, any memory layout (an NCHW input is copied to NHWC first).
        size: (H', W').

    Returns:
        (N, C, H', W') in channels_last memory layout (an identical size returns ``x``).
    """
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    x = x.contiguous(memory_format=torch.channels_last)
    return F.interpolate(x, size, mode="bilinear", align_corners=False)
