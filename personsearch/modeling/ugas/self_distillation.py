"""SD: the deep branch teaches the shallow branch (logit distillation over the OIM identities)."""

from typing import Dict

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .registry import SD_REGISTRY


def distillation_kl(teacher: torch.Tensor, student: torch.Tensor, t: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, mean over rows; the teacher is
    detached (it receives no gradient from this loss)."""
    target = F.softmax(teacher.detach() / t, dim=1)
    return F.kl_div(F.log_softmax(student / t, dim=1), target, reduction="batchmean") * t * t


@SD_REGISTRY.register()
class LogitDistillation(nn.Module):
    """UGAS's self-distillation (reconstructed, docs/METHODS.md "UGAS").

    For the foreground RoIs (labeled only with ``LABELED_ONLY``), the OIM logits of the deep branch
    (teacher) and of the shallow branch (student), restricted to the lookup-table columns (the
    identities; the two queues hold different features), give
    ``loss_sd = WEIGHT * T^2 KL(softmax(z_d / T).detach() || softmax(z_s / T))``. Optional terms:
    ``SYMMETRIC_WEIGHT`` x the reverse distillation (shallow detached teaches deep) and
    ``HINT_WEIGHT`` x ``1 - cos(P s, d.detach())`` with a training-only linear projector P. Off
    until iteration ``START_ITER`` (the memories are empty at the start, so early teacher logits
    are noise).
    """

    @configurable
    def __init__(
        self,
        *,
        temperature: float = 3.0,
        weight: float = 0.5,
        start_iter: int = 0,
        symmetric_weight: float = 0.0,
        hint_weight: float = 0.0,
        labeled_only: bool = True,
        num_pids: int,
        deep_dim: int,
        shallow_dim: int,
    ):
        """
        Args:
            temperature: T.
            weight: weight of the deep -> shallow term.
            start_iter: first training iteration with the loss (earlier: exact zeros).
            symmetric_weight: weight of the shallow -> deep term, relative to ``weight``.
            hint_weight: weight of the feature hint (0: no projector is built).
            labeled_only: distil on labeled RoIs only (else also on unlabeled foreground RoIs).
            num_pids: L, lookup-table columns of the logits.
            deep_dim, shallow_dim: embedding sizes (for the hint projector).
        """
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"MODEL.UGAS.SD.TEMPERATURE must be > 0, got {temperature}")
        self.temperature = temperature
        self.weight = weight
        self.start_iter = start_iter
        self.symmetric_weight = symmetric_weight
        self.hint_weight = hint_weight
        self.labeled_only = labeled_only
        self.num_pids = num_pids
        self.hint = nn.Linear(shallow_dim, deep_dim) if hint_weight > 0 else None

    @classmethod
    def from_config(cls, cfg, deep_dim: int, shallow_dim: int):
        c = cfg.MODEL.UGAS.SD
        start = c.START_ITER if c.START_ITER >= 0 else cfg.SOLVER.WARMUP_ITERS
        return {
            "temperature": c.TEMPERATURE,
            "weight": c.WEIGHT,
            "start_iter": start,
            "symmetric_weight": c.SYMMETRIC_WEIGHT,
            "hint_weight": c.HINT_WEIGHT,
            "labeled_only": c.LABELED_ONLY,
            "num_pids": cfg.MODEL.OIM.NUM_PIDS,
            "deep_dim": deep_dim,
            "shallow_dim": shallow_dim,
        }

    def forward(
        self,
        deep_logits: torch.Tensor,
        shallow_logits: torch.Tensor,
        deep_feats: torch.Tensor,
        shallow_feats: torch.Tensor,
        pids: torch.Tensor,
        iteration: int,
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            deep_logits, shallow_logits: (N, L + Q) OIM logits of the foreground RoIs.
            deep_feats, shallow_feats: (N, D_d), (N, D_s) unit embeddings of the same RoIs.
            pids: (N,) identities (-1 unlabeled).
            iteration: the training iteration.

        Returns:
            ``{"loss_sd": ...}`` (+ ``"loss_sd_hint"`` with a hint), exact zeros that keep the
            graph before ``start_iter`` or without RoIs.
        """
        sel = pids >= 0 if self.labeled_only else torch.ones_like(pids, dtype=torch.bool)
        zero = shallow_logits.sum() * 0.0
        active = iteration >= self.start_iter and bool(sel.any())
        out = {"loss_sd": zero}
        if active:
            zd, zs = deep_logits[sel, : self.num_pids], shallow_logits[sel, : self.num_pids]
            t = self.temperature
            loss = distillation_kl(zd, zs, t)
            if self.symmetric_weight > 0:
                loss = loss + self.symmetric_weight * distillation_kl(zs, zd, t)
            out["loss_sd"] = self.weight * loss
        if self.hint is not None:
            hint = zero + self.hint.weight.sum() * 0.0
            if active:
                proj = F.normalize(self.hint(shallow_feats[sel]), dim=1)
                cos = (proj * deep_feats[sel].detach()).sum(dim=1)
                hint = self.hint_weight * (1.0 - cos).mean()
            out["loss_sd_hint"] = hint
        return out
