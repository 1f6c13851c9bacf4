"""torchvision's anchor rounding, for models converted from torchvision-based code."""

import torch
from detectron2.modeling.anchor_generator import ANCHOR_GENERATOR_REGISTRY, DefaultAnchorGenerator


@ANCHOR_GENERATOR_REGISTRY.register()
class RoundedAnchorGenerator(DefaultAnchorGenerator):
    """detectron2's ``DefaultAnchorGenerator`` with every cell anchor rounded to integer
    coordinates, as torchvision's ``AnchorGenerator`` (used by the official SeqNet and NAE code)
    does: e.g. the 32 px anchor of aspect ratio 0.5 is [-23, -11, 23, 11] instead of
    [-22.63, -11.31, 22.63, 11.31]. Anchor order, offsets and strides stay detectron2's (the
    checkpoint converter permutes the RPN channels from torchvision's order). Select it with
    ``MODEL.ANCHOR_GENERATOR.NAME RoundedAnchorGenerator`` (configs/official/*)."""

    def generate_cell_anchors(
        self, sizes=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1, 2)
    ) -> torch.Tensor:
        """The (A, 4) XYXY cell anchors, rounded (half to even, as ``torch.round``)."""
        return super().generate_cell_anchors(sizes, aspect_ratios).round()
