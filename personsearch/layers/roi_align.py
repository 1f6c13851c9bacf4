"""RoIAlign as a sparse-matrix product: torchvision's values, a fast CPU backward.

torchvision's CPU RoIAlign backward is a serial loop; in a CPU training step of the synthetic
configs it took 15-40 % of the time, and at the reference size (five 900x1500 images, 640 RoIs of
14x14 with 2x2 samples on 1024 channels) 9 s per call on 2 cores. RoIAlign is linear in the
feature map, ``out = A @ F`` with F the (N*H*W, C) feature matrix and A sparse (each output bin
averages ``sampling_ratio^2`` bilinear samples of 4 pixels each), so forward and backward
(``A^T @ grad``) become multithreaded sparse-dense products (measured in
MODEL_ZOO.md, "Speed"). The sample positions and bilinear weights follow torchvision's kernel
operation by operation, so the results equal its outputs to float rounding (summation order).
"""

import warnings
from typing import Tuple, Union

import torch
from torch import nn
from torchvision.ops import roi_align as tv_roi_align

# implementations selectable for the CPU (a CUDA input always uses torchvision's kernel)
CPU_IMPLS = ("sparse", "torchvision")


def _axis_samples(v: torch.Tensor, size: int):
    """torchvision's bilinear rules along one axis: positions outside [-1, size] contribute 0,
    positions in [-1, 0] are clamped to 0, positions at or past ``size - 1`` use the last pixel.

    Returns:
        ``(lo, hi, w_lo, w_hi)`` pixel indices and weights (weights already zeroed outside).
    """
    valid = (v >= -1.0) & (v <= size)
    v = v.clamp(min=0.0)
    lo = v.floor().to(torch.int64)
    at_end = lo >= size - 1
    lo = torch.where(at_end, torch.full_like(lo, size - 1), lo)
    hi = torch.where(at_end, lo, lo + 1)
    v = torch.where(at_end, lo.to(v.dtype), v)
    w_hi = v - lo.to(v.dtype)
    w_lo = 1.0 - w_hi
    zero = torch.zeros_like(w_lo)
    return lo, hi, torch.where(valid, w_lo, zero), torch.where(valid, w_hi, zero)


def roi_align_matrix(
    rois: torch.Tensor,
    feature_shape: Tuple[int, int, int],
    output_size: Tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """The sparse (R * out_h * out_w, N * H * W) matrix of RoIAlign.

    Args:
        rois: (R, 5) ``[batch index, x1, y1, x2, y2]`` in input-image coordinates.
        feature_shape: (N, H, W) of the feature map.
        output_size: (out_h, out_w).
        spatial_scale: feature-map pixels per input pixel.
        sampling_ratio: samples per bin along each axis (> 0).
        aligned: half-pixel offset (detectron2's ROIAlignV2) instead of torchvision 0.4's
            behaviour (no offset, RoI sides at least 1 pixel).

    Returns:
        A sparse CSR matrix (rows: RoI-major, then bin row, then bin column).
    """
    n, h, w = feature_shape
    oh, ow = output_size
    sr = sampling_ratio
    r = rois.shape[0]
    dtype = rois.dtype
    offset = 0.5 if aligned else 0.0
    start_x = rois[:, 1] * spatial_scale - offset
    start_y = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - start_x
    roi_h = rois[:, 4] * spatial_scale - offset - start_y
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_w = roi_w / ow
    bin_h = roi_h / oh
    sub = torch.arange(sr, dtype=dtype, device=rois.device) + 0.5

    def positions(start, size, count):
        grid = torch.arange(count, dtype=dtype, device=rois.device)
        # start + p * bin + (i + .5) * bin / sr, in this order (torchvision's arithmetic)
        p = start[:, None, None] + grid[None, :, None] * size[:, None, None]
        return (p + sub[None, None, :] * size[:, None, None] / sr).reshape(r, count * sr)

    y_lo, y_hi, wy_lo, wy_hi = _axis_samples(positions(start_y, bin_h, oh), h)
    x_lo, x_hi, wx_lo, wx_hi = _axis_samples(positions(start_x, bin_w, ow), w)
    base = rois[:, 0].to(torch.int64)[:, None, None] * (h * w)

    def index(yy, xx):
        return base + yy[:, :, None] * w + xx[:, None, :]  # (R, oh*sr, ow*sr)

    cols = torch.stack(
        [index(y_lo, x_lo), index(y_lo, x_hi), index(y_hi, x_lo), index(y_hi, x_hi)], dim=-1
    )
    vals = torch.stack(
        [
            wy_lo[:, :, None] * wx_lo[:, None, :],
            wy_lo[:, :, None] * wx_hi[:, None, :],
            wy_hi[:, :, None] * wx_lo[:, None, :],
            wy_hi[:, :, None] * wx_hi[:, None, :],
        ],
        dim=-1,
    ) / float(sr * sr)

    def by_bin(t):  # (R, oh*sr, ow*sr, 4) -> (R*oh*ow, sr*sr*4), one row per output bin
        t = t.reshape(r, oh, sr, ow, sr, 4).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(r * oh * ow, sr * sr * 4)

    cols, vals = by_bin(cols), by_bin(vals)
    # column-sorted rows make the sparse products markedly faster (memory order)
    cols, order = cols.sort(dim=1)
    vals = vals.gather(1, order)
    per_row = cols.shape[1]
    crow = torch.arange(0, r * oh * ow + 1, device=rois.device, dtype=torch.int64) * per_row
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used is stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow, cols.reshape(-1), vals.reshape(-1), size=(r * oh * ow, n * h * w)
        )


def _window(a: torch.Tensor, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The product's operands restricted to the window of pixels the RoIs read (inference).

    ``features.permute(0, 2, 3, 1).reshape(-1, C)`` copies the whole map: at 900x1500 a res2 map
    (256 x 225 x 375) takes longer to copy than pooling a few boxes from it. Only the rectangle
    (over all images) that holds every sampled pixel is copied, and the matrix's columns are
    renumbered into it. The renumbering keeps the column order of every row, so the product sums
    the same terms in the same order: the result is bit-identical to the full product.

    Args:
        a: the sparse CSR RoIAlign matrix, (R * out_h * out_w, N * H * W).
        features: (N, C, H, W).

    Returns:
        ``(a', F')``: a' (R * out_h * out_w, N * h' * w') and F' (N * h' * w', C).
    """
    n, c, h, w = features.shape
    cols = a.col_indices()
    pix = cols % (h * w)
    ys, xs = pix // w, pix % w
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    x0, x1 = int(xs.min()), int(xs.max()) + 1
    hh, ww = y1 - y0, x1 - x0
    if hh * ww == h * w:  # the RoIs read the whole map: nothing to save
        return a, features.permute(0, 2, 3, 1).reshape(n * h * w, c)
    new_cols = (cols // (h * w)) * (hh * ww) + (ys - y0) * ww + (xs - x0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta" (see roi_align_matrix)
        warnings.simplefilter("ignore", UserWarning)
        a = torch.sparse_csr_tensor(
            a.crow_indices(), new_cols, a.values(), size=(a.shape[0], n * hh * ww)
        )
    flat = features[:, :, y0:y1, x0:x1].permute(0, 2, 3, 1).reshape(n * hh * ww, c)
    return a, flat


def roi_align_sparse(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: Union[int, Tuple[int, int]],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool = False,
) -> torch.Tensor:
    """RoIAlign of ``features`` (N, C, H, W) at ``rois`` (R, 5) -> (R, C, out_h, out_w), equal to
    ``torchvision.ops.roi_align`` (same arguments, ``sampling_ratio > 0``) to float rounding."""
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    n, c, h, w = features.shape
    r = rois.shape[0]
    oh, ow = output_size
    if r == 0:
        return features.new_zeros((0, c, oh, ow))
    compute = features if features.dtype in (torch.float32, torch.float64) else features.float()
    # in float32 even under autocast (no reduced-precision sparse product on the CPU); the
    # output returns in the input's dtype
    with torch.autocast(device_type=features.device.type, enabled=False):
        a = roi_align_matrix(
            rois.to(compute.dtype), (n, h, w), output_size, spatial_scale, sampling_ratio, aligned
        )
        if torch.is_grad_enabled() and compute.requires_grad:
            flat = compute.permute(0, 2, 3, 1).reshape(n * h * w, c)
        else:
            a, flat = _window(a, compute)
        out = (a @ flat).reshape(r, oh, ow, c).permute(0, 3, 1, 2)
    # the layout of the input: a channels_last map (TEST.OPTIMIZE.CHANNELS_LAST) gives
    # channels_last RoI maps without a transposing copy; values are the same either way
    return out.to(features.dtype).contiguous(memory_format=_memory_format(features))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """``channels_last`` for a (strictly) channels_last 4-D tensor, else ``contiguous_format``."""
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format


class ROIAlign(nn.Module):
    """Drop-in for detectron2's ``ROIAlign`` (same arguments and inputs) that uses
    :func:`roi_align_sparse` for CPU tensors with ``sampling_ratio > 0`` (``cpu_impl="sparse"``)
    and torchvision's kernel otherwise."""

    def __init__(
        self,
        output_size: Union[int, Tuple[int, int]],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = True,
        cpu_impl: str = "sparse",
    ):
        super().__init__()
        if cpu_impl not in CPU_IMPLS:
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.ROI_ALIGN_CPU must be one of {CPU_IMPLS}, got {cpu_impl!r}"
            )
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.cpu_impl = cpu_impl

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: (N, C, H, W) features.
            rois: (R, 5) ``[batch index, x1, y1, x2, y2]``.

        Returns:
            (R, C, out_h, out_w).
        """
        if input.device.type == "cpu" and self.cpu_impl == "sparse" and self.sampling_ratio > 0:
            return roi_align_sparse(
                input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
            )
        if input.dtype in (torch.float16, torch.bfloat16):
            # in float32, as torchvision's autocast wrapper of roi_align does, but with the boxes
            # never rounded to 16 bits (a 16-bit x of ~1000 px is off by up to 4 px)
            out = tv_roi_align(
                input.float(),
                rois.float(),
                self.output_size,
                self.spatial_scale,
                self.sampling_ratio,
                self.aligned,
            )
            return out.to(input.dtype)
        return tv_roi_align(
            input,
            rois.to(input.dtype),
            self.output_size,
            self.spatial_scale,
            self.sampling_ratio,
            self.aligned,
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, "
            f"cpu_impl={self.cpu_impl}"
        )
