"""NAE+'s pixel-wise norm-aware embedding head: per-cell norms become a spatial attention map."""

from typing import Dict, List

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from personsearch.layers import build_norm, resize_bilinear

from .norm_aware import init_projection, split_embedding_dim
from .registry import REID_HEAD_REGISTRY, check_in_features


def _projector_name(feature: str) -> str:
    return feature[: -len("_map")] if feature.endswith("_map") else feature


@REID_HEAD_REGISTRY.register()
class PixelNormAwareEmbeddingHead(nn.Module):
    """NAE+ (the pixel-wise NAE of Chen et al., CVPR 2020).

    Each RoI map (``IN_FEATURES [res4_map, res5_map]``: the 14x14 RoIAlign res4 input and the 7x7
    res5 output) is projected per cell by a 1x1 conv + BatchNorm2d to its share of D; the projected
    maps are bilinearly resized (``align_corners=False``) to the size of the last map (7x7; for the
    14x14 res4 map this equals a 2x2 average) and concatenated into per-cell embeddings x_ij.
    Per cell:
    ``r_ij = ||x_ij||``, direction ``theta_ij = x_ij / r_ij``, logit ``l_ij = BN2d_1(r_ij)`` (one
    BatchNorm over all cells and RoIs), attention ``a_ij = sigmoid(l_ij)``. The RoI embedding is
    ``e = mean_ij(a_ij theta_ij)``; OIM is trained on e itself (not re-normalised, as the
    reference), retrieval uses ``e / ||e||``. The detection score is ``mean_ij a_ij``, which the RoI
    head normalises per image.
    """

    # the keys forward() returns
    outputs = ("embeddings", "oim_features", "pixel_logits", "attention", "scores")

    @configurable
    def __init__(
        self, *, in_features: List[str], in_channels: List[int], embed_dim: int, norm: str = "BN"
    ):
        """
        Args:
            in_features: names of the RoI maps (e.g. ``["res4_map", "res5_map"]``).
            in_channels: channels of each.
            embed_dim: D, split over the maps as in :class:`NormAwareEmbeddingHead`.
            norm: "BN" or "SyncBN".
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
            proj = nn.Sequential(
                nn.Conv2d(c, d, kernel_size=1), build_norm(norm, d, 2, "MODEL.REID_HEAD.NORM")
            )
            init_projection(proj[0], proj[1])
            # named like NAE's projectors ("res4", "res5"), so that NAE's weights load into them
            self.projectors[_projector_name(name)] = proj
        self.rescaler = build_norm(norm, 1, 2, "MODEL.REID_HEAD.NORM")

    @classmethod
    def from_config(cls, cfg, input_channels: Dict[str, int]):
        names = check_in_features(
            cfg.MODEL.REID_HEAD.IN_FEATURES, input_channels, True, "PixelNormAwareEmbeddingHead"
        )
        return {
            "in_features": names,
            "in_channels": [input_channels[n] for n in names],
            "embed_dim": cfg.MODEL.REID_HEAD.EMBED_DIM,
            "norm": cfg.MODEL.REID_HEAD.NORM,
        }

    def project(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-cell un-normalised embeddings x: (R, D, H, W), H x W the last map's size.

        In eval mode a projector (1x1 conv + BatchNorm with running statistics) is a per-cell
        affine map and bilinear resizing a convex combination of cells (weights summing to 1), so
        the two commute: a map is then resized *before* its projection (the same values up to
        float rounding; for the 14x14 res4 map the 1x1 conv runs on 4x fewer cells). In training
        the BatchNorm's batch statistics depend on the cells it sees, so the reference order is
        kept. Resizing uses :func:`~personsearch.layers.resize_bilinear` (``F.interpolate``'s values
        by its NHWC kernel; the NCHW CUDA kernel runs one thread per output cell).
        """
        size = features[self.in_features[-1]].shape[-2:]
        maps = []
        for n in self.in_features:
            x, proj = features[n], self.projectors[_projector_name(n)]
            if x.shape[-2:] == size:
                maps.append(proj(x))
            elif self.training:
                maps.append(resize_bilinear(proj(x), size))
            else:
                maps.append(proj(resize_bilinear(x, size)))
        return torch.cat(maps, dim=1)

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """
        Args:
            features: RoI maps, each (R, C_f, H_f, W_f).

        Returns:
            ``{"embeddings": (R, D) e / ||e||, "oim_features": (R, D) e, "pixel_logits":
            (R, 1, H, W), "attention": (R, 1, H, W), "scores": (R,) mean attention}``.
        """
        x = self.project(features)
        norms = x.norm(dim=1, keepdim=True)
        directions = x / norms.clamp(min=1e-12)
        logits = self.rescaler(norms)
        attention = torch.sigmoid(logits)
        pooled = (directions * attention).mean(dim=(2, 3))
        return {
            "embeddings": F.normalize(pooled, dim=1),
            "oim_features": pooled,
            "pixel_logits": logits,
            "attention": attention,
            "scores": attention.mean(dim=(1, 2, 3)),
        }
