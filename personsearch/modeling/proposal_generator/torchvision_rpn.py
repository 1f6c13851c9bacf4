"""detectron2's RPN with torchvision's proposal filtering, for models converted from
torchvision-based code (the official SeqNet and NAE)."""

from typing import List, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import batched_nms, cat
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.structures import Boxes, Instances

NMS_SCORES = ("probabilities", "logits")


@PROPOSAL_GENERATOR_REGISTRY.register()
class TorchvisionRPN(RPN):
    """detectron2's ``RPN`` (same head, anchors, losses) whose test-time proposal selection
    follows torchvision's ``RegionProposalNetwork.filter_proposals`` step by step: the
    ``pre_nms_topk`` best logits per level; per image: clip to the image, drop boxes with a side
    below ``MODEL.TORCHVISION_RPN.MIN_SIZE`` (1e-3; detectron2 drops only empty boxes), NMS over
    levels on ``sigmoid(logit)`` (torchvision >= 0.8; with ``NMS_SCORES logits`` on the logits
    as torchvision 0.4 did; equal scores rank differently once the sigmoid saturates in float32),
    keep ``post_nms_topk``. Proposals keep their logits as ``objectness_logits``."""

    @configurable
    def __init__(self, *, nms_scores: str = "probabilities", tv_min_size: float = 1e-3, **kwargs):
        """
        Args:
            nms_scores: "probabilities" or "logits" (see the class docstring).
            tv_min_size: minimum proposal side in input pixels.
            kwargs: see detectron2's ``RPN``.
        """
        super().__init__(**kwargs)
        if nms_scores not in NMS_SCORES:
            raise ValueError(
                f"MODEL.TORCHVISION_RPN.NMS_SCORES must be one of {NMS_SCORES}, got {nms_scores!r}"
            )
        self.nms_scores = nms_scores
        self.tv_min_size = tv_min_size

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["nms_scores"] = cfg.MODEL.TORCHVISION_RPN.NMS_SCORES
        ret["tv_min_size"] = cfg.MODEL.TORCHVISION_RPN.MIN_SIZE
        return ret

    def predict_proposals(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[torch.Tensor],
        pred_anchor_deltas: List[torch.Tensor],
        image_sizes: List[Tuple[int, int]],
    ) -> List[Instances]:
        with torch.no_grad():
            proposals = self._decode_proposals(anchors, pred_anchor_deltas)
            pre, post = self.pre_nms_topk[self.training], self.post_nms_topk[self.training]
            boxes_l, logits_l, levels_l = [], [], []
            for level, (p, logit) in enumerate(zip(proposals, pred_objectness_logits)):
                k = min(pre, logit.shape[1])
                top, idx = logit.topk(k, dim=1)
                boxes_l.append(torch.gather(p, 1, idx[..., None].expand(-1, -1, 4)))
                logits_l.append(top)
                levels_l.append(torch.full((k,), level, dtype=torch.int64, device=top.device))
            all_boxes, all_logits, levels = cat(boxes_l, 1), cat(logits_l, 1), cat(levels_l, 0)
            results = []
            for n, image_size in enumerate(image_sizes):
                boxes = Boxes(all_boxes[n].clone())
                boxes.clip(image_size)
                b, logit = boxes.tensor, all_logits[n]
                w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
                keep = torch.nonzero((w >= self.tv_min_size) & (h >= self.tv_min_size)).squeeze(1)
                b, logit, lvl = b[keep], logit[keep], levels[keep]
                scores = torch.sigmoid(logit) if self.nms_scores == "probabilities" else logit
                keep = batched_nms(b, scores, lvl, self.nms_thresh)[:post]
                res = Instances(image_size)
                res.proposal_boxes = Boxes(b[keep])
                res.objectness_logits = logit[keep]
                results.append(res)
            return results
