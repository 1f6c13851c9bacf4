"""UG: each embedding as a Gaussian whose variance is input-dependent and guides the re-ID loss."""

import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from personsearch.layers import build_norm
from personsearch.utils.amp import full_precision

from ..losses.oim import OIMLoss
from .guidance import (
    certainty_weights,
    memory_update_rates,
    quality_correlation_loss,
    uncertainty_fit_loss,
)
from .registry import UG_REGISTRY

KL_REDUCTIONS = ("mean", "sum")
MEMORY_WEIGHTS = ("none", "iou", "certainty")


def put_scalars(**values: float) -> None:
    """Log training statistics to detectron2's event storage, if one is active."""
    from detectron2.utils.events import get_event_storage

    try:
        storage = get_event_storage()
    except AssertionError:  # no storage outside a trainer (unit tests)
        return
    storage.put_scalars(**values)


@UG_REGISTRY.register()
class GaussianEmbeddingUncertainty(nn.Module):
    """UGAS's uncertainty guidance: a Gaussian embedding N(mu, diag sigma^2) whose variance tracks
    how coarse a RoI is, and which down-weights coarse RoIs in training (docs/METHODS.md, "UG").

    **Variance head** (float32 even under autocast): each RoI map it reads (``UG.IN_FEATURES``,
    default the RoIAlign map of the RoI feature head, e.g. ``res4_map``) goes through ``Conv1x1 +
    BN + ReLU`` to ``MAP_DIM`` channels and an adaptive average pool to a ``MAP_GRID`` x
    ``MAP_GRID`` grid, flattened, so the head sees *where* in the box the person is (a max-pooled
    vector barely changes when a box is shifted off its person); with SFM, its level vectors are
    appended; then ``Linear + BN + ReLU + Linear`` gives u, soft-clamped to (-CLAMP, CLAMP), and
    ``log sigma^2 = log(PRIOR_SCALE / D) + u``: one u per RoI (an isotropic Gaussian, the default)
    or one per dimension (``PER_DIMENSION``, DUL's diagonal). ``s = mean_d u`` is the RoI's
    relative log-uncertainty (0: the prior's; the last layer starts at zero, so every RoI starts
    there). It costs nothing at inference: it is not run unless ``OUTPUT_VARIANCE`` asks for
    ``uncertainty`` = mean log sigma^2 per detection (larger = coarser).

    **Training** (foreground RoIs):

    * sampling (``SAMPLE``): OIM's logits are computed for ``NUM_SAMPLES`` reparameterised samples
      ``normalize(mu + sigma * eps)`` (DUL), all against the memories as they were before this
      batch, which are then updated once with mu;
    * a narrow prior N(0, ``PRIOR_SCALE`` I / D) with the KL **averaged** over dimensions
      (``KL_REDUCTION mean``): the noise stays a fraction sqrt(PRIOR_SCALE) of the unit signal and
      the KL cannot overpower OIM's per-dimension push (with a summed KL to N(0, I/D) the variance
      collapses to that constant for every RoI; ``KL_REDUCTION sum`` + ``PRIOR_SCALE 1``
      reproduces that);
    * guidance by loss weighting (``LOSS_WEIGHTING``): each labeled RoI's OIM cross-entropy is
      weighted by ``exp(-WEIGHT_POWER * s)`` renormalised to mean 1 (UAL), and ``loss_ug_fit``
      (``FIT_WEIGHT``) trains s to predict the RoI's relative difficulty, so uncertain (coarse) RoIs
      pull the embedding less;
    * optional box-quality supervision ``loss_ug_quality`` (``QUALITY_WEIGHT``): 1 - Pearson
      correlation of s with -log IoU of the sampled box with its ground truth;
    * optional quality-aware memory update (``MEMORY_WEIGHT``): the lookup-table update of a RoI
      scaled by its IoU or its certainty;
    * optional entropy floor ``loss_ug_entropy`` (``ENTROPY_WEIGHT``): ``relu(ENTROPY_FLOOR - s)``,
      DistributionNet's hinge against a vanishing variance.
    """

    # the variance head predicts a variance (it can be exported as a per-detection uncertainty)
    has_variance = True

    @configurable
    def __init__(
        self,
        *,
        map_channels: List[int],
        vector_channels: int = 0,
        embed_dim: int,
        map_dim: int = 32,
        map_grid: int = 4,
        prior_scale: float = 0.05,
        kl_weight: float = 0.1,
        kl_reduction: str = "mean",
        sample: bool = True,
        num_samples: int = 1,
        loss_weighting: bool = True,
        weight_power: float = 1.0,
        fit_weight: float = 1.0,
        quality_weight: float = 1.0,
        memory_weight: str = "iou",
        entropy_floor: float = -2.0,
        entropy_weight: float = 0.0,
        hidden_dim: int = 128,
        per_dimension: bool = False,
        clamp: float = 4.0,
        norm: str = "BN",
    ):
        """
        Args:
            map_channels: channels of each RoI map the variance head reads.
            vector_channels: size of the vector it also reads (SFM's levels; 0: none).
            embed_dim: D of the embedding it models.
            map_dim: channels each map is reduced to.
            map_grid: side of the grid each reduced map is average-pooled to.
            prior_scale: c of the prior N(0, c I / D) (the noise norm relative to the unit mean).
            kl_weight: weight of the KL regulariser (0: none).
            kl_reduction: "mean" or "sum" over dimensions.
            sample: train OIM on reparameterised samples (False: on the mean).
            num_samples: samples per RoI.
            loss_weighting: weight the OIM loss by certainty and fit s to the relative difficulty.
            weight_power: exponent of the certainty weights.
            fit_weight: weight of ``loss_ug_fit``.
            quality_weight: weight of ``loss_ug_quality`` (0: off).
            memory_weight: "none", "iou" or "certainty" (lookup-table update rates).
            entropy_floor: floor of s for the entropy hinge.
            entropy_weight: weight of ``loss_ug_entropy`` (0: off).
            hidden_dim: width of the variance head's hidden layer.
            per_dimension: one variance per embedding dimension (else one per RoI).
            clamp: bound of |u| (soft, tanh).
            norm: "BN" or "SyncBN".
        """
        super().__init__()
        key = "MODEL.UGAS.UG"
        if num_samples < 1:
            raise ValueError(f"{key}.NUM_SAMPLES must be >= 1, got {num_samples}")
        if prior_scale <= 0:
            raise ValueError(f"{key}.PRIOR_SCALE must be > 0, got {prior_scale}")
        if clamp <= 0:
            raise ValueError(f"{key}.CLAMP must be > 0, got {clamp}")
        if kl_reduction not in KL_REDUCTIONS:
            raise ValueError(
                f"{key}.KL_REDUCTION must be one of {KL_REDUCTIONS}, got {kl_reduction!r}"
            )
        if memory_weight not in MEMORY_WEIGHTS:
            raise ValueError(
                f"{key}.MEMORY_WEIGHT must be one of {MEMORY_WEIGHTS}, got {memory_weight!r}"
            )
        self.embed_dim = embed_dim
        self.log_prior = math.log(prior_scale / embed_dim)
        self.kl_weight = kl_weight
        self.kl_reduction = kl_reduction
        self.sample_embeddings = sample
        self.num_samples = num_samples
        self.loss_weighting = loss_weighting
        self.weight_power = weight_power
        self.fit_weight = fit_weight
        self.quality_weight = quality_weight
        self.memory_weight = memory_weight
        self.entropy_floor = entropy_floor
        self.entropy_weight = entropy_weight
        if hidden_dim < 1:
            raise ValueError(f"{key}.HIDDEN_DIM must be >= 1, got {hidden_dim}")
        if not map_channels and vector_channels <= 0:
            raise ValueError(f"{key}: the variance head has no input")
        self.clamp = clamp
        self.reducers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, map_dim, 1),
                build_norm(norm, map_dim, 2, f"{key}.NORM"),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(map_grid),
                nn.Flatten(),
            )
            for c in map_channels
        )
        in_channels = len(map_channels) * map_dim * map_grid * map_grid + vector_channels
        self.head = nn.Sequential(
            nn.Linear(in_channels, hidden_dim),
            build_norm(norm, hidden_dim, 1, f"{key}.NORM"),
            nn.ReLU(),
            nn.Linear(hidden_dim, embed_dim if per_dimension else 1),
        )
        nn.init.normal_(self.head[0].weight, std=0.01)
        nn.init.constant_(self.head[0].bias, 0.0)
        nn.init.zeros_(self.head[3].weight)  # every RoI starts at the prior's variance
        nn.init.zeros_(self.head[3].bias)

    @classmethod
    def from_config(cls, cfg, map_channels: List[int], vector_channels: int, embed_dim: int):
        c = cfg.MODEL.UGAS.UG
        return {
            "map_channels": map_channels,
            "vector_channels": vector_channels,
            "embed_dim": embed_dim,
            "map_dim": c.MAP_DIM,
            "map_grid": c.MAP_GRID,
            "prior_scale": c.PRIOR_SCALE,
            "kl_weight": c.KL_WEIGHT,
            "kl_reduction": c.KL_REDUCTION,
            "sample": c.SAMPLE,
            "num_samples": c.NUM_SAMPLES,
            "loss_weighting": c.LOSS_WEIGHTING,
            "weight_power": c.WEIGHT_POWER,
            "fit_weight": c.FIT_WEIGHT,
            "quality_weight": c.QUALITY_WEIGHT,
            "memory_weight": c.MEMORY_WEIGHT,
            "entropy_floor": c.ENTROPY_FLOOR,
            "entropy_weight": c.ENTROPY_WEIGHT,
            "hidden_dim": c.HIDDEN_DIM,
            "per_dimension": c.PER_DIMENSION,
            "clamp": c.CLAMP,
            "norm": c.NORM,
        }

    # ---- the variance head ----

    def relative_log_variance(
        self, maps: List[torch.Tensor], vector: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """RoI maps (each (R, C_i, H_i, W_i)) and an optional (R, C_v) vector -> (R, D)
        ``u = log sigma^2 - log(c / D)``, float32."""
        ref = maps[0] if maps else vector
        with full_precision(ref.device.type):
            parts = [r(m.float()) for r, m in zip(self.reducers, maps)]
            if vector is not None:
                parts.append(vector.float())
            u = self.head(torch.cat(parts, dim=1))
            u = self.clamp * torch.tanh(u / self.clamp)
            return u.expand(-1, self.embed_dim)

    def log_variance(
        self, maps: List[torch.Tensor], vector: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """RoI maps and an optional vector (see :meth:`relative_log_variance`) -> (R, D)
        log sigma^2 (float32)."""
        return self.relative_log_variance(maps, vector) + self.log_prior

    def uncertainty(self, log_var: torch.Tensor) -> torch.Tensor:
        """(R, D) log sigma^2 -> (R,) the per-RoI uncertainty: mean log sigma^2 (larger =
        coarser)."""
        return log_var.mean(dim=1)

    def perturb(self, x: torch.Tensor) -> torch.Tensor:
        """RoI feature maps pass unchanged (only feature-statistics UG perturbs them)."""
        return x

    # ---- training ----

    def sample(self, mean_unit: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """(S, R, D) unit samples ``normalize(mu + sigma * eps)`` (reparameterised, float32)."""
        mean_unit = mean_unit.float()
        eps = torch.randn(
            (self.num_samples,) + tuple(mean_unit.shape),
            device=mean_unit.device,
            dtype=mean_unit.dtype,
        )
        return F.normalize(mean_unit + torch.exp(0.5 * log_var.float()) * eps, dim=-1)

    def kl(self, log_var: torch.Tensor) -> torch.Tensor:
        """Weighted KL(N(mu, sigma^2) || N(0, c I / D)) without its mu term (constant on the unit
        sphere): ``0.5 (e^u - 1 - u)`` per dimension, averaged (or summed, ``KL_REDUCTION``) over
        dimensions, mean over RoIs; 0 without RoIs."""
        if log_var.numel() == 0:
            return log_var.sum() * 0.0
        u = log_var.float() - self.log_prior
        per_dim = 0.5 * (torch.exp(u) - 1.0 - u)
        per_roi = per_dim.mean(dim=1) if self.kl_reduction == "mean" else per_dim.sum(dim=1)
        return self.kl_weight * per_roi.mean()

    def reid_loss(
        self,
        main_loss: OIMLoss,
        feats: torch.Tensor,
        pids: torch.Tensor,
        log_var: torch.Tensor,
        iou: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """The main OIM loss of the foreground RoIs, guided by their uncertainty, and UG's terms;
        updates the main memories once.

        Args:
            main_loss: the OIM loss (and memories) of the final embedding.
            feats: (N, D) the RoIs' OIM features (the Gaussian means).
            pids: (N,) identities (-1 unlabeled).
            log_var: (N, D) their log sigma^2.
            iou: (N,) IoU of each RoI with its ground truth (None: unknown; needed by
                ``QUALITY_WEIGHT`` and ``MEMORY_WEIGHT iou``).

        Returns:
            ``loss_oim`` and the enabled UG terms (``loss_ug_kl``, ``loss_ug_fit``,
            ``loss_ug_quality``, ``loss_ug_entropy``).
        """
        needs_iou = self.quality_weight > 0 or self.memory_weight == "iou"
        if needs_iou and iou is None:
            raise ValueError(
                "MODEL.UGAS.UG.QUALITY_WEIGHT / MEMORY_WEIGHT 'iou' need the IoU of each RoI with "
                "its ground truth, which this RoI head does not provide"
            )
        labeled = pids >= 0
        s = (log_var.float() - self.log_prior).mean(dim=1)
        if self.sample_embeddings:
            samples = self.sample(F.normalize(feats.float(), dim=1), log_var)
        else:
            samples = feats.unsqueeze(0)
        # every sample is scored against the memories as they were before this batch
        ce = torch.stack([main_loss.per_roi_loss(main_loss.logits(z, pids), pids) for z in samples])
        ce = ce.mean(dim=0)
        weights = torch.ones_like(s)
        if self.loss_weighting:
            weights = torch.ones_like(s)
            weights[labeled] = certainty_weights(s[labeled], self.weight_power)
        if labeled.any():
            loss = (weights[labeled] * ce[labeled]).mean()
        else:
            loss = ce.sum() * 0.0 + feats.sum() * 0.0
        losses = {"loss_oim": main_loss.loss_weight * loss}
        if self.kl_weight > 0:
            losses["loss_ug_kl"] = self.kl(log_var)
        if self.loss_weighting and self.fit_weight > 0:
            losses["loss_ug_fit"] = self.fit_weight * uncertainty_fit_loss(s[labeled], ce[labeled])
        if self.quality_weight > 0:
            losses["loss_ug_quality"] = self.quality_weight * quality_correlation_loss(s, iou)
        if self.entropy_weight > 0:
            floor = F.relu(self.entropy_floor - s)
            losses["loss_ug_entropy"] = self.entropy_weight * (
                floor.mean() if floor.numel() else s.sum() * 0.0
            )
        main_loss.update(feats, pids, memory_update_rates(self.memory_weight, iou, weights))
        if s.numel() > 1:
            put_scalars(ug_s_mean=float(s.detach().mean()), ug_s_std=float(s.detach().std()))
        return losses


@UG_REGISTRY.register()
class UncertaintyAwareLoss(GaussianEmbeddingUncertainty):
    """UG without sampling (UAL, ECCV 2022): the same variance head and guidance (certainty-weighted
    OIM loss, ``loss_ug_fit``, optional IoU supervision and memory weighting), OIM trained on the
    mean embedding. ``UG.SAMPLE`` is ignored (always False)."""

    @classmethod
    def from_config(cls, cfg, map_channels: List[int], vector_channels: int, embed_dim: int):
        ret = super().from_config(cfg, map_channels, vector_channels, embed_dim)
        ret["sample"] = False
        return ret
