"""Counting the model FLOPs of a call: the convolutions and matrix products it runs, as
``torch.utils.flop_counter.FlopCounterMode`` counts them (2 FLOPs per multiply-add; element-wise
work, RoIAlign and NMS are not counted, as in the usual definition of model FLOPs utilisation).

The counter takes a matrix product's FLOPs from the operands' shapes, so the sparse product of
personsearch's CPU RoIAlign (a (bins, pixels) matrix with 4 x samples non-zeros per row) would
count as a dense product of every bin with every pixel of every image; while counting, the model's
RoIAlign layers use torchvision's kernel instead (the same values up to rounding, not counted).

The counter intercepts the operators at the dispatcher, so it sees every convolution whatever the
module structure (detectron2's ``Conv2d``, the res5 heads, UGAS's SFM) and needs no tracing of the
model's Python control flow (proposals, NMS, per-image loops).
"""

import contextlib
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

__all__ = ["count_flops", "flops_per_item"]


@contextlib.contextmanager
def _dense_roi_align(model: Optional[nn.Module]):
    """personsearch's RoIAlign layers of ``model`` on torchvision's kernel inside the block."""
    from personsearch.layers import ROIAlign

    layers = [] if model is None else [m for m in model.modules() if isinstance(m, ROIAlign)]
    # SFM keeps its poolers in a plain list (parameter-free, outside the module tree)
    if model is not None:
        for m in model.modules():
            for pooler in getattr(m, "poolers", None) or []:
                layers += [
                    p for p in getattr(pooler, "level_poolers", []) if isinstance(p, ROIAlign)
                ]
    saved = [(m, m.cpu_impl) for m in layers]
    for m in layers:
        m.cpu_impl = "torchvision"
    try:
        yield
    finally:
        for m, impl in saved:
            m.cpu_impl = impl


def count_flops(
    fn: Callable[[], object], model: Optional[nn.Module] = None
) -> Tuple[object, Dict[str, float]]:
    """Run ``fn()`` once and count its FLOPs.

    Args:
        fn: a call of the model (its outputs are returned). It runs under ``torch.no_grad``
            (``inference_mode`` is switched off for the call: the counter sees nothing under it).
        model: the model ``fn`` runs: its RoIAlign layers use torchvision's kernel during the
            call (see the module docstring).

    Returns:
        ``(output, counts)`` with counts ``{"total": FLOPs, "by_op": {aten op name: FLOPs}}``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # the counter sees nothing under inference_mode (torch 2.3): count under no_grad instead
    with torch.inference_mode(False), torch.no_grad(), _dense_roi_align(model), counter:
        out = fn()
    by_op: Dict[str, float] = {}
    for module_counts in counter.get_flop_counts().values():
        for op, n in module_counts.items():
            name = str(getattr(op, "__name__", op))
            by_op[name] = max(by_op.get(name, 0.0), float(n))  # "Global" holds every op once
    return out, {"total": float(counter.get_total_flops()), "by_op": by_op}


def flops_per_item(counts: Dict[str, float], items: int) -> float:
    """FLOPs of one item (image, query) of a call that processed ``items`` of them."""
    return counts["total"] / max(1, int(items))
