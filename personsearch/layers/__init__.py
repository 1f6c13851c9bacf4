"""Small layers shared by the heads."""

from .norm import SyncBatchNormND, build_norm
