"""Registered names of removed RoI-head classes, kept for one release so that old configs load.

``FPNOIMROIHeads`` and ``FPNNAEROIHeads`` were subclasses of the OIM and NAE heads for FPN
detectors. Every method head now runs on either RoI feature head (``MODEL.ROI_FEATURE_HEAD.NAME``),
so each old name is a factory that warns and builds the method head with ``FPNFeatureHead``.
To be removed in the release after the one that deprecates them.
"""

import warnings
from typing import Dict

from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY

# old MODEL.ROI_HEADS.NAME -> (new MODEL.ROI_HEADS.NAME, MODEL.ROI_FEATURE_HEAD.NAME)
DEPRECATED_ROI_HEADS = {
    "FPNOIMROIHeads": ("OIMROIHeads", "FPNFeatureHead"),
    "FPNNAEROIHeads": ("NAEROIHeads", "FPNFeatureHead"),
}


def upgrade_roi_heads_config(cfg):
    """A copy of ``cfg`` whose deprecated ``MODEL.ROI_HEADS.NAME`` is replaced by the method head
    and the feature head it stood for (``cfg`` itself when the name is not deprecated); warns
    (``FutureWarning``) with the keys to write instead."""
    old = cfg.MODEL.ROI_HEADS.NAME
    if old not in DEPRECATED_ROI_HEADS:
        return cfg
    name, feature_head = DEPRECATED_ROI_HEADS[old]
    warnings.warn(
        f"MODEL.ROI_HEADS.NAME {old!r} is deprecated and will be removed in the next release; "
        f"use MODEL.ROI_HEADS.NAME {name!r} with MODEL.ROI_FEATURE_HEAD.NAME {feature_head!r} "
        "(the same model, same parameter names)",
        FutureWarning,
        stacklevel=4,  # detectron2's build_roi_heads, the caller of the old name
    )
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.NAME = name
    cfg.MODEL.ROI_FEATURE_HEAD.NAME = feature_head
    cfg.freeze()
    return cfg


def _build_upgraded(cfg, input_shape: Dict[str, ShapeSpec]):
    cfg = upgrade_roi_heads_config(cfg)
    return ROI_HEADS_REGISTRY.get(cfg.MODEL.ROI_HEADS.NAME)(cfg, input_shape)


@ROI_HEADS_REGISTRY.register()
def FPNOIMROIHeads(cfg, input_shape: Dict[str, ShapeSpec]):
    """Deprecated: ``OIMROIHeads`` with ``MODEL.ROI_FEATURE_HEAD.NAME: FPNFeatureHead``."""
    return _build_upgraded(cfg, input_shape)


@ROI_HEADS_REGISTRY.register()
def FPNNAEROIHeads(cfg, input_shape: Dict[str, ShapeSpec]):
    """Deprecated: ``NAEROIHeads`` with ``MODEL.ROI_FEATURE_HEAD.NAME: FPNFeatureHead``."""
    return _build_upgraded(cfg, input_shape)
