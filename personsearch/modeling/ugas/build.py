"""Builds the UGAS extension of a RoI head's embedding path from ``MODEL.UGAS``, checking the
contract between the base re-ID head and the UGAS modules."""

from typing import Dict, List, Optional

from detectron2.layers import ShapeSpec
from torch import nn

from personsearch.utils.registry import build_from_registry

from ..losses.oim import OIMLoss
from .registry import SD_REGISTRY, SFM_REGISTRY, UG_REGISTRY
from .ugas_embedding import UGASEmbedding


def ugas_enabled(cfg) -> bool:
    """Whether any UGAS module is switched on."""
    u = cfg.MODEL.UGAS
    return bool(u.SFM.ENABLED or u.SD.ENABLED or u.UG.ENABLED)


def head_outputs(reid_head: nn.Module) -> tuple:
    """The output names a re-ID head declares (its ``outputs`` class attribute)."""
    return tuple(getattr(type(reid_head), "outputs", ("embeddings",)))


def _variance_inputs(cfg, feature_head: nn.Module) -> List[str]:
    """The RoI maps UG's variance head reads: ``MODEL.UGAS.UG.IN_FEATURES``, or (when empty) the
    RoIAlign map the RoI feature head reads (its ``input_map``)."""
    channels, maps = feature_head.output_channels, getattr(feature_head, "pooled_of", {})
    names = list(cfg.MODEL.UGAS.UG.IN_FEATURES)
    if not names:
        if not hasattr(feature_head, "input_map"):
            raise ValueError(
                f"MODEL.UGAS.UG: the RoI feature head {type(feature_head).__name__} declares no "
                "input_map for UG's variance head; set MODEL.UGAS.UG.IN_FEATURES"
            )
        names = [feature_head.input_map]
    bad = [n for n in names if n not in channels or n not in maps]
    if bad:
        raise ValueError(
            f"MODEL.UGAS.UG.IN_FEATURES {bad}: UG's variance head reads RoI maps; "
            f"{type(feature_head).__name__} provides the maps {sorted(maps)}"
        )
    return names


def build_ugas(
    cfg,
    input_shape: Dict[str, ShapeSpec],
    feature_head: nn.Module,
    reid_head: nn.Module,
) -> Optional[UGASEmbedding]:
    """The UGAS extension, or None when every module is disabled (the head is then unchanged:
    nothing is built, so not even the random initialisation of the base model changes).

    The contract: every base re-ID head declares its outputs (``outputs``: at least
    ``"embeddings"``, optionally ``"oim_features"``, the features its OIM loss is trained on) and
    the RoI feature head declares its outputs (``output_channels``), which of them are maps
    (``pooled_of``) and the map it reads (``input_map``). SFM fuses ``"embeddings"``; the main OIM
    loss and SD's deep branch use ``"oim_features"`` when declared; UG's variance head reads RoI
    maps (and SFM's level vectors). A missing output is an error naming the head and the output.

    Args:
        cfg: the config (``MODEL.UGAS``).
        input_shape: the backbone's output shapes (SFM pools its levels from them).
        feature_head: the RoI feature head (``output_channels``, ``pooled_of``, ``input_map``).
        reid_head: the base re-ID head (its ``embed_dim`` and ``outputs``).
    """
    if not ugas_enabled(cfg):
        return None
    u = cfg.MODEL.UGAS
    outputs = head_outputs(reid_head)
    if "embeddings" not in outputs:
        raise ValueError(
            f"MODEL.UGAS needs the re-ID head output 'embeddings'; {type(reid_head).__name__} "
            f"(MODEL.REID_HEAD.NAME) declares only {outputs}"
        )
    main_feature = "oim_features" if "oim_features" in outputs else "embeddings"
    deep_dim = reid_head.embed_dim
    sfm = sd = ug = deep_loss = shallow_loss = None
    if u.SFM.ENABLED:
        sfm = build_from_registry(
            SFM_REGISTRY, "MODEL.UGAS.SFM.NAME", u.SFM.NAME, cfg, input_shape, deep_dim
        )
        deep_loss = OIMLoss(cfg, deep_dim, loss_weight=u.SFM.DEEP_LOSS_WEIGHT)
        shallow_loss = OIMLoss(cfg, sfm.shallow_dim, loss_weight=u.SFM.SHALLOW_LOSS_WEIGHT)
    if u.SD.ENABLED:
        if sfm is None:
            raise ValueError(
                "MODEL.UGAS.SD.ENABLED needs MODEL.UGAS.SFM.ENABLED: self-distillation runs "
                "between the deep branch and the shallow branch that SFM adds"
            )
        sd = build_from_registry(
            SD_REGISTRY, "MODEL.UGAS.SD.NAME", u.SD.NAME, cfg, deep_dim, sfm.shallow_dim
        )
    ug_inputs = []
    if u.UG.ENABLED:
        ug_inputs = _variance_inputs(cfg, feature_head)
        map_channels = [feature_head.output_channels[n] for n in ug_inputs]
        vector_channels = sfm.level_channels if sfm is not None else 0
        embed_dim = sfm.embed_dim if sfm is not None else deep_dim
        ug = build_from_registry(
            UG_REGISTRY,
            "MODEL.UGAS.UG.NAME",
            u.UG.NAME,
            cfg,
            map_channels,
            vector_channels,
            embed_dim,
        )
        if u.UG.OUTPUT_VARIANCE and not ug.has_variance:
            raise ValueError(
                f"MODEL.UGAS.UG.OUTPUT_VARIANCE: MODEL.UGAS.UG.NAME {u.UG.NAME!r} predicts no "
                "variance to output; use a Gaussian UG (e.g. 'GaussianEmbeddingUncertainty')"
            )
    return UGASEmbedding(
        deep_dim=deep_dim,
        main_feature=main_feature,
        sfm=sfm,
        sd=sd,
        ug=ug,
        deep_loss=deep_loss,
        shallow_loss=shallow_loss,
        ug_inputs=ug_inputs,
        output_variance=bool(u.UG.OUTPUT_VARIANCE),
    )
