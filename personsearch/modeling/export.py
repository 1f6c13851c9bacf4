"""The weights a trained model needs at inference (training-only parts left out)."""

from typing import Dict, List

import torch
from torch import nn


def training_only_keys(model: nn.Module) -> List[str]:
    """State-dict keys that inference never reads: UGAS's variance head (unless it is asked to
    output the variance), its distillation projector and its per-branch OIM memories, and every
    OIM lookup table and queue.

    A module declares its training-only parts with ``training_only_prefixes()`` (relative keys);
    OIM losses are training-only as a whole.
    """
    from .losses.oim import OIMLoss

    state = model.state_dict()
    prefixes = []
    for name, module in model.named_modules():
        base = f"{name}." if name else ""
        if isinstance(module, OIMLoss):
            prefixes.append(base)
        declared = getattr(module, "training_only_prefixes", None)
        if callable(declared):
            prefixes += [base + p for p in declared()]
    return [k for k in state if any(k.startswith(p) for p in prefixes)]


def inference_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """``model.state_dict()`` without :func:`training_only_keys`: what an exported inference model
    holds. It loads into the same config (the training-only parts keep their initial values) and
    into the same config with ``MODEL.UGAS.UG.ENABLED False``, which builds no variance head.
    """
    drop = set(training_only_keys(model))
    return {k: v for k, v in model.state_dict().items() if k not in drop}
