"""Online Instance Matching (OIM) loss with its lookup table and circular queue."""

from typing import Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from personsearch.utils.amp import full_precision
from personsearch.utils.comm import all_gather_rows


class OIMLoss(nn.Module):
    """Softmax over cosine similarities to a labeled-identity memory and an unlabeled-person queue.

    For an L2-normalised RoI feature x of a labeled person with identity t, the logits are
    ``s * [LUT x ; CQ x]`` (s = 1/tau) and the loss is the cross-entropy with target t, averaged
    over the labeled RoIs. The memories receive no gradient; after the logits are computed they are
    updated without autograd:

    * labeled RoI (pid t >= 0): ``LUT[t] <- m * LUT[t] + (1 - m) * x``, then re-normalised. RoIs of
      the same identity in one batch are folded in one after another, in batch order;
    * unlabeled RoI (pid -1): x is written into the queue at its head, which then advances
      (oldest entry overwritten). Such RoIs contribute no loss term, only negatives for others;
    * background RoIs must not be passed in (the caller selects foreground RoIs).

    Both memories are buffers, so they are saved in checkpoints and restored on resume. Under
    distributed training the features and labels of all ranks are all-gathered (in rank order)
    before the update, so every rank holds identical memories. Empty memory slots are not masked:
    they give logit 0, as in the reference implementation.
    """

    @configurable
    def __init__(
        self,
        *,
        num_pids: int,
        queue_size: int,
        feat_dim: int,
        scalar: float = 30.0,
        momentum: float = 0.5,
        loss_weight: float = 1.0,
    ):
        """
        Args:
            num_pids: L, rows of the lookup table (labeled identities of the training set).
            queue_size: Q, entries of the circular queue of unlabeled features (may be 0).
            feat_dim: D, feature dimension.
            scalar: s = 1/tau multiplying the cosine logits.
            momentum: m of the lookup-table update.
            loss_weight: multiplies the returned loss.
        """
        super().__init__()
        if num_pids <= 0:
            raise ValueError(
                f"MODEL.OIM.NUM_PIDS must be >= 1 (OIM needs at least one identity), got {num_pids}"
            )
        if queue_size < 0:
            raise ValueError(f"MODEL.OIM.CQ_SIZE must be >= 0, got {queue_size}")
        self.num_pids = num_pids
        self.queue_size = queue_size
        self.scalar = scalar
        self.momentum = momentum
        self.loss_weight = loss_weight
        self.register_buffer("lut", torch.zeros(num_pids, feat_dim))
        self.register_buffer("queue", torch.zeros(queue_size, feat_dim))
        self.register_buffer("queue_head", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg, feat_dim: int, loss_weight: Optional[float] = None):
        return {
            "num_pids": cfg.MODEL.OIM.NUM_PIDS,
            "queue_size": cfg.MODEL.OIM.CQ_SIZE,
            "feat_dim": feat_dim,
            "scalar": cfg.MODEL.OIM.SCALAR,
            "momentum": cfg.MODEL.OIM.MOMENTUM,
            "loss_weight": cfg.MODEL.OIM.LOSS_WEIGHT if loss_weight is None else loss_weight,
        }

    def forward(
        self,
        feats: torch.Tensor,
        pids: torch.Tensor,
        memory_feats: Optional[torch.Tensor] = None,
        return_logits: bool = False,
        update_memory: bool = True,
    ):
        """Compute the loss and update the memories.

        Args:
            feats: (N, D) features of foreground RoIs (L2-normalised; NAE+ passes its attention-
                pooled embedding un-normalised, as the reference).
            pids: (N,) int64 identity of each RoI: 0..L-1 labeled, -1 unlabeled.
            memory_feats: (N, D) features written into the memories instead of ``feats``; None:
                ``feats``.
            return_logits: also return the (N, L + Q) logits (before the update).
            update_memory: update the memories (training only).

        Returns:
            Scalar loss (already multiplied by ``loss_weight``). It is an exact zero that keeps the
            graph when no RoI is labeled (plain cross-entropy would return NaN there). With
            ``return_logits``, ``(loss, logits)``.
        """
        logits = self.logits(feats, pids)
        with full_precision(feats.device.type):
            labeled = pids >= 0
            if labeled.any():
                loss = F.cross_entropy(logits[labeled], pids[labeled])
            else:
                loss = logits.sum() * 0.0
        if self.training and update_memory:
            self.update(feats if memory_feats is None else memory_feats, pids)
        loss = loss * self.loss_weight
        return (loss, logits) if return_logits else loss

    def logits(self, feats: torch.Tensor, pids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``scalar * [LUT; CQ] x`` of the current memories, float32 even under autocast; no update.

        Args:
            feats: (N, D) features.
            pids: (N,) identities, only checked against ``num_pids`` (None: not checked).

        Returns:
            (N, L + Q) float32 logits.
        """
        if pids is not None and pids.numel() and int(pids.max()) >= self.num_pids:
            raise ValueError(
                f"person_id {int(pids.max())} does not fit MODEL.OIM.NUM_PIDS={self.num_pids}; "
                "set NUM_PIDS to at least the number of training identities"
            )
        # Under mixed precision the memories, the logits and their update stay float32.
        with full_precision(feats.device.type):
            # torch.cat makes a new tensor, so an in-place memory update after this call cannot
            # invalidate what autograd saved for the backward pass.
            memory = torch.cat([self.lut, self.queue], dim=0)
            return self.scalar * feats.float().mm(memory.t())

    def per_roi_loss(self, logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """(N,) cross-entropy of each RoI's logits (0 for unlabeled RoIs, which have no target),
        not multiplied by ``loss_weight``."""
        with full_precision(logits.device.type):
            ce = F.cross_entropy(logits.float(), pids.clamp(min=0), reduction="none")
            return torch.where(pids >= 0, ce, torch.zeros_like(ce))

    def update(
        self, feats: torch.Tensor, pids: torch.Tensor, rates: Optional[torch.Tensor] = None
    ) -> None:
        """Update the memories with RoI features (training only; a no-op in eval mode).

        Args:
            feats: (N, D) features (detached here).
            pids: (N,) identities (-1: pushed into the queue).
            rates: optional (N,) weights in [0, 1] that scale each labeled RoI's share
                ``1 - m`` of the lookup-table update (``LUT[t] <- (1 - (1 - m) r) LUT[t] +
                (1 - m) r x``): a coarse RoI (r < 1) moves its identity's prototype less; r = 1
                (or None) is the plain update. Under several processes they are gathered too.
        """
        if not self.training:
            return
        with torch.no_grad(), full_precision(feats.device.type):
            feats = all_gather_rows(feats.detach().float())
            pids = all_gather_rows(pids)
            if rates is not None:
                rates = all_gather_rows(rates.detach().float())
            self._update(feats, pids, rates)

    @torch.no_grad()
    def _update(
        self, feats: torch.Tensor, pids: torch.Tensor, rates: Optional[torch.Tensor] = None
    ) -> None:
        labeled = pids >= 0
        self._update_lut(feats[labeled], pids[labeled], None if rates is None else rates[labeled])
        self._push_queue(feats[pids == -1])

    def _update_lut(
        self, feats: torch.Tensor, pids: torch.Tensor, rates: Optional[torch.Tensor] = None
    ) -> None:
        if pids.numel() == 0:
            return
        # The k-th occurrence of an identity in the batch is folded in at round k, which equals the
        # sequential per-RoI update but needs only as many rounds as the largest multiplicity.
        order = torch.sort(pids, stable=True).indices
        sorted_pids = pids[order]
        pos = torch.arange(len(pids), device=pids.device)
        starts = torch.ones_like(sorted_pids, dtype=torch.bool)
        starts[1:] = sorted_pids[1:] != sorted_pids[:-1]
        group_start = torch.cummax(torch.where(starts, pos, torch.zeros_like(pos)), dim=0).values
        rank = torch.empty_like(pos)
        rank[order] = pos - group_start
        for r in range(int(rank.max()) + 1):
            sel = rank == r
            ids = pids[sel]
            if rates is None:
                mixed = self.momentum * self.lut[ids] + (1.0 - self.momentum) * feats[sel]
            else:
                share = ((1.0 - self.momentum) * rates[sel]).unsqueeze(1)
                mixed = (1.0 - share) * self.lut[ids] + share * feats[sel]
            self.lut[ids] = F.normalize(mixed, dim=1)

    def _push_queue(self, feats: torch.Tensor) -> None:
        n = feats.shape[0]
        if n == 0 or self.queue_size == 0:
            return
        head = int(self.queue_head)
        if n > self.queue_size:  # only the newest Q survive a sequential write
            feats, head = feats[-self.queue_size :], (head + n - self.queue_size) % self.queue_size
        idx = (head + torch.arange(feats.shape[0], device=feats.device)) % self.queue_size
        self.queue[idx] = feats
        self.queue_head.fill_((int(self.queue_head) + n) % self.queue_size)

    def extra_repr(self) -> str:
        return (
            f"num_pids={self.num_pids}, queue_size={self.queue_size}, scalar={self.scalar}, "
            f"momentum={self.momentum}"
        )
