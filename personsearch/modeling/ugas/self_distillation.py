"""SD: the deep and the shallow branch teach each other (logit distillation over the OIM
identities)."""

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .registry import SD_REGISTRY

GATES = ("none", "correct")


def distillation_kl(
    teacher: torch.Tensor, student: torch.Tensor, t: float, reduction: str = "batchmean"
) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``; the teacher is detached (it
    receives no gradient from this loss).

    Args:
        teacher, student: (N, K) logits.
        t: temperature T.
        reduction: "batchmean" (scalar, mean over rows) or "none" ((N,) per row).
    """
    target = F.softmax(teacher.detach().float() / t, dim=1)
    log_q = F.log_softmax(student.float() / t, dim=1)
    if reduction == "none":
        return F.kl_div(log_q, target, reduction="none").sum(dim=1) * t * t
    return F.kl_div(log_q, target, reduction=reduction) * t * t


@SD_REGISTRY.register()
class LogitDistillation(nn.Module):
    """UGAS's self-distillation between the deep and the shallow branch (docs/METHODS.md, "SD").

    For the foreground RoIs (labeled only with ``LABELED_ONLY``), the OIM logits of the deep
    branch z_d and of the shallow branch z_s, restricted to the lookup-table columns (the
    identities; the two queues hold different features), give

    ``loss_sd = ramp(it) * WEIGHT * [T^2 KL(p_d || p_s) + SYMMETRIC_WEIGHT * T^2 KL(p_s || p_d)]``

    with ``p = softmax(z / T)``, each teacher detached: deep -> shallow (BYOT) and, with
    ``SYMMETRIC_WEIGHT 1``, mutual learning in which each branch also learns from the other.
    ``ramp`` is 0 before ``START_ITER`` and rises linearly to 1 over ``RAMP_ITERS``.
    ``GATE correct`` distils a RoI in a direction only where that direction's teacher ranks the
    true identity first. The students' logits may be computed from inputs detached from the shared
    backbone (``STOP_BACKBONE_GRADIENT``, done by :class:`UGASEmbedding`), so that SD changes only
    each branch's own layers. Optional ``HINT_WEIGHT`` x ``1 - cos(P s, d.detach())`` with a
    training-only linear projector P.
    """

    @configurable
    def __init__(
        self,
        *,
        temperature: float = 2.0,
        weight: float = 0.125,
        start_iter: int = 0,
        ramp_iters: int = 0,
        symmetric_weight: float = 1.0,
        gate: str = "none",
        hint_weight: float = 0.0,
        labeled_only: bool = True,
        stop_backbone_gradient: bool = False,
        num_pids: int,
        deep_dim: int,
        shallow_dim: int,
    ):
        """
        Args:
            temperature: T.
            weight: weight of the deep -> shallow term.
            start_iter: first training iteration with the loss (earlier: exact zeros).
            ramp_iters: iterations over which the weight rises linearly from 0 (0: a step).
            symmetric_weight: weight of the shallow -> deep term, relative to ``weight``.
            gate: "none" or "correct" (distil only RoIs whose teacher is right).
            hint_weight: weight of the feature hint (0: no projector is built).
            labeled_only: distil on labeled RoIs only (else also on unlabeled foreground RoIs).
            stop_backbone_gradient: the students read detached inputs (see the class doc).
            num_pids: L, lookup-table columns of the logits.
            deep_dim, shallow_dim: embedding sizes (for the hint projector).
        """
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"MODEL.UGAS.SD.TEMPERATURE must be > 0, got {temperature}")
        if ramp_iters < 0:
            raise ValueError(f"MODEL.UGAS.SD.RAMP_ITERS must be >= 0, got {ramp_iters}")
        if gate not in GATES:
            raise ValueError(f"MODEL.UGAS.SD.GATE must be one of {GATES}, got {gate!r}")
        self.temperature = temperature
        self.weight = weight
        self.start_iter = start_iter
        self.ramp_iters = ramp_iters
        self.symmetric_weight = symmetric_weight
        self.gate = gate
        self.hint_weight = hint_weight
        self.labeled_only = labeled_only
        self.stop_backbone_gradient = stop_backbone_gradient
        self.num_pids = num_pids
        self.hint = nn.Linear(shallow_dim, deep_dim) if hint_weight > 0 else None

    @classmethod
    def from_config(cls, cfg, deep_dim: int, shallow_dim: int):
        c = cfg.MODEL.UGAS.SD
        start = c.START_ITER if c.START_ITER >= 0 else cfg.SOLVER.WARMUP_ITERS
        ramp = c.RAMP_ITERS if c.RAMP_ITERS >= 0 else cfg.SOLVER.WARMUP_ITERS
        return {
            "temperature": c.TEMPERATURE,
            "weight": c.WEIGHT,
            "start_iter": start,
            "ramp_iters": ramp,
            "symmetric_weight": c.SYMMETRIC_WEIGHT,
            "gate": c.GATE,
            "hint_weight": c.HINT_WEIGHT,
            "labeled_only": c.LABELED_ONLY,
            "stop_backbone_gradient": c.STOP_BACKBONE_GRADIENT,
            "num_pids": cfg.MODEL.OIM.NUM_PIDS,
            "deep_dim": deep_dim,
            "shallow_dim": shallow_dim,
        }

    def ramp(self, iteration: int) -> float:
        """The weight's factor at ``iteration``: 0 before the start, then linear up to 1."""
        if iteration < self.start_iter:
            return 0.0
        if self.ramp_iters == 0:
            return 1.0
        return min(1.0, (iteration - self.start_iter + 1) / self.ramp_iters)

    def _direction(self, teacher, student, pids) -> torch.Tensor:
        per_roi = distillation_kl(teacher, student, self.temperature, reduction="none")
        if self.gate == "correct":
            per_roi = per_roi * (teacher.argmax(dim=1) == pids).to(per_roi.dtype)
        return per_roi.mean()

    def forward(
        self,
        deep_logits: torch.Tensor,
        shallow_logits: torch.Tensor,
        deep_feats: torch.Tensor,
        shallow_feats: torch.Tensor,
        pids: torch.Tensor,
        iteration: int,
        deep_student: Optional[torch.Tensor] = None,
        shallow_student: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            deep_logits, shallow_logits: (N, L + Q) OIM logits of the foreground RoIs (the
                teachers; detached here).
            deep_feats, shallow_feats: (N, D_d), (N, D_s) unit embeddings of the same RoIs.
            pids: (N,) identities (-1 unlabeled).
            iteration: the training iteration.
            deep_student, shallow_student: the students' logits (default: the teachers' own,
                not detached).

        Returns:
            ``{"loss_sd": ...}`` (+ ``"loss_sd_hint"`` with a hint), exact zeros that keep the
            graph before ``start_iter`` or without RoIs.
        """
        deep_student = deep_logits if deep_student is None else deep_student
        shallow_student = shallow_logits if shallow_student is None else shallow_student
        sel = pids >= 0 if self.labeled_only else torch.ones_like(pids, dtype=torch.bool)
        zero = shallow_student.sum() * 0.0 + deep_student.sum() * 0.0
        factor = self.ramp(iteration)
        active = factor > 0 and bool(sel.any())
        out = {"loss_sd": zero}
        if active:
            n, p = self.num_pids, pids[sel]
            zd, zs = deep_logits[sel, :n], shallow_logits[sel, :n]
            loss = self._direction(zd, shallow_student[sel, :n], p)
            if self.symmetric_weight > 0:
                loss = loss + self.symmetric_weight * self._direction(zs, deep_student[sel, :n], p)
            out["loss_sd"] = factor * self.weight * loss
        if self.hint is not None:
            hint = zero + self.hint.weight.sum() * 0.0
            if active:
                proj = F.normalize(self.hint(shallow_feats[sel]), dim=1)
                cos = (proj * deep_feats[sel].detach()).sum(dim=1)
                hint = factor * self.hint_weight * (1.0 - cos).mean()
            out["loss_sd_hint"] = hint
        return out
