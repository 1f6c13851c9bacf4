"""The OIM baseline on an FPN detector: detectron2's R50-FPN Faster R-CNN + an OIM embedding."""

from typing import Dict, List, Optional

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import FastRCNNOutputLayers
from detectron2.structures import Boxes

from .fpn_person_search_roi_heads import FPNPersonSearchROIHeads
from .oim_roi_heads import OIMROIHeads
from .res5_feature_head import Res5FeatureHead


@ROI_HEADS_REGISTRY.register()
class FPNOIMROIHeads(OIMROIHeads, FPNPersonSearchROIHeads):
    """:class:`OIMROIHeads` on the FPN RoI features of :class:`FPNPersonSearchROIHeads`: the box
    path of detectron2's ``StandardROIHeads`` (level pooling, ``FastRCNNConvFCHead``,
    ``FastRCNNOutputLayers`` on its output) plus the OIM-trained embedding of
    ``MODEL.REID_HEAD.IN_FEATURES`` (``["box_head"]``: from the box head's feature, the detector's
    own RoI representation; ``["fpn"]``: from the pooled FPN map; or both).

    Losses and outputs are OIM's. As for the C4 OIM head, the CBGM query contexts are not computed
    (empty lists): the evaluator emulates them from the detections.
    """

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        # OIMROIHeads sizes its predictor for C4's res5; here it reads the box head's output
        ret["box_predictor"] = FastRCNNOutputLayers(cfg, ret["feature_head"].box_head.output_shape)
        return ret

    def roi_features(
        self,
        features: Dict[str, torch.Tensor],
        boxes: List[Boxes],
        head: Optional[Res5FeatureHead] = None,
    ) -> Dict[str, torch.Tensor]:
        """The FPN feature head's outputs (see :class:`~.fpn_feature_head.FPNFeatureHead`) with
        ``"res5"`` added as another name of ``"box_head"``: :meth:`OIMROIHeads.forward`
        classifies the vector named ``res5`` (C4's box feature), whose FPN counterpart is the box
        head's output.
        """
        feats = super().roi_features(features, boxes, head)
        return {**feats, "res5": feats["box_head"]}
