"""NAE+'s soft pixel labels: how much of each RoI grid cell the matched person covers."""

import torch


def cell_coverage(rois: torch.Tensor, gt_boxes: torch.Tensor, size) -> torch.Tensor:
    """Fraction of every cell of an ``size[0] x size[1]`` grid laid over each RoI that lies inside
    the RoI's ground-truth box, computed exactly (no rasterisation, no loop over boxes).

    The grid cells of a RoI split it evenly, as RoIAlign's bins do. The coverage is separable:
    ``label[i, j] = overlap_y(i) * overlap_x(j) / (cell_h * cell_w)``.

    The reference rasterises the proposal ∩ GT rectangle into a proposal-sized binary mask (corners
    floored/ceiled, one extra row and column) and resizes it bilinearly to 7x7; these are the
    analytic values that procedure approximates (documented in docs/METHODS.md).

    Args:
        rois: (R, 4) XYXY RoIs.
        gt_boxes: (R, 4) XYXY box matched to each RoI.
        size: (H, W) of the grid.

    Returns:
        (R, 1, H, W) labels in [0, 1]; rows of degenerate RoIs (zero width or height) are 0.
    """
    h, w = int(size[0]), int(size[1])
    rois = rois.to(torch.float32)
    gt_boxes = gt_boxes.to(torch.float32)

    def axis_overlap(lo, hi, g_lo, g_hi, n):
        # (R, n): overlap length of each cell [lo + k s, lo + (k + 1) s] with [g_lo, g_hi], / s
        step = (hi - lo) / n
        k = torch.arange(n, device=rois.device, dtype=rois.dtype)
        c_lo = lo[:, None] + k[None] * step[:, None]
        c_hi = c_lo + step[:, None]
        inter = (torch.minimum(c_hi, g_hi[:, None]) - torch.maximum(c_lo, g_lo[:, None])).clamp(0)
        return torch.where(step[:, None] > 0, inter / step[:, None].clamp(min=1e-12), 0.0)

    oy = axis_overlap(rois[:, 1], rois[:, 3], gt_boxes[:, 1], gt_boxes[:, 3], h)
    ox = axis_overlap(rois[:, 0], rois[:, 2], gt_boxes[:, 0], gt_boxes[:, 2], w)
    return (oy[:, :, None] * ox[:, None, :]).clamp(0.0, 1.0).unsqueeze(1)
