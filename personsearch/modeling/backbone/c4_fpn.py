"""A C4 backbone that also outputs FPN levels, for UGAS's shallow fusion module (SFM).

The C4 model keeps its single-map RPN and RoI head on ``res4``; SFM pools the shallow FPN levels
``p2``/``p3`` (``MODEL.UGAS.SFM.IN_FEATURES``), which carry res4's semantics through FPN's
top-down path. detectron2's ``FPN.forward`` runs its bottom-up network itself, so an ``FPN``
around the body would compute the body a second time for the C4 outputs. Here the body runs once:
the ``FPN`` is built on :class:`PrecomputedFeatures`, a parameter-free stand-in whose forward
returns the feature dict it is given, and :class:`C4FPNBackbone` feeds it the body's outputs.
detectron2's ``FPN`` code (its top-down path, initialisation and names) is used unchanged.
"""

from typing import Dict, List

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.backbone.fpn import FPN
from torch import nn

from .fpn import check_fpn_in_features
from .resnet import build_person_search_resnet_backbone


class PrecomputedFeatures(Backbone):
    """The bottom-up "network" of an ``FPN`` whose inputs are already computed: ``forward``
    returns the dict of feature maps it receives. Holds only their shapes (no parameters)."""

    def __init__(self, shapes: Dict[str, ShapeSpec]):
        """
        Args:
            shapes: name -> shape of the features that will be passed in.
        """
        super().__init__()
        self._shapes = dict(shapes)

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return features

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return dict(self._shapes)


def keep_fpn_levels(fpn: FPN, keep: List[str]) -> None:
    """Remove the 3x3 output convolutions of the FPN levels not in ``keep`` (in place).

    In detectron2's FPN a level's output conv feeds only that level (the top-down path adds the
    lateral outputs), so a level nothing reads would leave a convolution without gradient, which
    distributed training rejects. Its conv is replaced by a parameter-free identity (the level is
    then computed for free and not returned).

    Args:
        fpn: a detectron2 ``FPN`` without top block.
        keep: the level names (``"p2"``, ...) to keep.
    """
    # fpn.output_convs is in top-down order: entry j belongs to the j-th level from the top
    for j, name in enumerate(reversed(list(fpn.output_shape()))):
        if name in keep:
            continue
        fpn.output_convs[j] = nn.Identity()
        delattr(fpn, f"fpn_output{name[1:]}")


class C4FPNBackbone(Backbone):
    """The ResNet body's outputs plus FPN levels computed from them, the body run once.

    Parameters are ``bottom_up.*`` (the body, detectron2's ResNet names) and ``fpn.fpn_lateral*``
    / ``fpn.fpn_output*``.
    """

    def __init__(self, bottom_up: Backbone, fpn: FPN, fpn_out_features: List[str]):
        """
        Args:
            bottom_up: the ResNet body; all its outputs are returned.
            fpn: a detectron2 ``FPN`` whose bottom-up network is :class:`PrecomputedFeatures`
                with the body's output shapes.
            fpn_out_features: the FPN levels to return besides the body's outputs.
        """
        super().__init__()
        if not isinstance(fpn.bottom_up, PrecomputedFeatures):
            raise TypeError("C4FPNBackbone's FPN must be built on PrecomputedFeatures")
        self.bottom_up = bottom_up
        self.fpn = fpn
        self.fpn_out_features = list(fpn_out_features)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: (N, 3, H, W) normalised images, H and W multiples of :attr:`size_divisibility`.

        Returns:
            The body's outputs (e.g. ``{"res2", "res3", "res4"}``, (N, C_k, H/s_k, W/s_k)) and the
            selected FPN levels (e.g. ``{"p2": (N, C, H/4, W/4), "p3": (N, C, H/8, W/8)}``).
        """
        features = self.bottom_up(x)
        levels = self.fpn(features)
        out = dict(features)
        out.update({name: levels[name] for name in self.fpn_out_features})
        return out

    def output_shape(self) -> Dict[str, ShapeSpec]:
        shapes = dict(self.bottom_up.output_shape())
        fpn_shapes = self.fpn.output_shape()
        shapes.update({name: fpn_shapes[name] for name in self.fpn_out_features})
        return shapes

    @property
    def size_divisibility(self) -> int:
        # FPN's top-down 2x upsampling needs sizes divisible by its coarsest input stride
        return max(self.bottom_up.size_divisibility, self.fpn.size_divisibility)


@BACKBONE_REGISTRY.register()
def build_person_search_resnet_c4_fpn_backbone(cfg, input_shape: ShapeSpec) -> C4FPNBackbone:
    """The C4 body (``MODEL.RESNETS.*``: outputs ``OUT_FEATURES``, e.g. res2, res3, res4) plus an
    FPN on ``MODEL.FPN.IN_FEATURES`` (e.g. res2, res3, res4; ``OUT_CHANNELS``, ``NORM``,
    ``FUSE_TYPE``), returning the levels ``MODEL.FPN.C4_FPN_OUT_FEATURES`` (e.g. p2, p3) too.

    Args:
        cfg: the config.
        input_shape: the image input shape (3 channels).

    Returns:
        A :class:`C4FPNBackbone`; the RPN and the C4 RoI head read ``res4``, SFM reads p2/p3.
    """
    bottom_up = build_person_search_resnet_backbone(cfg, input_shape)
    shapes = bottom_up.output_shape()
    in_features = check_fpn_in_features(cfg, shapes)
    fpn = FPN(
        bottom_up=PrecomputedFeatures(shapes),
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=None,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
    keep = list(cfg.MODEL.FPN.C4_FPN_OUT_FEATURES)
    available = list(fpn.output_shape())
    unknown = [name for name in keep if name not in available]
    if not keep or unknown:
        raise ValueError(
            f"MODEL.FPN.C4_FPN_OUT_FEATURES {keep}: {unknown or 'empty'} not among the levels "
            f"{available} of the FPN on MODEL.FPN.IN_FEATURES {in_features}"
        )
    keep_fpn_levels(fpn, keep)
    return C4FPNBackbone(bottom_up, fpn, keep)
