"""UG's guidance terms: how a per-RoI uncertainty steers the re-ID loss and the OIM memories.

Pure functions of tensors, shared by the UG variants (:mod:`.uncertainty`). Notation: for the
foreground RoIs of a batch, ``s`` (N,) is each RoI's relative log-uncertainty (the mean over
dimensions of its predicted log-variance, minus the prior's), ``ce`` (N,) its OIM cross-entropy,
``iou`` (N,) the IoU of the sampled box with its matched ground-truth box.
"""

from typing import Optional

import torch


def certainty_weights(s: torch.Tensor, power: float) -> torch.Tensor:
    """Per-RoI loss weights ``exp(-power * s)`` renormalised to mean 1 (detached).

    UAL ("Uncertainty-aware learning", ECCV 2022) weights each sample's loss by ``exp(-s)``. The
    renormalisation keeps OIM's loss scale (and so its balance with the detection losses and the
    learning rate) unchanged: only the *relative* weights of certain and uncertain RoIs change.

    Args:
        s: (N,) relative log-uncertainty.
        power: how strongly the uncertainty down-weights (0: uniform weights, 1: UAL's exp(-s)).

    Returns:
        (N,) positive weights with mean 1 (ones when N = 0 or power = 0).
    """
    w = torch.exp(-power * s.detach().float())
    return w / w.mean().clamp(min=1e-12) if w.numel() else w


def uncertainty_fit_loss(s: torch.Tensor, ce: torch.Tensor) -> torch.Tensor:
    """Trains ``s`` to predict each RoI's relative difficulty (UAL's data-uncertainty term).

    ``mean_i [r_i exp(-s_i) + s_i]`` with ``r_i = ce_i / mean(ce)`` (detached) has its minimum at
    ``s_i = log r_i``: the uncertainty of a RoI tracks how much harder than the batch's average it
    is to identify. Relative difficulty (not UAL's absolute ``ce / lambda``) keeps ``s`` centred at
    0, where the Gaussian's prior is, whatever the training stage's loss level.

    Args:
        s: (N,) relative log-uncertainty (with gradient).
        ce: (N,) cross-entropy of the same RoIs (detached here).

    Returns:
        Scalar loss (0 without RoIs, graph kept).
    """
    if s.numel() == 0:
        return s.sum() * 0.0
    ce = ce.detach().float()
    r = ce / ce.mean().clamp(min=1e-12)
    return (r * torch.exp(-s.float()) + s.float()).mean() - 1.0  # 0 for s = 0 and equal ce


def quality_correlation_loss(s: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """``1 - pearson(s, -log IoU)`` over the RoIs: higher uncertainty for worse boxes.

    Scale-free (only the ranking-like agreement is supervised, not the level of ``s``), in the
    spirit of KL-Loss (CVPR 2019), which ties a box's predicted variance to its localisation error.

    Args:
        s: (N,) relative log-uncertainty (with gradient).
        iou: (N,) IoU of each RoI with its ground truth (detached here).

    Returns:
        Scalar in [0, 2]; 0 (graph kept) with fewer than 2 RoIs or constant inputs.
    """
    target = -torch.log(iou.detach().float().clamp(min=1e-3))
    if s.numel() < 2 or float(target.std()) < 1e-6:
        return s.sum() * 0.0
    a = s.float() - s.float().mean()
    b = target - target.mean()
    corr = (a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-12)
    return 1.0 - corr


def memory_update_rates(
    mode: str, iou: Optional[torch.Tensor], weights: Optional[torch.Tensor]
) -> Optional[torch.Tensor]:
    """Per-RoI rates (in [0, 1]) of the OIM lookup-table update (:meth:`OIMLoss.update`).

    Args:
        mode: "none" (plain update), "iou" (rate = the box's IoU with its ground truth: a box that
            covers half of its person moves the identity's prototype half as far; OIMNet++'s
            quality-aware memory) or "certainty" (rate = certainty weight / its batch maximum).
        iou: (N,) IoU of the RoIs.
        weights: (N,) certainty weights (:func:`certainty_weights`).

    Returns:
        (N,) rates, or None for the plain update.
    """
    if mode == "none":
        return None
    if mode == "iou":
        return iou.detach().float().clamp(0.0, 1.0)
    if mode == "certainty":
        w = weights.detach().float()
        return w / w.max().clamp(min=1e-12) if w.numel() else w
    raise ValueError(
        f"MODEL.UGAS.UG.MEMORY_WEIGHT must be 'none', 'iou' or 'certainty'; got {mode}"
    )
