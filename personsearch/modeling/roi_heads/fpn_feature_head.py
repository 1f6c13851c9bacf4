"""The FPN RoI feature extractor: detectron2's box head on the level-pooled RoI maps."""

from typing import Dict

import torch
from torch import nn


class FPNFeatureHead(nn.Module):
    """Runs the FPN box head (``MODEL.ROI_BOX_HEAD.NAME``, detectron2's ``FastRCNNConvFCHead``:
    ``NUM_FC`` x ``FC_DIM`` fully connected layers) on RoI maps pooled from their FPN level, and
    globally pools those maps too.

    It plays the part of :class:`~.res5_feature_head.Res5FeatureHead` in the FPN heads: its outputs
    are the pooled RoI features that ``MODEL.REID_HEAD.IN_FEATURES`` selects from. ``"box_head"``
    (the detector's own RoI feature, what the classifier and box regressor read) corresponds to
    C4's ``"res5"``; ``"fpn"`` (the pooled RoIAlign input) to C4's ``"res4"``.
    """

    def __init__(self, box_head: nn.Module, in_channels: int, pool: str = "max"):
        """
        Args:
            box_head: maps (R, C, S, S) pooled RoI maps to (R, C_box) vectors; must expose
                ``output_shape`` (a ``ShapeSpec``) like detectron2's box heads.
            in_channels: C, the FPN channels.
            pool: "max" or "avg" global pooling of the RoI maps.
        """
        super().__init__()
        if pool not in ("max", "avg"):
            raise ValueError(f"MODEL.ROI_BOX_HEAD.GLOBAL_POOL must be 'max' or 'avg', got {pool!r}")
        shape = box_head.output_shape
        if shape.height not in (None, 1) or shape.width not in (None, 1):
            raise ValueError(
                f"the FPN person-search heads need a box head that outputs vectors; "
                f"MODEL.ROI_BOX_HEAD.NAME gives {shape} (set MODEL.ROI_BOX_HEAD.NUM_FC "
                "to at least 1)"
            )
        self.box_head = box_head
        self.pool = pool
        # pooled vectors (R, C) and the map they are pooled from (R, C, S, S)
        self.output_channels = {
            "box_head": shape.channels,
            "fpn": in_channels,
            "fpn_map": in_channels,
        }
        # which pooled vector each map is globally pooled into
        self.pooled_of = {"fpn_map": "fpn"}
        # the RoIAlign map the head reads (what UG's variance head looks at by default)
        self.input_map = "fpn_map"

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: (R, C, S, S) RoIAlign'ed FPN features, each RoI from the level detectron2's
                ``ROIPooler`` assigns to its size.

        Returns:
            ``{"box_head": (R, C_box) box-head output, "fpn": (R, C) globally pooled x,
            "fpn_map": (R, C, S, S) x itself}``.
        """
        pooled = x.amax(dim=(2, 3)) if self.pool == "max" else x.mean(dim=(2, 3))
        return {"box_head": self.box_head(x).flatten(1), "fpn": pooled, "fpn_map": x}
