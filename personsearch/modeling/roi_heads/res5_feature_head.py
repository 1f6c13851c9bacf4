"""The C4 RoI feature extractor: res5 on pooled res4 RoI maps, then global pooling."""

from typing import Dict

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn

from ..backbone.resnet import build_res5_stage, res5_out_channels
from .feature_head import ROI_FEATURE_HEAD_REGISTRY, check_global_pool, global_pool


@ROI_FEATURE_HEAD_REGISTRY.register()
class Res5FeatureHead(nn.Module):
    """Runs res5 on RoIAlign'ed res4 maps and globally pools its input and output.

    Person-search heads read both: NAE/SeqNet project the pooled res4 input (1024-d for R50) and the
    pooled res5 output (2048-d) into their embedding. The official NAE/SeqNet code pools with *max*
    (its comments say average); the OIM Caffe model averages. The detector reads the pooled res5
    output (``box_feature`` "res5").
    """

    # the output the detector reads, and the map it is pooled from (see ROI_FEATURE_HEAD_REGISTRY)
    box_feature = "res5"
    box_map = "res5_map"
    # the RoIAlign map the head reads (what UG's variance head looks at by default)
    input_map = "res4_map"
    # which pooled vector each map is globally pooled into (the maps' vector counterparts)
    pooled_of = {"res4_map": "res4", "res5_map": "res5"}

    @configurable
    def __init__(self, res5: nn.Module, res4_channels: int, res5_channels: int, pool: str = "max"):
        """
        Args:
            res5: the res5 stage (stride 2).
            res4_channels, res5_channels: input and output channels of ``res5``.
            pool: "max" or "avg" global pooling.
        """
        super().__init__()
        self.res5 = res5
        self.pool = check_global_pool(pool)
        # pooled vectors (R, C) and the maps they are pooled from (R, C, s, s)
        self.output_channels = {
            "res4": res4_channels,
            "res5": res5_channels,
            "res4_map": res4_channels,
            "res5_map": res5_channels,
        }

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        if len(in_features) != 1:
            raise ValueError(
                f"person-search RoI heads pool from one feature map on res5 (MODEL.ROI_FEATURE_"
                f"HEAD.NAME 'Res5FeatureHead'; 'FPNFeatureHead' pools FPN levels); got "
                f"MODEL.ROI_HEADS.IN_FEATURES={in_features}"
            )
        if in_features[0] not in input_shape:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES={in_features}: the backbone outputs only "
                f"{sorted(input_shape)} (MODEL.RESNETS.OUT_FEATURES)"
            )
        check_global_pool(cfg.MODEL.ROI_BOX_HEAD.GLOBAL_POOL)
        return {
            "res5": build_res5_stage(cfg),
            "res4_channels": input_shape[in_features[0]].channels,
            "res5_channels": res5_out_channels(cfg),
            "pool": cfg.MODEL.ROI_BOX_HEAD.GLOBAL_POOL,
        }

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: (R, C4, S, S) RoIAlign'ed res4 features (S = 14 in the reference setting).

        Returns:
            ``{"res4": (R, C4), "res5": (R, C5), "res4_map": (R, C4, S, S) (the input itself),
            "res5_map": (R, C5, ceil(S/2), ceil(S/2))}``.
        """
        y = self.res5(x)
        return {
            "res4": global_pool(x, self.pool),
            "res5": global_pool(y, self.pool),
            "res4_map": x,
            "res5_map": y,
        }
