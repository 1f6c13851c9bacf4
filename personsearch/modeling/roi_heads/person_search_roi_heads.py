"""Base class of the person-search RoI heads, on C4 (RoIAlign on res4, res5 per RoI) or on an FPN
(RoIAlign on the RoI's level, detectron2's box head per RoI)."""

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import ROIHeads
from detectron2.structures import Boxes, Instances
from detectron2.structures.boxes import matched_pairwise_iou
from torch import nn

from personsearch.layers import build_roi_pooler

from ..losses.oim import OIMLoss
from ..reid_heads.registry import build_reid_head
from ..ugas import build_ugas
from .feature_head import build_roi_feature_head

# pid given to sampled RoIs that must not enter the re-ID loss (background, ignored)
NOT_A_PERSON = -2


class PersonSearchROIHeads(ROIHeads):
    """Shared parts of every person-search head; subclasses implement ``forward``.

    Holds the RoI pooler (``MODEL.ROI_HEADS.IN_FEATURES``: res4 for C4, the FPN levels for FPN),
    the RoI feature head (``MODEL.ROI_FEATURE_HEAD.NAME``: res5 or the FPN box head, see
    :data:`~.feature_head.ROI_FEATURE_HEAD_REGISTRY`), the re-ID embedding head
    (``MODEL.REID_HEAD``) and the OIM loss (``MODEL.OIM``), and provides:

    * :meth:`roi_features`: pooled RoI features of any boxes;
    * :meth:`reid_forward`: the embedding path (the re-ID head, extended by UGAS's modules when
      ``MODEL.UGAS`` enables any; with none enabled it is the re-ID head alone);
    * :meth:`reid_targets`: the OIM identity of each sampled RoI (foreground RoIs carry the
      ``gt_pids`` of their matched person, -1 if unlabeled; other RoIs get ``NOT_A_PERSON``);
    * :meth:`reid_losses`: the OIM loss (plus UGAS's losses) of sampled RoIs;
    * :meth:`embed_boxes`: L2-normalised embeddings of given boxes (query boxes, or ground-truth
      boxes in the "GT boxes as detector" evaluation), from the same backbone features;
    * :meth:`inference_with_queries`: an image's detections and its query boxes' embeddings (and,
      for heads that can, the exact CBGM query context) from one backbone pass.

    Subclasses (the methods) read the detector's RoI feature under the feature head's
    ``box_feature`` name and size what reads it by ``output_channels``, so every method runs on
    either feature head without a subclass per detector.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        pooler: ROIPooler,
        feature_head: nn.Module,
        reid_head: nn.Module,
        reid_loss: OIMLoss,
        ugas: Optional[nn.Module] = None,
        **kwargs,
    ):
        """
        Args:
            in_features: the backbone feature maps the RoIs are pooled from (res4; or FPN levels).
            pooler: RoIAlign pooler for those maps.
            feature_head: the RoI feature head (res5 + global pooling, or the FPN box head),
                applied to every pooled RoI.
            reid_head: maps the pooled features to L2-normalised embeddings.
            reid_loss: OIM loss with its memories (on the final embedding).
            ugas: the UGAS extension of the embedding path (:mod:`personsearch.modeling.ugas`), or
                None for the plain re-ID head.
            kwargs: forwarded to :class:`detectron2.modeling.roi_heads.ROIHeads` (sampling,
                matcher, number of classes).
        """
        super().__init__(**kwargs)
        self.in_features = in_features
        self.pooler = pooler
        self.feature_head = feature_head
        self.reid_head = reid_head
        self.reid_loss = reid_loss
        self.ugas = ugas

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg)
        ret.update(cls._init_feature_head(cfg, input_shape))
        feature_head = ret["feature_head"]
        reid_head = build_reid_head(cfg, feature_head.output_channels)
        ugas = build_ugas(cfg, input_shape, feature_head, reid_head)
        embed_dim = ugas.embed_dim if ugas is not None else reid_head.embed_dim
        ret.update(reid_head=reid_head, ugas=ugas, reid_loss=OIMLoss(cfg, embed_dim))
        return ret

    @classmethod
    def _init_feature_head(cls, cfg, input_shape: Dict[str, ShapeSpec]) -> Dict:
        """The RoI pooler and the RoI feature head (``MODEL.ROI_FEATURE_HEAD.NAME``: C4's res5
        or the FPN box head), as detectron2's ``StandardROIHeads._init_box_head``.

        Returns:
            ``{"in_features", "pooler", "feature_head"}`` (``__init__`` arguments).
        """
        feature_head = build_roi_feature_head(cfg, input_shape)  # checks IN_FEATURES
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        box_cfg = cfg.MODEL.ROI_BOX_HEAD
        pooler = build_roi_pooler(
            box_cfg.POOLER_RESOLUTION,
            tuple(1.0 / input_shape[f].stride for f in in_features),
            box_cfg.POOLER_SAMPLING_RATIO,
            box_cfg.POOLER_TYPE,
            box_cfg.ROI_ALIGN_CPU,
        )
        return {"in_features": in_features, "pooler": pooler, "feature_head": feature_head}

    def roi_features(
        self,
        features: Dict[str, torch.Tensor],
        boxes: List[Boxes],
        head: Optional[nn.Module] = None,
    ) -> Dict[str, torch.Tensor]:
        """Pool RoIs and run a RoI feature head.

        Args:
            features: backbone outputs, ``{name: (N, C, H, W)}``.
            boxes: per image, the RoIs in input-image coordinates.
            head: the feature head to run (default ``self.feature_head``, the one the embedding is
                computed with, whose input UGAS's UG may perturb in training; SeqNet's first stage
                passes its own).

        Returns:
            The feature head's outputs, R = total RoIs, images concatenated in order. C4:
            ``{"res4": (R, C4), "res5": (R, C5), "res4_map": (R, C4, S, S), "res5_map": (R, C5,
            s, s)}``; FPN: ``{"box_head": (R, C_box), "fpn": (R, C), "fpn_map": (R, C, S, S)}``.
        """
        x = self.pooler([features[f] for f in self.in_features], boxes)
        if head is None and self.ugas is not None:
            x = self.ugas.perturb(x)  # UG's feature-statistics perturbation (training only)
        return (head or self.feature_head)(x)

    def reid_forward(
        self,
        features: Dict[str, torch.Tensor],
        boxes: List[Boxes],
        roi_feats: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """The embedding path of RoIs.

        Args:
            features: backbone outputs (UGAS's shallow fusion pools its own levels from them).
            boxes: per image, the RoIs ``roi_feats`` were pooled from.
            roi_feats: the feature head's outputs for those RoIs.

        Returns:
            The re-ID head's outputs (at least ``"embeddings"``: (R, D) L2-normalised, the
            retrieval embedding); with UGAS, its fused embedding and per-branch outputs.
        """
        out = self.reid_head(roi_feats)
        if self.ugas is not None:
            out = self.ugas(features, boxes, roi_feats, out, self.reid_head)
        return out

    def reid_targets(self, proposals: List[Instances]) -> torch.Tensor:
        """OIM identities of the sampled proposals, concatenated over images.

        Returns:
            (R,) int64: the matched person's id (>= 0 labeled, -1 unlabeled) for foreground
            proposals, ``NOT_A_PERSON`` for background ones.
        """
        out = []
        for p in proposals:
            fg = (p.gt_classes >= 0) & (p.gt_classes < self.num_classes)
            if p.has("gt_pids"):
                pids = p.gt_pids
            elif fg.any():
                raise KeyError(
                    "Training targets have boxes but no 'gt_pids'; person-search models need the "
                    "dataset mapper to attach person ids (PersonSearchDatasetMapper)"
                )
            else:  # an image without any person: every proposal is background
                pids = torch.full_like(p.gt_classes, NOT_A_PERSON)
            out.append(torch.where(fg, pids, torch.full_like(pids, NOT_A_PERSON)))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    def reid_losses(
        self, reid_out: Dict[str, torch.Tensor], proposals: List[Instances]
    ) -> Dict[str, torch.Tensor]:
        """OIM loss over the foreground proposals (and UGAS's losses when enabled).

        Args:
            reid_out: :meth:`reid_forward` of the sampled proposals (images concatenated). OIM is
                trained on ``"oim_features"`` when the head provides them (NAE+: the attention-
                pooled, un-normalised embedding), else on ``"embeddings"``.
            proposals: the sampled proposals with ``gt_classes`` (and ``gt_pids``).
        """
        pids = self.reid_targets(proposals)
        person = pids != NOT_A_PERSON
        if self.ugas is not None:
            iou = self.reid_box_quality(proposals)
            return self.ugas.losses(reid_out, pids, person, self.reid_loss, iou)
        feats = reid_out.get("oim_features", reid_out["embeddings"])
        return {"loss_oim": self.reid_loss(feats[person], pids[person])}

    @staticmethod
    def reid_box_quality(proposals: List[Instances]) -> Optional[torch.Tensor]:
        """IoU of every sampled proposal with the ground-truth box it was matched to (UG's box
        quality), concatenated over images; None when any image has no ground truth.

        Returns:
            (R,) float, or None.
        """
        if not proposals or not all(p.has("gt_boxes") for p in proposals):
            return None
        return torch.cat([matched_pairwise_iou(p.proposal_boxes, p.gt_boxes) for p in proposals])

    def attach_uncertainty(
        self, instances: List[Instances], kept: List[torch.Tensor], reid_out: Dict, counts
    ) -> None:
        """Give each image's detections their ``uncertainty`` (R_i,) when the embedding path
        outputs one (UGAS's ``OUTPUT_VARIANCE``).

        Args:
            instances: per image, the detections.
            kept: per image, the indices of the detections among the image's RoIs.
            reid_out: :meth:`reid_forward` of all images' RoIs.
            counts: RoIs per image.
        """
        if "uncertainty" not in reid_out:
            return
        for inst, keep, u in zip(instances, kept, reid_out["uncertainty"].split(list(counts))):
            inst.uncertainty = u[keep]

    @property
    def has_uncertainty(self) -> bool:
        """Whether detections and embedded boxes carry an ``uncertainty``."""
        return self.ugas is not None and self.ugas.has_variance

    @property
    def embed_dim(self) -> int:
        """D of the embeddings the head outputs: UGAS's fused vector when UGAS is on, else the
        re-ID head's."""
        return int(self.ugas.embed_dim if self.ugas is not None else self.reid_head.embed_dim)

    def embed_boxes(
        self, features: Dict[str, torch.Tensor], boxes: List[Boxes], with_uncertainty: bool = False
    ):
        """Embeddings of given boxes (never score-weighted).

        Args:
            features: backbone outputs.
            boxes: per image, boxes in input-image coordinates (may be empty).
            with_uncertainty: also return each box's uncertainty (needs a model that outputs
                one: ``MODEL.UGAS.UG.OUTPUT_VARIANCE``).

        Returns:
            Per image, (len(boxes_i), D) L2-normalised embeddings; with ``with_uncertainty``,
            ``(embeddings, uncertainties)`` with per image (len(boxes_i),) uncertainties.
        """
        if with_uncertainty and not self.has_uncertainty:
            raise ValueError(
                "this model outputs no per-box uncertainty; it needs a Gaussian UGAS UG with "
                "MODEL.UGAS.UG.OUTPUT_VARIANCE True"
            )
        counts = [len(b) for b in boxes]
        if sum(counts) == 0:
            device = next(iter(features.values())).device
            feats = [torch.zeros((0, self.embed_dim), device=device) for _ in boxes]
            return (
                (feats, [torch.zeros(0, device=device) for _ in boxes])
                if with_uncertainty
                else feats
            )
        out = self.reid_forward(features, boxes, self.roi_features(features, boxes))
        feats = list(out["embeddings"].split(counts))
        return (feats, list(out["uncertainty"].split(counts))) if with_uncertainty else feats

    def inference_with_queries(
        self,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        query_boxes: List[Boxes],
        context_size: int = 0,
    ) -> Tuple[List[Instances], List[torch.Tensor], List[List[torch.Tensor]]]:
        """Detections and query embeddings of a batch of images (inference).

        Args:
            features: backbone outputs.
            proposals: RPN proposals per image.
            query_boxes: per image, query boxes in input-image coordinates (may be empty).
            context_size: number of CBGM query-context entries to return per query (0: none).

        Returns:
            ``(instances, query_feats, contexts)``: per image the detections (as ``forward``),
            the (Q_i, D) query embeddings, and per query its (K, D) context with the query first.
            This base implementation returns no contexts (empty lists): the evaluator then
            emulates them from the detections; heads that know their pre-NMS candidates override
            it to give the reference's context exactly.
        """
        instances, _ = self.forward(None, features, proposals)
        query_feats = self.embed_boxes(features, query_boxes)
        return instances, query_feats, [[] for _ in instances]
