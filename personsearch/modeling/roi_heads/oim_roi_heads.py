"""The OIM baseline head: a Faster R-CNN box head (C4 or FPN) plus an OIM-trained embedding."""

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import FastRCNNOutputLayers
from detectron2.structures import ImageList, Instances

from .feature_head import box_feature_shape
from .person_search_roi_heads import PersonSearchROIHeads


@ROI_HEADS_REGISTRY.register()
class OIMROIHeads(PersonSearchROIHeads):
    """Detection and re-ID from one feature-head pass per RoI (the OIM model).

    Every sampled proposal goes through RoIAlign (res4) -> res5 -> global pooling (C4; on an FPN:
    RoIAlign on its level -> box head); the feature head's ``box_feature`` (the pooled res5 vector;
    the box head's output) feeds a 2-way softmax classifier and box regressor (detectron2's
    ``FastRCNNOutputLayers``), and the re-ID head reads ``MODEL.REID_HEAD.IN_FEATURES``.
    Embeddings are taken on the proposals, so at test time each detection carries the embedding of
    the proposal it was regressed from. As CBGM query contexts are not computed (empty lists), the
    evaluator emulates them from the detections.

    Losses: ``loss_cls``, ``loss_box_reg`` (weight ``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT``) and
    ``loss_oim``. Inference returns ``Instances`` with ``pred_boxes``, ``scores`` (softmax person
    probability), ``pred_classes`` and ``reid_feats`` (R, D) L2-normalised.
    """

    @configurable
    def __init__(self, *, box_predictor: FastRCNNOutputLayers, **kwargs):
        """
        Args:
            box_predictor: classification and box regression layers on the feature head's
                ``box_feature``.
            kwargs: see :class:`PersonSearchROIHeads`.
        """
        super().__init__(**kwargs)
        self.box_predictor = box_predictor

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        ret["box_predictor"] = FastRCNNOutputLayers(cfg, box_feature_shape(ret["feature_head"]))
        return ret

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """See :meth:`detectron2.modeling.roi_heads.ROIHeads.forward`; targets need ``gt_pids``."""
        del images
        if self.training:
            assert targets is not None, "OIMROIHeads needs targets in training"
            proposals = self.label_and_sample_proposals(proposals, targets)
        boxes = [p.proposal_boxes for p in proposals]
        feats = self.roi_features(features, boxes)
        predictions = self.box_predictor(feats[self.feature_head.box_feature])
        reid_out = self.reid_forward(features, boxes, feats)
        if self.training:
            losses = self.box_predictor.losses(predictions, proposals)
            losses.update(self.reid_losses(reid_out, proposals))
            return [], losses
        embeddings = reid_out["embeddings"]
        instances, kept = self.box_predictor.inference(predictions, proposals)
        counts = [len(p) for p in proposals]
        for inst, keep, emb in zip(instances, kept, embeddings.split(counts)):
            inst.reid_feats = emb[keep]
        self.attach_uncertainty(instances, kept, reid_out, counts)
        return instances, {}
