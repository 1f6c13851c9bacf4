"""FPN on the person-search ResNet body (detectron2's ``FPN`` around our ``ResNet``).

detectron2's ``build_resnet_fpn_backbone`` builds its own ResNet; this builder builds the body with
:func:`~.resnet.build_person_search_resnet_backbone` instead, so that the FPN model gets the same
body options as the C4 models (``DEPTH 10`` and narrow basic-block widths for CPU configs, the
official stem freezing with live BatchNorm statistics), and wraps it in detectron2's ``FPN``
unchanged. Parameter names are detectron2's (``bottom_up.res2.0.conv1.weight``,
``fpn_lateral2.weight``, ``fpn_output2.weight``), so model-zoo R50-FPN files load by name.
"""

import math
from typing import Dict, List

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

from .resnet import build_person_search_resnet_backbone

FUSE_TYPES = ("sum", "avg")


def check_fpn_in_features(cfg, body_shapes: Dict[str, ShapeSpec]) -> List[str]:
    """Validate ``MODEL.FPN.IN_FEATURES`` against the body's outputs.

    Args:
        cfg: the config (``MODEL.FPN``, ``MODEL.RESNETS.OUT_FEATURES``).
        body_shapes: the body's output shapes.

    Returns:
        The FPN input names, high to low resolution (strides doubling from one to the next).
    """
    names = list(cfg.MODEL.FPN.IN_FEATURES)
    if not names:
        raise ValueError(
            "MODEL.FPN.IN_FEATURES is empty; name the body stages the pyramid is built on, e.g. "
            "['res2', 'res3', 'res4', 'res5']"
        )
    missing = [n for n in names if n not in body_shapes]
    if missing:
        raise ValueError(
            f"MODEL.FPN.IN_FEATURES {names}: {missing} are not outputs of the ResNet body "
            f"{sorted(body_shapes)}; add them to MODEL.RESNETS.OUT_FEATURES"
        )
    strides = [body_shapes[n].stride for n in names]
    if any(b != 2 * a for a, b in zip(strides, strides[1:])):
        raise ValueError(
            f"MODEL.FPN.IN_FEATURES {names} must be consecutive stages from high to low "
            f"resolution (strides {strides})"
        )
    if cfg.MODEL.FPN.FUSE_TYPE not in FUSE_TYPES:
        raise ValueError(
            f"MODEL.FPN.FUSE_TYPE must be one of {FUSE_TYPES}, got {cfg.MODEL.FPN.FUSE_TYPE!r}"
        )
    return names


def last_level_max_pool(last_input: str, body_shapes: Dict[str, ShapeSpec]) -> LastLevelMaxPool:
    """detectron2's extra top level (stride-2 max pooling of the top FPN level, "p6" on res5),
    reading the FPN level of ``last_input`` (detectron2's fixes it to "p5")."""
    top = LastLevelMaxPool()
    top.in_feature = f"p{int(math.log2(body_shapes[last_input].stride))}"
    return top


@BACKBONE_REGISTRY.register()
def build_person_search_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> Backbone:
    """ResNet body (``MODEL.RESNETS.*``, as the C4 models) + detectron2's FPN.

    Reads ``MODEL.FPN.IN_FEATURES`` (body stages, e.g. res2..res5; they must be in
    ``MODEL.RESNETS.OUT_FEATURES``), ``OUT_CHANNELS``, ``NORM`` and ``FUSE_TYPE``, as detectron2's
    ``build_resnet_fpn_backbone``; the extra top level (max pooling, p6 on res5) is always added.

    Args:
        cfg: the config.
        input_shape: the image input shape (3 channels).

    Returns:
        detectron2's ``FPN``: outputs ``{"p2": (N, C, H/4, W/4), ..., "p6": (N, C, H/64, W/64)}``
        with C = ``MODEL.FPN.OUT_CHANNELS``; inputs are padded to a multiple of the top stride.
    """
    bottom_up = build_person_search_resnet_backbone(cfg, input_shape)
    shapes = bottom_up.output_shape()
    in_features = check_fpn_in_features(cfg, shapes)
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=last_level_max_pool(in_features[-1], shapes),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
