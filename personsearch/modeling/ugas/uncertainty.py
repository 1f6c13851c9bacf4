"""UG: each embedding as a Gaussian; samples train the re-ID loss, the mean is used at test."""

import math

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from personsearch.layers import build_norm

from .registry import UG_REGISTRY


@UG_REGISTRY.register()
class GaussianEmbeddingUncertainty(nn.Module):
    """UGAS's uncertainty guidance, DUL-style on the unit embedding (reconstructed,
    docs/METHODS.md "UGAS").

    The embedding's unit direction mu is the mean; a variance head (``Linear + BN1d`` on the pooled
    features the embedding is computed from, then one scalar scale and shift initialised to
    ``INIT_SCALE`` and ``log(INIT_SIGMA^2)``, the PFE initialisation) predicts ``log sigma^2`` per
    dimension. In training the re-ID loss sees ``normalize(mu + sigma * eps)``, eps ~ N(0, I)
    (``NUM_SAMPLES`` draws, losses averaged), while the OIM memories are updated with mu, so they
    stay consistent with the test-time feature; ``loss_ug_kl`` = ``KL_WEIGHT`` x
    ``KL(N(mu, sigma^2) || N(0, I / D))`` per RoI, whose mu term is constant on the unit sphere:
    ``0.5 * sum_k (D sigma_k^2 - 1 - log(D sigma_k^2))``. Uncertain (coarse: small, occluded,
    badly boxed) RoIs thus contribute noisier, softer re-ID gradients. At inference the head is not
    run (no cost), unless ``OUTPUT_VARIANCE`` asks for the per-detection mean log-variance.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        embed_dim: int,
        kl_weight: float = 0.01,
        init_sigma: float = 0.01,
        init_scale: float = 1e-4,
        num_samples: int = 1,
        norm: str = "BN",
    ):
        """
        Args:
            in_channels: size of the concatenated pooled inputs of the variance head.
            embed_dim: D of the embedding it models.
            kl_weight: weight of the KL regulariser.
            init_sigma: initial sigma (per dimension).
            init_scale: initial scale of the variance head's output.
            num_samples: samples per RoI in training.
            norm: "BN" or "SyncBN".
        """
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"MODEL.UGAS.UG.NUM_SAMPLES must be >= 1, got {num_samples}")
        if init_sigma <= 0:
            raise ValueError(f"MODEL.UGAS.UG.INIT_SIGMA must be > 0, got {init_sigma}")
        self.embed_dim = embed_dim
        self.kl_weight = kl_weight
        self.num_samples = num_samples
        self.proj = nn.Linear(in_channels, embed_dim)
        nn.init.normal_(self.proj.weight, std=0.01)
        nn.init.constant_(self.proj.bias, 0.0)
        self.norm = build_norm(norm, embed_dim, 1, "MODEL.UGAS.UG.NORM")
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        self.shift = nn.Parameter(torch.tensor(2.0 * math.log(init_sigma)))

    @classmethod
    def from_config(cls, cfg, in_channels: int, embed_dim: int):
        c = cfg.MODEL.UGAS.UG
        return {
            "in_channels": in_channels,
            "embed_dim": embed_dim,
            "kl_weight": c.KL_WEIGHT,
            "init_sigma": c.INIT_SIGMA,
            "init_scale": c.INIT_SCALE,
            "num_samples": c.NUM_SAMPLES,
            "norm": c.NORM,
        }

    def log_variance(self, inputs: torch.Tensor) -> torch.Tensor:
        """(R, C) pooled inputs -> (R, D) log sigma^2."""
        return self.scale * self.norm(self.proj(inputs)) + self.shift

    def sample(self, mean_unit: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """(S, R, D) unit samples ``normalize(mu + sigma * eps)`` (reparameterised)."""
        eps = torch.randn(
            (self.num_samples,) + tuple(mean_unit.shape),
            device=mean_unit.device,
            dtype=mean_unit.dtype,
        )
        return F.normalize(mean_unit + torch.exp(0.5 * log_var) * eps, dim=-1)

    def kl(self, log_var: torch.Tensor) -> torch.Tensor:
        """Weighted KL to N(0, I / D), summed over dimensions, mean over RoIs (0 without RoIs)."""
        if log_var.numel() == 0:
            return log_var.sum() * 0.0
        d = float(self.embed_dim)
        scaled = log_var + math.log(d)  # log(D sigma^2)
        per_roi = 0.5 * (torch.exp(scaled) - 1.0 - scaled).sum(dim=1)
        return self.kl_weight * per_roi.mean()
