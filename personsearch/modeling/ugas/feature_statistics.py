"""UG, parameter-free: uncertain feature statistics of the RoI maps (DSU, ICLR 2022)."""

from typing import Dict, Optional

import torch
from detectron2.config import configurable
from torch import nn

from ..losses.oim import OIMLoss
from .registry import UG_REGISTRY


@UG_REGISTRY.register()
class FeatureStatisticsUncertainty(nn.Module):
    """UG as DSU ("Uncertainty modeling for out-of-distribution generalization", Li et al., ICLR
    2022): in training, with probability ``DSU_PROBABILITY`` per batch, the pooled RoI maps that
    enter the embedding's feature head are re-styled with uncertain statistics. Per RoI and channel
    the mean m and standard deviation d over the map are replaced by ``m + e1 * Sm`` and ``d + e2 *
    Sd`` (e ~ N(0, 1)), where Sm and Sd are the standard deviations of m and d over the batch of
    RoIs: ``x' = (x - m) / d * (d + e2 Sd) + (m + e1 Sm)``. Coarse, atypical RoIs thus get
    perturbations along the directions the batch actually varies in. No parameters, nothing at
    inference, no variance output; the OIM loss is the plain one.
    """

    # no learned variance: nothing to export as a per-detection uncertainty
    has_variance = False

    @configurable
    def __init__(self, *, probability: float = 0.5, eps: float = 1e-6):
        """
        Args:
            probability: chance that a training batch is perturbed.
            eps: added to variances before square roots.
        """
        super().__init__()
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"MODEL.UGAS.UG.DSU_PROBABILITY must be in [0, 1], got {probability}")
        self.probability = probability
        self.eps = eps

    @classmethod
    def from_config(cls, cfg, map_channels, vector_channels: int, embed_dim: int):
        del map_channels, vector_channels, embed_dim  # parameter-free
        return {"probability": cfg.MODEL.UGAS.UG.DSU_PROBABILITY}

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        """(R, C, H, W) RoI maps -> the same shape, re-styled in training (see the class doc)."""
        if not self.training or x.shape[0] < 2 or float(torch.rand(())) >= self.probability:
            return x
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x.var(dim=(2, 3), keepdim=True) + self.eps).sqrt()
        std_of_mean = (mean.var(dim=0, keepdim=True) + self.eps).sqrt()
        std_of_std = (std.var(dim=0, keepdim=True) + self.eps).sqrt()
        new_mean = mean + torch.randn_like(mean) * std_of_mean
        new_std = std + torch.randn_like(std) * std_of_std
        return (x - mean) / std * new_std + new_mean

    def reid_loss(
        self,
        main_loss: OIMLoss,
        feats: torch.Tensor,
        pids: torch.Tensor,
        log_var: Optional[torch.Tensor] = None,
        iou: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """The plain OIM loss of the (perturbed) RoIs' features (see
        :meth:`GaussianEmbeddingUncertainty.reid_loss` for the arguments)."""
        del log_var, iou
        return {"loss_oim": main_loss(feats, pids)}
