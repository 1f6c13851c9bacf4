"""Small layers shared by the heads."""

from .norm import SyncBatchNormND, build_norm, frozen_running_stats
from .poolers import build_roi_pooler
from .resize import resize_bilinear
from .roi_align import ROIAlign, roi_align_sparse
