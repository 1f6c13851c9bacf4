"""Builds the UGAS extension of a RoI head's embedding path from ``MODEL.UGAS``."""

from typing import Dict, Optional

from torch import nn


def ugas_enabled(cfg) -> bool:
    """Whether any UGAS module is switched on."""
    u = cfg.MODEL.UGAS
    return bool(u.SFM.ENABLED or u.SD.ENABLED or u.UG.ENABLED)


def build_ugas(cfg, input_shape, roi_channels: Dict[str, int], reid_head: nn.Module) -> Optional[nn.Module]:
    """The UGAS extension, or None when every module is disabled (the head is then unchanged)."""
    if not ugas_enabled(cfg):
        return None
    raise NotImplementedError("UGAS modules are not built yet")
