"""UGAS: shallow fusion (SFM), self-distillation (SD) and uncertainty guidance (UG) modules that
extend the embedding path of any person-search RoI head (``MODEL.UGAS``)."""

from .attention_fusion import AttentionShallowFusionModule
from .build import build_ugas, ugas_enabled
from .feature_statistics import FeatureStatisticsUncertainty
from .registry import SD_REGISTRY, SFM_REGISTRY, UG_REGISTRY
from .self_distillation import LogitDistillation
from .shallow_fusion import ShallowFusionModule
from .ugas_embedding import UGASEmbedding
from .uncertainty import GaussianEmbeddingUncertainty, UncertaintyAwareLoss
