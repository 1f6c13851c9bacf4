"""The registry of RoI feature heads: what a person-search RoI head runs on every pooled RoI
before its detector and its re-ID head (C4: res5; FPN: detectron2's box head), selected by
``MODEL.ROI_FEATURE_HEAD.NAME``."""

from typing import Dict

import torch
from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry
from torch import nn

ROI_FEATURE_HEAD_REGISTRY = Registry("ROI_FEATURE_HEAD")
ROI_FEATURE_HEAD_REGISTRY.__doc__ = """
RoI feature heads of the person-search RoI heads. Built with ``(cfg, input_shape)`` (the
backbone's output shapes; the head checks ``MODEL.ROI_HEADS.IN_FEATURES`` against them) and called
on the (R, C, S, S) RoI maps the RoI head pools from ``MODEL.ROI_HEADS.IN_FEATURES``; returns a
dict of named RoI features, pooled vectors (R, C) and maps (R, C, h, w).

Every feature head declares (the contract the RoI heads, the re-ID heads
(``MODEL.REID_HEAD.IN_FEATURES``) and UGAS (:func:`personsearch.modeling.ugas.build_ugas`) rely on):

* ``output_channels``: ``{name: channels}`` of every output;
* ``pooled_of``: ``{map name: vector name}`` for the outputs that are maps;
* ``input_map``: the output that is the RoIAlign map the head reads;
* ``box_feature``: the output the detector reads (softmax classifier, box regressors): the
  detector's own RoI representation;
* ``box_map``: the map ``box_feature`` is globally pooled from, or None when it is not pooled
  from a map (an FC head).
"""


def build_roi_feature_head(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The RoI feature head named by ``MODEL.ROI_FEATURE_HEAD.NAME``.

    Args:
        cfg: the config.
        input_shape: the backbone's output shapes.
    """
    name = cfg.MODEL.ROI_FEATURE_HEAD.NAME
    if name not in ROI_FEATURE_HEAD_REGISTRY:
        raise ValueError(
            f"MODEL.ROI_FEATURE_HEAD.NAME {name!r} is not registered; registered: "
            f"{sorted(k for k, _ in ROI_FEATURE_HEAD_REGISTRY)}"
        )
    return ROI_FEATURE_HEAD_REGISTRY.get(name)(cfg, input_shape)


def check_global_pool(pool: str) -> str:
    """``pool`` if it is a known global pooling (``MODEL.ROI_BOX_HEAD.GLOBAL_POOL``)."""
    if pool not in ("max", "avg"):
        raise ValueError(f"MODEL.ROI_BOX_HEAD.GLOBAL_POOL must be 'max' or 'avg', got {pool!r}")
    return pool


def global_pool(x: torch.Tensor, pool: str) -> torch.Tensor:
    """(R, C, h, w) -> (R, C) by global max (``pool`` "max") or average ("avg") pooling."""
    return x.amax(dim=(2, 3)) if pool == "max" else x.mean(dim=(2, 3))


def box_feature_shape(feature_head: nn.Module) -> ShapeSpec:
    """The shape of a feature head's ``box_feature`` (a vector per RoI): what the detector's
    layers reading it are sized by."""
    return ShapeSpec(
        channels=feature_head.output_channels[feature_head.box_feature], height=1, width=1
    )
