"""Registries of the three UGAS module kinds, selected by ``MODEL.UGAS.{SFM,SD,UG}.NAME``."""

from detectron2.utils.registry import Registry

SFM_REGISTRY = Registry("UGAS_SFM")
SFM_REGISTRY.__doc__ = """
Shallow fusion modules: ``module(features, boxes) -> {"shallow": (R, D_s) pre-normalisation
shallow embedding, "levels": (R, C) per-level pooled vectors concatenated, "pooled": per-level RoI
maps}`` (attention variants add ``"attention"`` and ``"level_weights"``), ``module.embed(pooled)``
(the same from given RoI maps) and ``module.fuse(deep_unit, shallow) -> (R, D)`` the retrieval
embedding (unit norm). Built with
``(cfg, input_shape, deep_dim)``; exposes ``embed_dim`` (of the fused embedding), ``shallow_dim``
and ``level_channels``.
"""

SD_REGISTRY = Registry("UGAS_SD")
SD_REGISTRY.__doc__ = """
Self-distillation losses between the deep and the shallow branch. Built with ``(cfg, deep_dim,
shallow_dim)``; exposes ``stop_backbone_gradient``; called as ``module(deep_logits,
shallow_logits, deep_feats, shallow_feats, pids, iteration, deep_student=None,
shallow_student=None) -> dict of losses``.
"""

UG_REGISTRY = Registry("UGAS_UG")
UG_REGISTRY.__doc__ = """
Uncertainty guidance (training only, no inference cost). Built with ``(cfg, map_channels,
vector_channels, embed_dim)`` (the channels of the RoI maps and of the vector its variance head may
read); exposes ``has_variance`` and:

* ``perturb(maps) -> maps``: the pooled RoI maps of the embedding path in training (identity for
  all but feature-statistics UG);
* ``log_variance(maps, vector) -> (R, D)`` and ``uncertainty(log_var) -> (R,)`` (variance-predicting
  variants only; run at inference only with ``OUTPUT_VARIANCE``);
* ``reid_loss(main_loss, feats, pids, log_var, iou) -> dict``: the main OIM loss of the foreground
  RoIs as guided by their uncertainty, plus the variant's own terms; it updates the main memories.
"""
