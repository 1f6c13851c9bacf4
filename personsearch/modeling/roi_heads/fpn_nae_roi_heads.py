"""NAE on an FPN detector: the NAE head of :mod:`.nae_roi_heads` on detectron2's FPN box head."""

from typing import Dict

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY

from .box_regressor import NormAwareBoxRegressor
from .fpn_person_search_roi_heads import FPNPersonSearchROIHeads
from .nae_roi_heads import NAEROIHeads


@ROI_HEADS_REGISTRY.register()
class FPNNAEROIHeads(NAEROIHeads, FPNPersonSearchROIHeads):
    """:class:`NAEROIHeads` (training, inference, exact CBGM query contexts, query embeddings) on
    the FPN RoI features of :class:`FPNPersonSearchROIHeads`.

    Every RoI is pooled from its FPN level and runs through the FPN box head (two FC layers); the
    norm-aware re-ID head projects the pooled features named by ``MODEL.REID_HEAD.IN_FEATURES``:
    ``["fpn", "box_head"]`` (configs/NAE_R50_FPN.yaml) is NAE's res4 + res5 pair carried over,
    the max-pooled RoIAlign map (256-d) and the box head's output (1024-d), 128 dimensions each;
    ``["box_head"]`` embeds from the box head's feature alone. The NAE box regressor reads the box
    head's output, as the FPN detector's own regressor does. Losses and outputs are NAE's.
    """

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        # NAEROIHeads sizes its regressor for C4's res5; here it reads the box head's output
        ret["box_regressor"] = NormAwareBoxRegressor(
            ret["feature_head"].output_channels["box_head"], cfg.MODEL.REID_HEAD.NORM
        )
        return ret

    def regression_input(self, roi_feats: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The box regressor's input: the FPN box head's output (R, C_box)."""
        return roi_feats["box_head"]
