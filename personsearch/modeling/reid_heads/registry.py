"""Registry of re-identification embedding heads, selected by ``MODEL.REID_HEAD.NAME``."""

from typing import Dict, List, Sequence

from detectron2.utils.registry import Registry
from torch import nn

from personsearch.utils.registry import build_from_registry

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
    return build_from_registry(
        REID_HEAD_REGISTRY, "MODEL.REID_HEAD.NAME", name, cfg, input_channels, kind="re-ID head"
    )


def check_in_features(
    names: Sequence[str], input_channels: Dict[str, int], maps: bool, head: str
) -> List[str]:
    """Validate ``MODEL.REID_HEAD.IN_FEATURES`` for a head.

    Args:
        names: the configured feature names.
        input_channels: channels of every feature the RoI head provides (pooled vectors such as
            ``res4``/``res5`` and maps such as ``res4_map``/``res5_map``).
        maps: the head reads RoI maps (names ending in ``_map``) rather than pooled vectors.
        head: the head's name, for the message.

    Returns:
        The names as a list.
    """
    names = list(names)
    if not names:
        raise ValueError(f"MODEL.REID_HEAD.IN_FEATURES is empty; {head} needs at least one")
    unknown = [n for n in names if n not in input_channels]
    if unknown:
        raise ValueError(
            f"MODEL.REID_HEAD.IN_FEATURES {unknown} are not produced by the RoI head; "
            f"available: {sorted(input_channels)}"
        )
    wrong = [n for n in names if n.endswith("_map") != maps]
    if wrong:
        kind = "RoI maps (names ending in '_map')" if maps else "pooled vectors (no '_map')"
        raise ValueError(f"MODEL.REID_HEAD.IN_FEATURES {wrong}: {head} reads {kind}")
    return names
