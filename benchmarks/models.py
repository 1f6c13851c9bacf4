"""The models of a comparison: our person-search models (any yaml config) and, for each, the plain
detectron2 Faster R-CNN C4 detector with the same backbone, input size and proposal counts."""

import json
import os
from typing import List, Optional

import torch

from personsearch.utils import device as device_utils

from .forcing import forced_overrides

PLAIN_META_ARCH = "GeneralizedRCNN"
PLAIN_ROI_HEADS = "PlainRes5ROIHeads"
PRECISIONS = ("float32", "bfloat16", "float16")
_FEATURE_ORDER = ("stem", "res2", "res3", "res4", "res5")


def model_cfg(
    config_file: str,
    opts=(),
    weights: str = "",
    force: bool = True,
    precision: str = "float32",
):
    """The config of one of our models as the benchmark runs it (frozen).

    Args:
        config_file: a personsearch yaml config.
        opts: ``KEY VALUE`` overrides (applied to every model of the run).
        weights: trained weights to load ("" = none).
        force: forced mode (see :mod:`.forcing`): without ``weights`` the model starts from random
            weights (``MODEL.WEIGHTS`` of the config, e.g. ImageNet initialisation, is not a
            trained model and is ignored); the RoI thresholds are forced either way.
        precision: "float32", or "bfloat16" / "float16": ``TEST.AMP`` and ``SOLVER.AMP`` enabled
            with that dtype.
    """
    from personsearch import get_person_search_cfg

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    cfg = get_person_search_cfg(config_file, list(opts))
    if weights:
        cfg.MODEL.WEIGHTS = weights
    elif force:
        cfg.MODEL.WEIGHTS = ""
    if force:
        cfg.merge_from_list(forced_overrides(cfg))
    if precision != "float32":
        cfg.TEST.AMP.ENABLED = True
        cfg.TEST.AMP.DTYPE = precision
        cfg.SOLVER.AMP.ENABLED = True
        cfg.SOLVER.AMP.DTYPE = precision
    cfg.freeze()
    return cfg


def plain_detector_cfg(cfg):
    """The plain Faster R-CNN C4 detector of a person-search config (frozen).

    detectron2's ``GeneralizedRCNN`` with :class:`~personsearch.modeling.roi_heads.
    plain_res5_roi_heads.PlainRes5ROIHeads`: the same backbone, anchors, RPN (and its top-k),
    RoI sampling, pooler and detections per image as ``cfg``; no re-ID head, no second stage, no
    UGAS module; random weights (it is always run in forced mode); the backbone outputs only the
    maps the RPN and the box head read.
    """
    plain = cfg.clone()
    plain.defrost()
    plain.MODEL.META_ARCHITECTURE = PLAIN_META_ARCH
    plain.MODEL.ROI_HEADS.NAME = PLAIN_ROI_HEADS
    plain.MODEL.WEIGHTS = ""
    plain.MODEL.MASK_ON = False
    plain.MODEL.KEYPOINT_ON = False
    needed = set(plain.MODEL.ROI_HEADS.IN_FEATURES) | set(plain.MODEL.RPN.IN_FEATURES)
    plain.MODEL.RESNETS.OUT_FEATURES = [f for f in _FEATURE_ORDER if f in needed]
    plain.merge_from_list(forced_overrides(plain))
    plain.freeze()
    return plain


def plain_detector_key(plain_cfg) -> str:
    """What decides the plain detector's cost: two configs with the same key share one plain
    detector row (e.g. OIM, NAE and SeqNet R50 differ only in their person-search heads)."""
    m = plain_cfg.MODEL
    parts = {
        "backbone": m.BACKBONE,
        "resnets": m.RESNETS,
        "anchors": m.ANCHOR_GENERATOR,
        "proposal_generator": m.PROPOSAL_GENERATOR,
        "rpn": m.RPN,
        "roi_heads": {
            k: m.ROI_HEADS[k]
            for k in ("IN_FEATURES", "BATCH_SIZE_PER_IMAGE", "POSITIVE_FRACTION", "NUM_CLASSES")
        },
        "pooler": {k: v for k, v in m.ROI_BOX_HEAD.items() if k.startswith("POOLER")},
        "roi_align_cpu": m.ROI_BOX_HEAD.get("ROI_ALIGN_CPU", ""),
        "detections": plain_cfg.TEST.DETECTIONS_PER_IMAGE,
        "device": m.DEVICE,
        "amp": [plain_cfg.TEST.AMP.ENABLED, plain_cfg.TEST.AMP.DTYPE],
    }
    return json.dumps(parts, sort_keys=True, default=str)


def is_reference_resnet50(cfg) -> bool:
    """True for the torchvision ResNet-50 layout of the official implementations."""
    r = cfg.MODEL.RESNETS
    return r.DEPTH == 50 and r.RES2_OUT_CHANNELS == 256 and r.STEM_OUT_CHANNELS == 64


def check_device(cfg, what: str) -> None:
    """Raise ``SystemExit`` for a CUDA config on a machine without CUDA."""
    device_utils.check_device(cfg.MODEL.DEVICE, what, SystemExit)


def build(cfg, weights: Optional[str] = None) -> torch.nn.Module:
    """Build a detectron2 model from ``cfg`` in eval mode, loading ``cfg.MODEL.WEIGHTS`` (or
    ``weights``) if set."""
    from detectron2.modeling import build_model

    from personsearch.checkpoint import PersonSearchCheckpointer

    model = build_model(cfg)
    path = cfg.MODEL.WEIGHTS if weights is None else weights
    if path:
        PersonSearchCheckpointer(model).load(path)
    model.eval()
    return model


def display_name(config_file: str, configs_root: str = "") -> str:
    """A config's name in the table: its path under the repository's ``configs/`` folder, else
    the path as given."""
    path = os.path.abspath(config_file)
    if configs_root:
        root = os.path.abspath(configs_root) + os.sep
        if path.startswith(root):
            return path[len(root) :]
    return config_file


def config_num_pids(cfg) -> int:
    """The number of labeled identities of a config's OIM memory (0 if it has none)."""
    return int(cfg.MODEL.OIM.NUM_PIDS) if "OIM" in cfg.MODEL else 0


def unique(items: List[str]) -> List[str]:
    """``items`` without repeats, in order."""
    seen, out = set(), []
    for x in items:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out
