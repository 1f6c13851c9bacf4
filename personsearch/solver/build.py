"""Optimizer construction: detectron2's SGD recipe plus full-model gradient clipping."""

import itertools
from functools import lru_cache
from typing import Type

import torch
from detectron2.solver import build_optimizer as d2_build_optimizer


@lru_cache(maxsize=None)
def _with_full_model_clipping(base: Type[torch.optim.Optimizer], max_norm: float, norm_type: float):
    class FullModelGradientClipping(base):
        """Clips the total gradient norm of all parameters together before each step."""

        def step(self, closure=None):
            params = itertools.chain(*[g["params"] for g in self.param_groups])
            torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
            return super().step(closure=closure)

    FullModelGradientClipping.__name__ = base.__name__ + "WithFullModelGradientClipping"
    return FullModelGradientClipping


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """detectron2's optimizer (SGD with ``SOLVER.WEIGHT_DECAY``, ``WEIGHT_DECAY_NORM``,
    ``WEIGHT_DECAY_BIAS``, ``BIAS_LR_FACTOR``), with ``SOLVER.CLIP_GRADIENTS.CLIP_TYPE
    "full_model"`` clipping the norm of all gradients together at ``CLIP_VALUE`` (the official
    NAE/SeqNet recipe; detectron2's "norm" clips each parameter on its own).

    Frozen parameters (``requires_grad=False``) and buffers (e.g. OIM memories) get no updates.
    """
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not (clip.ENABLED and clip.CLIP_TYPE == "full_model"):
        return d2_build_optimizer(cfg, model)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = False
    optimizer = d2_build_optimizer(cfg, model)
    optimizer.__class__ = _with_full_model_clipping(
        type(optimizer), float(clip.CLIP_VALUE), float(clip.NORM_TYPE)
    )
    return optimizer
