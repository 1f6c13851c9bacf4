"""OIM's embedding head: one fully connected layer and L2 normalisation."""

from typing import Dict, List

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .registry import REID_HEAD_REGISTRY, check_in_features


@REID_HEAD_REGISTRY.register()
class LinearEmbeddingHead(nn.Module):
    """``embedding = normalize(N(W [f_1; ...; f_k] + b))`` over the selected pooled RoI features.

    The OIM paper projects the 2048-d pooled res5 feature to 256 dimensions this way (N = identity).
    With ``norm="BN"`` (or "SyncBN"), N is a BatchNorm over the batch of RoIs, which centres the
    projections. This matters when training from scratch: pooled post-ReLU features are all
    positive, so without centring every RoI maps to nearly the same direction, all OIM cosines are
    ~1 and the softmax stays uniform (the loss sits at log(L + Q)).
    """

    # the keys forward() returns
    outputs = ("embeddings",)
    # ``norm(proj(x))``: inference folds a BatchNorm into the projection (fold_batchnorm)
    FOLDABLE_PAIRS = (("proj", "norm"),)

    @configurable
    def __init__(self, *, in_features: List[str], in_channels: int, embed_dim: int, norm: str = ""):
        """
        Args:
            in_features: names of the pooled features to concatenate (e.g. ``["res5"]``).
            in_channels: total channels of the concatenation.
            embed_dim: D.
            norm: "" (none), "BN" or "SyncBN" after the projection.
        """
        super().__init__()
        if embed_dim < 1:
            raise ValueError(f"MODEL.REID_HEAD.EMBED_DIM must be >= 1, got {embed_dim}")
        self.in_features = list(in_features)
        self.embed_dim = embed_dim
        self.proj = nn.Linear(in_channels, embed_dim)
        nn.init.normal_(self.proj.weight, std=0.01)
        nn.init.constant_(self.proj.bias, 0.0)
        norms = {"": nn.Identity, "BN": nn.BatchNorm1d, "SyncBN": nn.SyncBatchNorm}
        if norm not in norms:
            raise ValueError(f"MODEL.REID_HEAD.NORM must be one of {sorted(norms)}, got {norm!r}")
        self.norm = norms[norm](embed_dim) if norm else nn.Identity()

    @classmethod
    def from_config(cls, cfg, input_channels: Dict[str, int]):
        names = check_in_features(
            cfg.MODEL.REID_HEAD.IN_FEATURES, input_channels, False, "LinearEmbeddingHead"
        )
        return {
            "in_features": names,
            "in_channels": sum(input_channels[n] for n in names),
            "embed_dim": cfg.MODEL.REID_HEAD.EMBED_DIM,
            "norm": cfg.MODEL.REID_HEAD.NORM,
        }

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """
        Args:
            features: pooled RoI features, each (R, C_f).

        Returns:
            ``{"embeddings": (R, D) L2-normalised}``.
        """
        x = torch.cat([features[f] for f in self.in_features], dim=1)
        return {"embeddings": F.normalize(self.norm(self.proj(x)), dim=1)}
