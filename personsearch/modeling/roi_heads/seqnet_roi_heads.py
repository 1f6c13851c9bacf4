"""SeqNet: a Faster R-CNN head refines the boxes, an NAE head embeds the refined boxes (Li & Miao,
AAAI 2021)."""

import copy
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import FastRCNNOutputLayers
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from .feature_head import box_feature_shape
from .inference import Candidates
from .lazy_builders import seqnet_stage1_predictor
from .nae_roi_heads import NAEROIHeads

SCORES = ("stage1", "stage2")


@ROI_HEADS_REGISTRY.register()
class SeqNetROIHeads(NAEROIHeads):
    """Two sequential res5 heads with separate weights.

    * **Stage 1** (``box_feature_head`` + ``box_predictor``): RoIAlign -> res5 copy A -> max pool ->
      detectron2's ``FastRCNNOutputLayers`` (2-way softmax, class-specific regression) on the RPN
      proposals. Losses ``loss_stage1_cls`` (``MODEL.SEQNET.STAGE1_CLS_LOSS_WEIGHT``) and
      ``loss_stage1_box_reg`` (``MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT``, 10 in the reference).
    * **Stage 2** (everything :class:`NAEROIHeads` has: ``feature_head`` = res5 copy B, the NAE
      re-ID head and box regressor, OIM): in training it runs on the stage-1 boxes of all sampled
      proposals, decoded, clipped and detached, which are matched and sampled again against the
      ground truth (ground truth appended again, same thresholds and batch size); losses
      ``loss_det``, ``loss_box_reg`` (``MODEL.NAE.BOX_REG_LOSS_WEIGHT``, 1 in the reference) and
      ``loss_oim``.
    * **Inference**: stage 1 gives boxes and scores (softmax > ``ROI_HEADS.SCORE_THRESH_TEST``,
      NMS ``ROI_HEADS.NMS_THRESH_TEST`` 0.4, ``TEST.DETECTIONS_PER_IMAGE``); stage 2 refines those
      boxes and embeds them (the embedding is of the stage-1 box); the final score is the stage-1
      score (``MODEL.SEQNET.SCORE stage1``, the "first classification score", also the CWS weight);
      then NMS ``MODEL.SEQNET.NMS_THRESH_TEST`` (0.5). Query boxes are embedded by stage 2.

    Both res5 copies are built alike and load the same ImageNet res5 weights (the checkpointer gives
    a shared pretrained key to every copy); they share no parameters. On an FPN
    (``MODEL.ROI_FEATURE_HEAD.NAME: FPNFeatureHead``) the two copies are of the FPN box head, and
    stage 1 reads its ``box_feature`` (the box head's output) where C4 reads the pooled res5.
    """

    @configurable
    def __init__(
        self,
        *,
        box_feature_head: nn.Module,
        box_predictor: FastRCNNOutputLayers,
        final_nms_thresh: float = 0.5,
        score: str = "stage1",
        **kwargs,
    ):
        """
        Args:
            box_feature_head: stage 1's feature head (res5 copy A; on an FPN, box head copy A).
            box_predictor: stage 1's classifier and class-specific box regressor.
            final_nms_thresh: NMS threshold of the refined boxes at test time.
            score: "stage1" (reference) or "stage2" detection scores.
            kwargs: see :class:`NAEROIHeads` (stage 2).
        """
        super().__init__(**kwargs)
        if score not in SCORES:
            raise ValueError(f"MODEL.SEQNET.SCORE must be one of {SCORES}, got {score!r}")
        if box_feature_head is self.feature_head:
            raise ValueError("SeqNet's two stages need separate RoI feature heads")
        self.box_feature_head = box_feature_head
        self.box_predictor = box_predictor
        self.final_nms_thresh = final_nms_thresh
        self.score = score

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        # res5 copy A: built like copy B (a deep copy starts from the same random weights too,
        # as the reference's deepcopy of the ImageNet res5)
        ret["box_feature_head"] = copy.deepcopy(ret["feature_head"])
        args = FastRCNNOutputLayers.from_config(cfg, box_feature_shape(ret["feature_head"]))
        args["loss_weight"] = {
            "loss_cls": cfg.MODEL.SEQNET.STAGE1_CLS_LOSS_WEIGHT,
            "loss_box_reg": cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT,
        }
        ret.update(
            box_predictor=seqnet_stage1_predictor(**args),
            final_nms_thresh=cfg.MODEL.SEQNET.NMS_THRESH_TEST,
            score=cfg.MODEL.SEQNET.SCORE,
        )
        return ret

    def stage1(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """Stage-1 predictions ``(class logits (R, 2), deltas (R, 4))`` of the proposals."""
        boxes = [p.proposal_boxes for p in proposals]
        feats = self.roi_features(features, boxes, head=self.box_feature_head)
        return self.box_predictor(feats[self.box_feature_head.box_feature])

    def forward(
        self,
        images: Optional[ImageList],
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """See :meth:`detectron2.modeling.roi_heads.ROIHeads.forward`; targets need ``gt_pids``."""
        del images
        if not self.training:
            instances, _ = self.detect(features, proposals)
            return instances, {}
        assert targets is not None, "SeqNetROIHeads needs targets in training"
        proposals = self.label_and_sample_proposals(proposals, targets)
        predictions = self.stage1(features, proposals)
        losses = {
            f"loss_stage1_{k[len('loss_'):]}": v
            for k, v in self.box_predictor.losses(predictions, proposals).items()
        }
        refined = self.box_predictor.predict_boxes(predictions, proposals)
        stage2 = []
        for p, b in zip(proposals, refined):
            boxes = Boxes(b.detach())
            boxes.clip(p.image_size)
            # objectness is unused here; detectron2's ground-truth appending expects the field
            logits = torch.zeros(len(boxes), device=b.device)
            stage2.append(Instances(p.image_size, proposal_boxes=boxes, objectness_logits=logits))
        stage2 = self.label_and_sample_proposals(stage2, targets)
        losses.update(self.embedding_stage_losses(features, stage2))
        return [], losses

    def detect(
        self, features: Dict[str, torch.Tensor], proposals: List[Instances]
    ) -> Tuple[List[Instances], List[Candidates]]:
        """Stage 1 on the proposals, then stage 2 on its detections (see the class docstring)."""
        _, instances, candidates = self.detect_stages(features, proposals)
        return instances, candidates

    def detect_stages(
        self, features: Dict[str, torch.Tensor], proposals: List[Instances]
    ) -> Tuple[List[Instances], List[Instances], List[Candidates]]:
        """:meth:`detect` that also returns stage 1's detections (``pred_boxes``, ``scores``, no
        embeddings), for analysis: ``(stage1, final, candidates)``."""
        predictions = self.stage1(features, proposals)
        probs = self.box_predictor.predict_probs(predictions, proposals)
        boxes = self.box_predictor.predict_boxes(predictions, proposals)
        first = []
        for p, s, b in zip(proposals, probs, boxes):
            no_feats = b.new_zeros((len(b), 0))
            inst, _, _ = self.postprocess(b, s[:, 0], no_feats, p.image_size)
            first.append(inst)
        stage1_boxes = [inst.pred_boxes for inst in first]
        reid_out, deltas = self.embedding_stage(features, stage1_boxes)
        counts = [len(b) for b in stage1_boxes]
        if self.score == "stage1":
            scores = [inst.scores for inst in first]
        else:
            scores = self.detection_scores(reid_out, counts)
        feats = reid_out["embeddings"].split(counts)
        instances, candidates, kept = [], [], []
        for inst, b, s, f in zip(first, self.decode(deltas, stage1_boxes), scores, feats):
            final, keep, cand = self.postprocess(b, s, f, inst.image_size, self.final_nms_thresh)
            instances.append(final)
            candidates.append(cand)
            kept.append(keep)
        self.attach_uncertainty(instances, kept, reid_out, counts)
        return first, instances, candidates
