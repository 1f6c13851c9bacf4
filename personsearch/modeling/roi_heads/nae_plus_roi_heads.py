"""NAE+: pixel-wise norm-aware embedding (Chen et al., CVPR 2020, the pixel-wise extension)."""

from typing import Dict, List

import torch
import torch.nn.functional as F
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.structures import Instances

from .nae_roi_heads import NAEROIHeads
from .pixel_labels import cell_coverage


@ROI_HEADS_REGISTRY.register()
class NAEPlusROIHeads(NAEROIHeads):
    """NAE with per-cell norms (``MODEL.REID_HEAD.NAME: PixelNormAwareEmbeddingHead``,
    ``IN_FEATURES [res4_map, res5_map]``).

    Differences from :class:`NAEROIHeads`, each following the reference:

    * detection loss: per-cell binary cross-entropy of the pixel logits against soft labels, the
      fraction of each cell covered by the matched ground-truth box (:func:`.cell_coverage`),
      averaged over every cell of every sampled RoI; background RoIs have all-zero labels (the
      reference matches them to ground truth #0 of the image, see docs/METHODS.md);
    * OIM is trained on the attention-pooled embedding without re-normalisation;
    * the box regressor reads the *average*-pooled res5 map (the feature head's ``box_map``; on
      an FPN, which has none, the box head's output);
    * test score: the mean attention of a RoI divided by the largest mean attention among the
      image's proposals (the best proposal scores 1.0), then the same threshold and NMS.
    """

    required_reid_outputs = ("embeddings", "pixel_logits", "scores")
    default_reid_head = "PixelNormAwareEmbeddingHead"

    def regression_input(self, roi_feats: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The average-pooled ``box_map`` (R, C5) (C4: res5's output); the ``box_feature`` when the
        feature head has no box map (FPN: the FC output of the box head)."""
        box_map = self.feature_head.box_map
        if box_map is None:
            return roi_feats[self.feature_head.box_feature]
        return roi_feats[box_map].mean(dim=(2, 3))

    def pixel_labels(self, proposals: List[Instances], size) -> torch.Tensor:
        """(R, 1, H, W) soft labels of the sampled RoIs: coverage by the matched person for
        foreground RoIs, 0 for background ones."""
        fg = self.foreground_mask(proposals)
        rois = torch.cat([p.proposal_boxes.tensor for p in proposals])
        gt = torch.cat(
            [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals]
        )
        labels = torch.zeros((len(rois), 1) + tuple(size), device=rois.device)
        if fg.any():
            labels[fg] = cell_coverage(rois[fg], gt[fg], size)
        return labels

    def detection_loss(
        self, reid_out: Dict[str, torch.Tensor], proposals: List[Instances]
    ) -> torch.Tensor:
        """Pixel-wise binary cross-entropy, mean over all cells of all sampled RoIs."""
        logits = reid_out["pixel_logits"]
        labels = self.pixel_labels(proposals, logits.shape[-2:]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def detection_scores(
        self, reid_out: Dict[str, torch.Tensor], counts: List[int]
    ) -> List[torch.Tensor]:
        """Per image, mean attention / its maximum over the image's RoIs."""
        out = []
        for s in reid_out["scores"].split(counts):
            out.append(s / s.max().clamp(min=1e-12) if len(s) else s)
        return out
