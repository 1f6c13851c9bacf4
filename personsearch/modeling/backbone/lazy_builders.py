"""The ResNet body and the res5 RoI stage from explicit arguments, for LazyConfig files.

``configs/*.py`` (detectron2's LazyConfig, ``instantiate(cfg.model)``) describe models by
arguments instead of a yacs config. These two functions take the ``MODEL.RESNETS`` /
``MODEL.BACKBONE`` values as keyword arguments and build the modules with the very builders the
yaml configs use (:func:`~.resnet.build_person_search_resnet_backbone`,
:func:`~.resnet.build_res5_stage`), so both config systems give the same network, freezing rules
included.
"""

from typing import Sequence

from detectron2.layers import ShapeSpec
from torch import nn

from .resnet import PersonSearchResNet, build_person_search_resnet_backbone, build_res5_stage


def _resnet_cfg(**values):
    from personsearch.config import get_person_search_cfg

    cfg = get_person_search_cfg()
    r, b = cfg.MODEL.RESNETS, cfg.MODEL.BACKBONE
    r.DEPTH = values["depth"]
    r.STEM_OUT_CHANNELS = values.get("stem_out_channels", r.STEM_OUT_CHANNELS)
    r.RES2_OUT_CHANNELS = values["res2_out_channels"]
    r.NUM_GROUPS = values["num_groups"]
    r.WIDTH_PER_GROUP = values["width_per_group"]
    r.STRIDE_IN_1X1 = values["stride_in_1x1"]
    r.NORM = values["norm"]
    r.OUT_FEATURES = list(values.get("out_features", r.OUT_FEATURES))
    r.STEM_NORM_TRACK_STATS = values.get("stem_norm_track_stats", r.STEM_NORM_TRACK_STATS)
    b.FREEZE_AT = values.get("freeze_at", b.FREEZE_AT)
    b.SIZE_DIVISIBILITY = values.get("size_divisibility", b.SIZE_DIVISIBILITY)
    return cfg


def person_search_resnet(
    *,
    depth: int = 50,
    stem_out_channels: int = 64,
    res2_out_channels: int = 256,
    num_groups: int = 1,
    width_per_group: int = 64,
    stride_in_1x1: bool = False,
    norm: str = "BN",
    out_features: Sequence[str] = ("res4",),
    freeze_at: int = 1,
    stem_norm_track_stats: bool = True,
    size_divisibility: int = 0,
    in_channels: int = 3,
) -> PersonSearchResNet:
    """:func:`~.resnet.build_person_search_resnet_backbone` with its config values as arguments.

    Args:
        depth, stem_out_channels, res2_out_channels, num_groups, width_per_group, stride_in_1x1,
            norm, out_features, stem_norm_track_stats: ``MODEL.RESNETS.*`` (defaults: the
            torchvision R-50 of configs/Base-PersonSearch.yaml).
        freeze_at, size_divisibility: ``MODEL.BACKBONE.FREEZE_AT`` / ``SIZE_DIVISIBILITY``.
        in_channels: image channels.

    Returns:
        The ResNet body, outputs ``out_features`` (e.g. ``{"res4": (N, 1024, H/16, W/16)}``).
    """
    cfg = _resnet_cfg(
        depth=depth,
        stem_out_channels=stem_out_channels,
        res2_out_channels=res2_out_channels,
        num_groups=num_groups,
        width_per_group=width_per_group,
        stride_in_1x1=stride_in_1x1,
        norm=norm,
        out_features=out_features,
        freeze_at=freeze_at,
        stem_norm_track_stats=stem_norm_track_stats,
        size_divisibility=size_divisibility,
    )
    return build_person_search_resnet_backbone(cfg, ShapeSpec(channels=in_channels))


def res5_stage(
    *,
    depth: int = 50,
    res2_out_channels: int = 256,
    num_groups: int = 1,
    width_per_group: int = 64,
    stride_in_1x1: bool = False,
    norm: str = "BN",
) -> nn.Sequential:
    """:func:`~.resnet.build_res5_stage` (the res5 stage a C4 RoI head runs per RoI) with its
    ``MODEL.RESNETS.*`` values as arguments; (R, 4 x res2, S, S) -> (R, 8 x res2, S/2, S/2)."""
    cfg = _resnet_cfg(
        depth=depth,
        res2_out_channels=res2_out_channels,
        num_groups=num_groups,
        width_per_group=width_per_group,
        stride_in_1x1=stride_in_1x1,
        norm=norm,
    )
    return build_res5_stage(cfg)
