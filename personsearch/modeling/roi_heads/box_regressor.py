"""The NAE-family box regressor ("BN neck") and its loss."""

from typing import List

import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Instances
from fvcore.nn import smooth_l1_loss
from torch import nn

from personsearch.layers import build_norm

from ..reid_heads.norm_aware import init_projection


class NormAwareBoxRegressor(nn.Module):
    """Class-agnostic box deltas ``BN1d(W f + b)`` from a pooled res5 vector.

    The reference (NAE ``CoordRegressor``, SeqNet ``BBoxRegressor``) predicts 8 outputs (background
    and person) with a BatchNorm1d(8) after the linear layer and uses only the person rows;
    BatchNorm
    treats every channel on its own, so keeping just the 4 person rows is the same function
    (``tools/convert_checkpoint.py`` takes rows 4:8 of the official weights). Initialised as the
    reference: N(0, 0.01) on the linear and the BN weights, zero biases.
    """

    # ``norm(linear(x))``: inference folds the BatchNorm into the linear layer (fold_batchnorm)
    FOLDABLE_PAIRS = (("linear", "norm"),)

    def __init__(self, in_channels: int, norm: str = "BN"):
        """
        Args:
            in_channels: channels of the pooled res5 vector.
            norm: "BN" or "SyncBN".
        """
        super().__init__()
        self.linear = nn.Linear(in_channels, 4)
        self.norm = build_norm(norm, 4, 1, "MODEL.REID_HEAD.NORM")
        init_projection(self.linear, self.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: (R, C) pooled RoI features.

        Returns:
            (R, 4) deltas (dx, dy, dw, dh) in the Box2BoxTransform parametrisation.
        """
        return self.norm(self.linear(x))


def box_regression_loss(
    box2box_transform: Box2BoxTransform,
    proposals: List[Instances],
    deltas: torch.Tensor,
    num_classes: int,
    smooth_l1_beta: float,
) -> torch.Tensor:
    """Smooth-L1 loss of class-agnostic deltas over the foreground RoIs, summed and divided by the
    number of sampled RoIs (the reference and detectron2's normalisation).

    Args:
        box2box_transform: the RoI box coder (weights 10, 10, 5, 5).
        proposals: sampled RoIs with ``proposal_boxes``, ``gt_classes`` (and ``gt_boxes``).
        deltas: (R, 4) predictions for the concatenated RoIs.
        num_classes: foreground classes (background = ``num_classes``).
        smooth_l1_beta: beta of the smooth-L1 loss (1.0 in the reference; 0 = L1).
    """
    if not proposals:
        return deltas.sum() * 0.0
    gt_classes = torch.cat([p.gt_classes for p in proposals])
    proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
    gt_boxes = torch.cat(
        [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals]
    )
    fg = torch.nonzero((gt_classes >= 0) & (gt_classes < num_classes)).squeeze(1)
    targets = box2box_transform.get_deltas(proposal_boxes[fg], gt_boxes[fg])
    loss = smooth_l1_loss(deltas[fg], targets, beta=smooth_l1_beta, reduction="sum")
    return loss / max(gt_classes.numel(), 1.0)
