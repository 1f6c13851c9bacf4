"""NAE: the norm of each RoI's embedding is its detection score (Chen et al., CVPR 2020)."""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, ImageList, Instances

from .box_regressor import NormAwareBoxRegressor, box_regression_loss
from .feature_head import box_feature_shape
from .inference import Candidates, person_detections, query_contexts
from .person_search_roi_heads import PersonSearchROIHeads


@ROI_HEADS_REGISTRY.register()
class NAEROIHeads(PersonSearchROIHeads):
    """Detection and re-identification from one norm-aware embedding per RoI.

    Every sampled proposal goes through RoIAlign (res4) -> res5 -> global max pooling (C4; on an
    FPN: RoIAlign on its level -> box head); the re-ID head (``MODEL.REID_HEAD.NAME:
    NormAwareEmbeddingHead``) projects the pooled res4 and res5 vectors (FPN: ``fpn`` and
    ``box_head``) to x; ``sigmoid(BN(||x||))`` is the detection score and ``x / ||x||`` the
    identity; a class-agnostic box regressor (Linear + BN) reads the feature head's
    ``box_feature`` (the pooled res5 vector; the box head's output). There is no softmax
    classifier. Embeddings belong to the proposals (a detection carries the embedding of the
    proposal it was regressed from), as in the reference.

    Losses: ``loss_det`` (BCE of the norm logit over all sampled RoIs, foreground 1, background 0;
    ``MODEL.NAE.DET_LOSS_WEIGHT``), ``loss_box_reg`` (smooth L1 over the foreground,
    ``MODEL.NAE.BOX_REG_LOSS_WEIGHT``, 10 in the reference) and ``loss_oim`` (OIM on the unit
    direction of the foreground RoIs). The reference samples background below IoU 0.1 and ignores
    [0.1, 0.5) (``ROI_HEADS.IOU_THRESHOLDS [0.1, 0.5]``, ``IOU_LABELS [0, -1, 1]``).

    Inference: decoded boxes clipped, score > ``ROI_HEADS.SCORE_THRESH_TEST``, boxes smaller than
    ``MODEL.NAE.MIN_BOX_SIZE_TEST`` dropped, NMS ``ROI_HEADS.NMS_THRESH_TEST``, at most
    ``TEST.DETECTIONS_PER_IMAGE``; ``Instances`` with ``pred_boxes``, ``scores``, ``pred_classes``
    and ``reid_feats``. Subclasses change the detection score (:meth:`detection_scores`), its loss
    (:meth:`detection_loss`) and the regressor's input (:meth:`regression_input`).
    """

    # what the re-ID head must return for this RoI head, and the head that does
    required_reid_outputs = ("embeddings", "norm_logits")
    default_reid_head = "NormAwareEmbeddingHead"

    @configurable
    def __init__(
        self,
        *,
        box_regressor: NormAwareBoxRegressor,
        box2box_transform: Box2BoxTransform,
        smooth_l1_beta: float = 1.0,
        box_reg_loss_weight: float = 10.0,
        det_loss_weight: float = 1.0,
        test_score_thresh: float = 0.5,
        test_nms_thresh: float = 0.4,
        test_topk_per_image: int = 300,
        test_min_box_size: float = 1e-2,
        **kwargs,
    ):
        """
        Args:
            box_regressor: class-agnostic deltas from the feature head's ``box_feature``.
            box2box_transform: the RoI box coder.
            smooth_l1_beta: smooth-L1 beta of the box loss.
            box_reg_loss_weight, det_loss_weight: loss weights.
            test_score_thresh, test_nms_thresh, test_topk_per_image, test_min_box_size:
                inference post-processing (see :func:`~.inference.person_detections`).
            kwargs: see :class:`PersonSearchROIHeads`.
        """
        super().__init__(**kwargs)
        missing = [k for k in self.required_reid_outputs if k not in self.reid_head_outputs()]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs a re-ID head that returns {missing} (MODEL.REID_HEAD."
                f"NAME {type(self.reid_head).__name__} does not); use "
                f"{self.default_reid_head!r}"
            )
        self.box_regressor = box_regressor
        self.box2box_transform = box2box_transform
        self.smooth_l1_beta = smooth_l1_beta
        self.box_reg_loss_weight = box_reg_loss_weight
        self.det_loss_weight = det_loss_weight
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image
        self.test_min_box_size = test_min_box_size

    def reid_head_outputs(self) -> Tuple[str, ...]:
        """The output names the configured re-ID head declares (``outputs`` class attribute)."""
        return tuple(getattr(type(self.reid_head), "outputs", ("embeddings",)))

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        ret.update(
            box_regressor=NormAwareBoxRegressor(
                box_feature_shape(ret["feature_head"]).channels, cfg.MODEL.REID_HEAD.NORM
            ),
            box2box_transform=Box2BoxTransform(weights=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS),
            smooth_l1_beta=cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA,
            box_reg_loss_weight=cfg.MODEL.NAE.BOX_REG_LOSS_WEIGHT,
            det_loss_weight=cfg.MODEL.NAE.DET_LOSS_WEIGHT,
            test_score_thresh=cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            test_nms_thresh=cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            test_topk_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            test_min_box_size=cfg.MODEL.NAE.MIN_BOX_SIZE_TEST,
        )
        return ret

    # ---- the embedding stage (NAE's whole head; SeqNet's second stage) ----

    def regression_input(self, roi_feats: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The box regressor's input: the feature head's ``box_feature`` (R, C) (C4: the
        max-pooled res5 vector; FPN: the box head's output)."""
        return roi_feats[self.feature_head.box_feature]

    def embedding_stage(
        self, features: Dict[str, torch.Tensor], boxes: List[Boxes]
    ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """Embeddings, detection logits and box deltas of RoIs.

        Args:
            features: backbone outputs.
            boxes: per image, the RoIs (input-image coordinates).

        Returns:
            ``(reid_out, deltas)``: :meth:`reid_forward`'s outputs and (R, 4) box deltas, for the
            RoIs of all images concatenated.
        """
        roi_feats = self.roi_features(features, boxes)
        reid_out = self.reid_forward(features, boxes, roi_feats)
        return reid_out, self.box_regressor(self.regression_input(roi_feats))

    def foreground_mask(self, proposals: List[Instances]) -> torch.Tensor:
        """(R,) bool: sampled RoIs matched to a person."""
        gt_classes = torch.cat([p.gt_classes for p in proposals])
        return (gt_classes >= 0) & (gt_classes < self.num_classes)

    def detection_loss(
        self, reid_out: Dict[str, torch.Tensor], proposals: List[Instances]
    ) -> torch.Tensor:
        """Binary cross-entropy of the norm logits, mean over all sampled RoIs."""
        labels = self.foreground_mask(proposals).to(reid_out["norm_logits"].dtype)
        return F.binary_cross_entropy_with_logits(reid_out["norm_logits"], labels)

    def embedding_stage_losses(
        self, features: Dict[str, torch.Tensor], proposals: List[Instances]
    ) -> Dict[str, torch.Tensor]:
        """``loss_det``, ``loss_box_reg`` and the re-ID losses of sampled RoIs.

        Args:
            features: backbone outputs.
            proposals: sampled RoIs with their targets (``label_and_sample_proposals``).
        """
        reid_out, deltas = self.embedding_stage(features, [p.proposal_boxes for p in proposals])
        box_loss = box_regression_loss(
            self.box2box_transform, proposals, deltas, self.num_classes, self.smooth_l1_beta
        )
        losses = {
            "loss_det": self.det_loss_weight * self.detection_loss(reid_out, proposals),
            "loss_box_reg": self.box_reg_loss_weight * box_loss,
        }
        losses.update(self.reid_losses(reid_out, proposals))
        return losses

    def detection_scores(
        self, reid_out: Dict[str, torch.Tensor], counts: List[int]
    ) -> List[torch.Tensor]:
        """Per image, the (R_i,) detection scores: ``sigmoid`` of the rescaled norm."""
        return list(torch.sigmoid(reid_out["norm_logits"]).split(counts))

    def postprocess(
        self,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        feats: torch.Tensor,
        image_size: Tuple[int, int],
        nms_thresh: Optional[float] = None,
    ) -> Tuple[Instances, torch.Tensor, Candidates]:
        """One image's detections with the head's test settings (score threshold, detections per
        image, minimum box size): :func:`~.inference.person_detections`.

        Args:
            boxes: (R, 4) decoded boxes; scores: (R,); feats: (R, D) embeddings (D may be 0).
            image_size: (height, width) of the input image.
            nms_thresh: the NMS threshold (default ``ROI_HEADS.NMS_THRESH_TEST``).

        Returns:
            ``(instances, kept, candidates)`` as :func:`~.inference.person_detections`.
        """
        return person_detections(
            boxes,
            scores,
            feats,
            image_size,
            self.test_score_thresh,
            self.test_nms_thresh if nms_thresh is None else nms_thresh,
            self.test_topk_per_image,
            self.test_min_box_size,
        )

    def decode(self, deltas: torch.Tensor, boxes: List[Boxes]) -> List[torch.Tensor]:
        """Per image, (R_i, 4) boxes = ``deltas`` applied to ``boxes``."""
        if not boxes:
            return []
        pred = self.box2box_transform.apply_deltas(deltas, Boxes.cat(boxes).tensor)
        return list(pred.split([len(b) for b in boxes]))

    # ---- detectron2 interface ----

    def forward(
        self,
        images: Optional[ImageList],
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, torch.Tensor]]:
        """See :meth:`detectron2.modeling.roi_heads.ROIHeads.forward`; targets need ``gt_pids``."""
        del images
        if self.training:
            assert targets is not None, f"{type(self).__name__} needs targets in training"
            proposals = self.label_and_sample_proposals(proposals, targets)
            return [], self.embedding_stage_losses(features, proposals)
        instances, _ = self.detect(features, proposals)
        return instances, {}

    def detect(
        self, features: Dict[str, torch.Tensor], proposals: List[Instances]
    ) -> Tuple[List[Instances], List[Candidates]]:
        """Detections (and their pre-NMS candidates) of every image from its RPN proposals."""
        boxes = [p.proposal_boxes for p in proposals]
        reid_out, deltas = self.embedding_stage(features, boxes)
        counts = [len(b) for b in boxes]
        scores = self.detection_scores(reid_out, counts)
        feats = reid_out["embeddings"].split(counts)
        instances, candidates, kept = [], [], []
        for p, b, s, f in zip(proposals, self.decode(deltas, boxes), scores, feats):
            inst, keep, cand = self.postprocess(b, s, f, p.image_size)
            instances.append(inst)
            candidates.append(cand)
            kept.append(keep)
        self.attach_uncertainty(instances, kept, reid_out, counts)
        return instances, candidates

    def inference_with_queries(
        self,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        query_boxes: List[Boxes],
        context_size: int = 0,
    ):
        """Detections, query embeddings and the exact CBGM query contexts (see
        :meth:`PersonSearchROIHeads.inference_with_queries` and
        :func:`~.inference.query_context`)."""
        instances, candidates = self.detect(features, proposals)
        query_feats = self.embed_boxes(features, query_boxes)
        contexts = query_contexts(candidates, query_boxes, query_feats, context_size)
        return instances, query_feats, contexts
