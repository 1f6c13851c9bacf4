"""Shared steps of the tools that run a trained model on a registered split: config with
overrides, dataset name, model with weights, boxes in original pixels."""

import argparse
import logging
import os
from typing import Dict, Sequence

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode

from personsearch.config import get_person_search_cfg
from personsearch.utils.cli import unregistered_datasets_message
from personsearch.utils.device import cuda_unavailable_message

logger = logging.getLogger(__name__)


def load_config(parser: argparse.ArgumentParser, config_file: str, opts: Sequence[str]) -> CfgNode:
    """The config of ``config_file`` with ``opts`` (a leading ``--`` dropped); a missing file,
    flags among the overrides or an odd number of them are usage errors, an unknown key is yacs's
    error naming it."""
    if not os.path.isfile(config_file):
        parser.error(f"config file not found: {config_file!r}")
    opts = list(opts[1:] if opts[:1] == ["--"] else opts)  # "--" may end a list-valued flag
    flags = [o for o in opts if o.startswith("--")]
    if flags:
        parser.error(
            f"flags must come before the KEY VALUE config overrides; got {flags} after them"
        )
    if len(opts) % 2:
        parser.error(f"config overrides come in KEY VALUE pairs; got {opts}")
    cfg = get_person_search_cfg(config_file, opts)
    message = cuda_unavailable_message(cfg.MODEL.DEVICE, config_file)
    if message:
        parser.error(message)
    return cfg


def resolve_dataset(parser: argparse.ArgumentParser, name: str, cfg: CfgNode) -> str:
    """``name``, or the config's first test split; an unregistered name is a usage error."""
    if not name:
        if not cfg.DATASETS.TEST:
            parser.error("the config has no DATASETS.TEST; name a split with --dataset")
        name = cfg.DATASETS.TEST[0]
    message = unregistered_datasets_message([name])
    if message:
        parser.error(message)
    return name


def build_inference_model(cfg: CfgNode) -> torch.nn.Module:
    """The config's model in eval mode with ``MODEL.WEIGHTS`` loaded (random weights, with a
    warning, when it is empty).

    Raises:
        FileNotFoundError, ValueError: the checkpointer's errors for a missing or unreadable
            weights file (they name the path).
    """
    from personsearch.checkpoint import PersonSearchCheckpointer

    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        PersonSearchCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: the model has random weights.")
    return model.eval()


def to_original(boxes: torch.Tensor, input_size, height: int, width: int) -> torch.Tensor:
    """(N, 4) XYXY boxes of the resized input image (``input_size`` = (h, w)) in original pixels
    (``height`` x ``width``), clipped to the image."""
    scale = boxes.new_tensor([width / input_size[1], height / input_size[0]]).repeat(2)
    out = Boxes(boxes * scale)
    out.clip((height, width))
    return out.tensor


def gt_boxes_xyxy(record: Dict) -> np.ndarray:
    """(G, 4) float64 XYXY ground-truth boxes of a record, original pixels (any ``bbox_mode``)."""
    anns = record.get("annotations", [])
    if not anns:
        return np.zeros((0, 4))
    boxes = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    modes = {a.get("bbox_mode", BoxMode.XYXY_ABS) for a in anns}
    if len(modes) == 1:
        return np.asarray(BoxMode.convert(boxes, modes.pop(), BoxMode.XYXY_ABS), dtype=np.float64)
    return np.asarray(  # mixed modes: per box
        [
            BoxMode.convert(list(a["bbox"]), a.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS)
            for a in anns
        ],
        dtype=np.float64,
    )
