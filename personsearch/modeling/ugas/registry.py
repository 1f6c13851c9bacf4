"""Registries of the three UGAS module kinds, selected by ``MODEL.UGAS.{SFM,SD,UG}.NAME``."""

from detectron2.utils.registry import Registry

SFM_REGISTRY = Registry("UGAS_SFM")
SFM_REGISTRY.__doc__ = """
Shallow fusion modules: ``module(features, boxes) -> {"shallow": (R, D_s) pre-normalisation
shallow embedding, "levels": (R, C) per-level pooled vectors concatenated}`` and
``module.fuse(deep_unit, shallow) -> (R, D)`` the retrieval embedding (unit norm). Built with
``(cfg, input_shape, deep_dim)``; exposes ``embed_dim`` (of the fused embedding), ``shallow_dim``
and ``level_channels``.
"""

SD_REGISTRY = Registry("UGAS_SD")
SD_REGISTRY.__doc__ = """
Self-distillation losses between the deep (teacher) and shallow (student) branches. Built with
``(cfg, deep_dim, shallow_dim)``; called as ``module(deep_logits, shallow_logits, deep_feats,
shallow_feats, pids, iteration) -> dict of losses``.
"""

UG_REGISTRY = Registry("UGAS_UG")
UG_REGISTRY.__doc__ = """
Uncertainty guidance: a training-time Gaussian model of the embedding. Built with
``(cfg, in_channels, embed_dim)``; ``log_variance(inputs) -> (R, D)``, ``sample(mean_unit,
log_var) -> (R, D)`` unit samples and ``kl(log_var) -> scalar``. It runs at inference only when
asked to output the variance.
"""


def build_from(registry: Registry, key: str, name: str, *args):
    """Build ``name`` from ``registry``; an unknown name is an error naming ``key``."""
    if name not in registry:
        raise ValueError(
            f"{key} {name!r} is not registered; registered: {sorted(k for k, _ in registry)}"
        )
    return registry.get(name)(*args)
