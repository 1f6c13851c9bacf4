"""SFM: multi-scale shallow features of each person box, fused with the deep embedding."""

from typing import Dict, List

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes
from torch import nn

from personsearch.layers import build_norm, build_roi_pooler

from .registry import SFM_REGISTRY

FUSIONS = ("concat", "mean", "deep", "shallow")


@SFM_REGISTRY.register()
class ShallowFusionModule(nn.Module):
    """UGAS's shallow fusion module (reconstructed from the poster, docs/METHODS.md "UGAS").

    For every box, each shallow level (``MODEL.UGAS.SFM.IN_FEATURES``: res2/res3 of the C4
    backbone, or FPN levels p2/p3) is pooled on its own with its own RoIAlign scale, then
    ``Conv1x1 + BN + ReLU`` (+ ``NUM_CONV`` x ``Conv3x3 + BN + ReLU``) and global max pooling give a
    ``CONV_DIM``-d vector per level; the level vectors are concatenated and projected by
    ``Linear + BN1d`` to the shallow embedding s (``EMBED_DIM``).

    Fusion with the deep (NAE) embedding d (``FUSION``): ``concat`` ``[d/|d|; s/|s|] / sqrt(2)``
    (unit norm, D_d + D_s dimensions; the poster's best), ``mean`` ``normalize(d/|d| + s/|s|)``
    (needs D_s = D_d), ``deep`` ``d/|d|``, ``shallow`` ``s/|s|``. The detection score stays on the
    deep part.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        poolers: List[ROIPooler],
        in_channels: List[int],
        conv_dim: int,
        num_conv: int,
        embed_dim: int,
        deep_dim: int,
        fusion: str,
        norm: str = "BN",
    ):
        """
        Args:
            in_features: backbone feature names of the shallow levels.
            poolers: one single-level RoI pooler per level.
            in_channels: channels of each level.
            conv_dim: channels of the per-level convolutions (= per-level vector size).
            num_conv: number of 3x3 conv + BN + ReLU after the 1x1 projection.
            embed_dim: D_s, the shallow embedding.
            deep_dim: D_d, the deep embedding the shallow one is fused with.
            fusion: one of ``FUSIONS``.
            norm: "BN" or "SyncBN".
        """
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"MODEL.UGAS.SFM.FUSION must be one of {FUSIONS}, got {fusion!r}")
        if fusion == "mean" and embed_dim != deep_dim:
            raise ValueError(
                f"MODEL.UGAS.SFM.FUSION 'mean' averages the deep and shallow embeddings, so "
                f"MODEL.UGAS.SFM.EMBED_DIM ({embed_dim}) must equal MODEL.REID_HEAD.EMBED_DIM "
                f"({deep_dim})"
            )
        key = "MODEL.UGAS.SFM.NORM"
        self.in_features = list(in_features)
        self.poolers = poolers  # parameter-free; a plain list keeps them out of the state dict
        self.level_heads = nn.ModuleList()
        for c in in_channels:
            layers = [nn.Conv2d(c, conv_dim, 1), build_norm(norm, conv_dim, 2, key), nn.ReLU()]
            for _ in range(num_conv):
                layers += [
                    nn.Conv2d(conv_dim, conv_dim, 3, padding=1),
                    build_norm(norm, conv_dim, 2, key),
                    nn.ReLU(),
                ]
            head = nn.Sequential(*layers)
            for m in head.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.constant_(m.bias, 0.0)
            self.level_heads.append(head)
        self.level_channels = conv_dim * len(in_channels)
        self.proj = nn.Sequential(
            nn.Linear(self.level_channels, embed_dim), build_norm(norm, embed_dim, 1, key)
        )
        nn.init.normal_(self.proj[0].weight, std=0.01)
        nn.init.constant_(self.proj[0].bias, 0.0)
        self.shallow_dim = embed_dim
        self.deep_dim = deep_dim
        self.fusion = fusion
        self.embed_dim = {
            "concat": deep_dim + embed_dim,
            "mean": deep_dim,
            "deep": deep_dim,
            "shallow": embed_dim,
        }[fusion]

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec], deep_dim: int):
        c = cfg.MODEL.UGAS.SFM
        names = list(c.IN_FEATURES)
        missing = [n for n in names if n not in input_shape]
        if not names or missing:
            raise ValueError(
                f"MODEL.UGAS.SFM.IN_FEATURES {names}: {missing or 'empty'} not among the "
                f"backbone outputs {sorted(input_shape)}; add the shallow levels to "
                "MODEL.RESNETS.OUT_FEATURES (e.g. ['res2', 'res3', 'res4']) or use a backbone "
                "that outputs them (build_person_search_resnet_c4_fpn_backbone for p2/p3)"
            )
        poolers = [
            build_roi_pooler(
                c.POOLER_RESOLUTION,
                (1.0 / input_shape[n].stride,),
                c.POOLER_SAMPLING_RATIO,
                c.POOLER_TYPE,
                cfg.MODEL.ROI_BOX_HEAD.ROI_ALIGN_CPU,
            )
            for n in names
        ]
        return {
            "in_features": names,
            "poolers": poolers,
            "in_channels": [input_shape[n].channels for n in names],
            "conv_dim": c.CONV_DIM,
            "num_conv": c.NUM_CONV,
            "embed_dim": c.EMBED_DIM,
            "deep_dim": deep_dim,
            "fusion": c.FUSION,
            "norm": c.NORM,
        }

    def pool(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> List[torch.Tensor]:
        """Per level, the (R, C_l, S, S) RoIAlign maps of the boxes (input-image coordinates)."""
        return [
            pooler([features[name]], boxes) for name, pooler in zip(self.in_features, self.poolers)
        ]

    def level_maps(self, pooled: List[torch.Tensor]) -> List[torch.Tensor]:
        """Per level, the (R, CONV_DIM, S, S) maps of the level heads (before global pooling)."""
        return [head(x) for x, head in zip(pooled, self.level_heads)]

    def embed(self, pooled: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The shallow embedding of pooled level maps.

        Args:
            pooled: :meth:`pool`'s maps.

        Returns:
            ``{"shallow": (R, D_s) pre-normalisation s, "levels": (R, C) concatenated level
            vectors}``.
        """
        levels = torch.cat([x.amax(dim=(2, 3)) for x in self.level_maps(pooled)], dim=1)
        return {"shallow": self.proj(levels), "levels": levels}

    def forward(
        self, features: Dict[str, torch.Tensor], boxes: List[Boxes]
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            features: backbone outputs (must hold ``in_features``).
            boxes: per image, the boxes (input-image coordinates).

        Returns:
            :meth:`embed`'s outputs plus ``"pooled"``: the per-level RoI maps (list).
        """
        pooled = self.pool(features, boxes)
        out = self.embed(pooled)
        out["pooled"] = pooled
        return out

    def fuse(self, deep_unit: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
        """The retrieval embedding (R, embed_dim), unit norm (see the class docstring)."""
        s = F.normalize(shallow, dim=1)
        if self.fusion == "concat":
            return torch.cat([deep_unit, s], dim=1) / (2.0**0.5)
        if self.fusion == "mean":
            return F.normalize(deep_unit + s, dim=1)
        return deep_unit if self.fusion == "deep" else s
