"""The FPN RoI feature extractor: detectron2's box head on the level-pooled RoI maps."""

from typing import Dict

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import build_box_head
from torch import nn

from .feature_head import ROI_FEATURE_HEAD_REGISTRY, check_global_pool, global_pool


@ROI_FEATURE_HEAD_REGISTRY.register()
class FPNFeatureHead(nn.Module):
    """Runs the FPN box head (``MODEL.ROI_BOX_HEAD.NAME``, detectron2's ``FastRCNNConvFCHead``:
    ``NUM_FC`` x ``FC_DIM`` fully connected layers) on RoI maps pooled from their FPN level, and
    globally pools those maps too: the box path of detectron2's ``StandardROIHeads``.

    With ``MODEL.ROI_HEADS.IN_FEATURES`` FPN levels (e.g. p2..p5), detectron2's ``ROIPooler``
    picks each RoI's level from its size (canonical 224 px on p4). Outputs: ``"box_head"`` (the
    detector's own RoI feature, what the classifier and the box regressors read: ``box_feature``),
    ``"fpn"`` (the pooled RoIAlign input) and ``"fpn_map"`` (that input itself, ``input_map``).
    NAE's res4 + res5 pair carries over as ``["fpn", "box_head"]``.
    """

    # the output the detector reads; it is an FC output, pooled from no map
    box_feature = "box_head"
    box_map = None
    # the RoIAlign map the head reads (what UG's variance head looks at by default)
    input_map = "fpn_map"
    # which pooled vector each map is globally pooled into
    pooled_of = {"fpn_map": "fpn"}

    @configurable
    def __init__(self, box_head: nn.Module, in_channels: int, pool: str = "max"):
        """
        Args:
            box_head: maps (R, C, S, S) pooled RoI maps to (R, C_box) vectors; must expose
                ``output_shape`` (a ``ShapeSpec``) like detectron2's box heads.
            in_channels: C, the FPN channels.
            pool: "max" or "avg" global pooling of the RoI maps.
        """
        super().__init__()
        self.pool = check_global_pool(pool)
        shape = box_head.output_shape
        if shape.height not in (None, 1) or shape.width not in (None, 1):
            raise ValueError(
                f"the FPN person-search heads need a box head that outputs vectors; "
                f"MODEL.ROI_BOX_HEAD.NAME gives {shape} (set MODEL.ROI_BOX_HEAD.NUM_FC "
                "to at least 1)"
            )
        self.box_head = box_head
        # pooled vectors (R, C) and the map they are pooled from (R, C, S, S)
        self.output_channels = {
            "box_head": shape.channels,
            "fpn": in_channels,
            "fpn_map": in_channels,
        }

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        missing = [f for f in in_features if f not in input_shape]
        if not in_features or missing:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES={in_features}: {missing or 'empty'} not among the "
                f"backbone outputs {sorted(input_shape)} (an FPN head pools FPN levels, e.g. "
                "['p2', 'p3', 'p4', 'p5'])"
            )
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES={in_features} have different channel counts "
                f"{sorted(channels)}; an FPN head pools levels of one width"
            )
        (channels,) = channels
        box_cfg = cfg.MODEL.ROI_BOX_HEAD
        if not box_cfg.NAME:
            raise ValueError(
                "MODEL.ROI_BOX_HEAD.NAME is empty; the FPN person-search heads need a registered "
                "box head, e.g. 'FastRCNNConvFCHead' with MODEL.ROI_BOX_HEAD.NUM_FC 2"
            )
        if box_cfg.NAME == "FastRCNNConvFCHead" and box_cfg.NUM_FC < 1:
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.NUM_FC={box_cfg.NUM_FC}: the FPN person-search heads read the "
                "box head's output vector; set MODEL.ROI_BOX_HEAD.NUM_FC to at least 1 (2 in "
                "detectron2's R50-FPN)"
            )
        res = box_cfg.POOLER_RESOLUTION
        return {
            "box_head": build_box_head(cfg, ShapeSpec(channels=channels, height=res, width=res)),
            "in_channels": channels,
            "pool": box_cfg.GLOBAL_POOL,
        }

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: (R, C, S, S) RoIAlign'ed FPN features, each RoI from the level detectron2's
                ``ROIPooler`` assigns to its size.

        Returns:
            ``{"box_head": (R, C_box) box-head output, "fpn": (R, C) globally pooled x,
            "fpn_map": (R, C, S, S) x itself}``.
        """
        return {
            "box_head": self.box_head(x).flatten(1),
            "fpn": global_pool(x, self.pool),
            "fpn_map": x,
        }
