"""NAE's norm-aware embedding head: the norm of the embedding is the detection score."""

from typing import Dict, List

import torch
from detectron2.config import configurable
from torch import nn

from personsearch.layers import build_norm

from .registry import REID_HEAD_REGISTRY, check_in_features


def split_embedding_dim(dim: int, parts: int) -> List[int]:
    """Split D over the projected features as the reference does: ``D // parts`` each, the
    remainder added one by one to the last parts (256 over res4/res5 gives 128 + 128)."""
    dims = [dim // parts] * parts
    for i in range(1, dim % parts + 1):
        dims[-i] += 1
    return dims


def init_projection(linear: nn.Module, norm: nn.Module) -> None:
    """The reference initialisation of a projection + BatchNorm pair: N(0, 0.01) on the projection
    weight *and* on the BN weight, zero biases (embeddings are tiny at the start)."""
    nn.init.normal_(linear.weight, std=0.01)
    nn.init.constant_(linear.bias, 0.0)
    nn.init.normal_(norm.weight, std=0.01)
    nn.init.constant_(norm.bias, 0.0)


@REID_HEAD_REGISTRY.register()
class NormAwareEmbeddingHead(nn.Module):
    """NAE (Chen et al., CVPR 2020): ``x = [BN(W_1 f_1); ...; BN(W_k f_k)]``, ``r = ||x||``,
    identity = ``x / r``, detection logit = ``BN_1(r)`` (the "rescaler", a 1-channel BatchNorm).

    With ``IN_FEATURES [res4, res5]`` the max-pooled RoIAlign res4 input (1024-d for R50) and the
    max-pooled res5 output (2048-d) are each projected to D/2 = 128 dimensions.
    ``sigmoid(logit)`` is
    the detection score (trained with binary cross-entropy by the RoI head); OIM is applied to the
    unit direction. There is no softmax classifier.
    """

    # the keys forward() returns
    outputs = ("embeddings", "oim_features", "norms", "norm_logits")

    @configurable
    def __init__(
        self, *, in_features: List[str], in_channels: List[int], embed_dim: int, norm: str = "BN"
    ):
        """
        Args:
            in_features: names of the pooled RoI features to project (e.g. ``["res4", "res5"]``).
            in_channels: channels of each.
            embed_dim: D, split over the features with :func:`split_embedding_dim`.
            norm: "BN" or "SyncBN" for the projectors' and the rescaler's BatchNorm.
        """
        super().__init__()
        if embed_dim < len(in_features):
            raise ValueError(
                f"MODEL.REID_HEAD.EMBED_DIM={embed_dim} is smaller than the number of "
                f"IN_FEATURES {in_features}"
            )
        self.in_features = list(in_features)
        self.embed_dim = embed_dim
        self.projectors = nn.ModuleDict()
        for name, c, d in zip(
            in_features, in_channels, split_embedding_dim(embed_dim, len(in_features))
        ):
            proj = nn.Sequential(nn.Linear(c, d), build_norm(norm, d, 1, "MODEL.REID_HEAD.NORM"))
            init_projection(proj[0], proj[1])
            self.projectors[name] = proj
        self.rescaler = build_norm(norm, 1, 1, "MODEL.REID_HEAD.NORM")

    @classmethod
    def from_config(cls, cfg, input_channels: Dict[str, int]):
        names = check_in_features(
            cfg.MODEL.REID_HEAD.IN_FEATURES, input_channels, False, "NormAwareEmbeddingHead"
        )
        return {
            "in_features": names,
            "in_channels": [input_channels[n] for n in names],
            "embed_dim": cfg.MODEL.REID_HEAD.EMBED_DIM,
            "norm": cfg.MODEL.REID_HEAD.NORM,
        }

    def project(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The un-normalised embedding x: (R, D)."""
        return torch.cat([self.projectors[n](features[n]) for n in self.in_features], dim=1)

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """
        Args:
            features: pooled RoI features, each (R, C_f).

        Returns:
            ``{"embeddings": (R, D) x / ||x||, "oim_features": the same (what OIM is trained on),
            "norms": (R,) ||x||, "norm_logits": (R,) rescaled norm (detection logit)}``.
        """
        x = self.project(features)
        norms = x.norm(dim=1, keepdim=True)
        embeddings = x / norms.clamp(min=1e-12)
        logits = self.rescaler(norms).reshape(-1)
        return {
            "embeddings": embeddings,
            "oim_features": embeddings,
            "norms": norms.reshape(-1),
            "norm_logits": logits,
        }
