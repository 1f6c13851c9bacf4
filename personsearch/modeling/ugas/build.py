"""Builds the UGAS extension of a RoI head's embedding path from ``MODEL.UGAS``."""

from typing import Dict, Optional

from detectron2.layers import ShapeSpec
from torch import nn

from ..losses.oim import OIMLoss
from .registry import SD_REGISTRY, SFM_REGISTRY, UG_REGISTRY, build_from
from .ugas_embedding import UGASEmbedding


def ugas_enabled(cfg) -> bool:
    """Whether any UGAS module is switched on."""
    u = cfg.MODEL.UGAS
    return bool(u.SFM.ENABLED or u.SD.ENABLED or u.UG.ENABLED)


def build_ugas(
    cfg,
    input_shape: Dict[str, ShapeSpec],
    roi_channels: Dict[str, int],
    reid_head: nn.Module,
) -> Optional[UGASEmbedding]:
    """The UGAS extension, or None when every module is disabled (the head is then unchanged:
    nothing is built, so not even the random initialisation of the base model changes).

    Args:
        cfg: the config (``MODEL.UGAS``).
        input_shape: the backbone's output shapes (SFM pools its levels from them).
        roi_channels: channels of the RoI head's pooled features (``res4``, ``res5``, ...).
        reid_head: the base re-ID head (its ``embed_dim`` and ``in_features``).
    """
    if not ugas_enabled(cfg):
        return None
    u = cfg.MODEL.UGAS
    deep_dim = reid_head.embed_dim
    sfm = sd = ug = deep_loss = shallow_loss = None
    if u.SFM.ENABLED:
        sfm = build_from(
            SFM_REGISTRY, "MODEL.UGAS.SFM.NAME", u.SFM.NAME, cfg, input_shape, deep_dim
        )
        deep_loss = OIMLoss(cfg, deep_dim, loss_weight=u.SFM.DEEP_LOSS_WEIGHT)
        shallow_loss = OIMLoss(cfg, sfm.shallow_dim, loss_weight=u.SFM.SHALLOW_LOSS_WEIGHT)
    if u.SD.ENABLED:
        if sfm is None:
            raise ValueError(
                "MODEL.UGAS.SD.ENABLED needs MODEL.UGAS.SFM.ENABLED: self-distillation teaches "
                "the shallow branch that SFM adds"
            )
        sd = build_from(
            SD_REGISTRY, "MODEL.UGAS.SD.NAME", u.SD.NAME, cfg, deep_dim, sfm.shallow_dim
        )
    ug_inputs, ug_shallow = [], False
    if u.UG.ENABLED:
        fusion = sfm.fusion if sfm is not None else "deep"
        if fusion != "shallow":
            # the pooled vectors behind the base head's inputs (NAE+ reads maps: their pools)
            ug_inputs = [
                n[: -len("_map")] if n.endswith("_map") else n for n in reid_head.in_features
            ]
        ug_shallow = fusion != "deep"
        in_channels = sum(roi_channels[n] for n in ug_inputs)
        in_channels += sfm.level_channels if ug_shallow else 0
        embed_dim = sfm.embed_dim if sfm is not None else deep_dim
        ug = build_from(UG_REGISTRY, "MODEL.UGAS.UG.NAME", u.UG.NAME, cfg, in_channels, embed_dim)
    return UGASEmbedding(
        deep_dim=deep_dim,
        sfm=sfm,
        sd=sd,
        ug=ug,
        deep_loss=deep_loss,
        shallow_loss=shallow_loss,
        ug_inputs=ug_inputs,
        ug_uses_shallow=ug_shallow,
        output_variance=bool(u.UG.OUTPUT_VARIANCE),
    )
