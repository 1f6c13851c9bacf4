"""Registry of re-identification embedding heads, selected by ``MODEL.REID_HEAD.NAME``."""

from typing import Dict

from detectron2.utils.registry import Registry
from torch import nn

REID_HEAD_REGISTRY = Registry("REID_HEAD")
REID_HEAD_REGISTRY.__doc__ = """
Re-ID heads map the pooled RoI features of a person-search RoI head to embeddings.

A head is called as ``head(features)`` with ``features: dict[str, Tensor (R, C)]`` (the names of
``MODEL.REID_HEAD.IN_FEATURES``) and returns a dict with at least ``"embeddings"``: (R, D)
L2-normalised. Its constructor receives ``(cfg, input_channels: dict[str, int])`` through
``from_config`` and it exposes ``embed_dim`` (D).
"""


def build_reid_head(cfg, input_channels: Dict[str, int]) -> nn.Module:
    """Build the head named by ``cfg.MODEL.REID_HEAD.NAME``.

    Args:
        cfg: the config.
        input_channels: channels of every pooled RoI feature the RoI head provides.
    """
    name = cfg.MODEL.REID_HEAD.NAME
    if name not in REID_HEAD_REGISTRY:
        raise ValueError(
            f"MODEL.REID_HEAD.NAME {name!r} is not a registered re-ID head; registered: "
            f"{sorted(k for k, _ in REID_HEAD_REGISTRY)}"
        )
    return REID_HEAD_REGISTRY.get(name)(cfg, input_channels)
