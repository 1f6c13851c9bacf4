"""Model components; importing this module registers them with detectron2's registries."""

# anchors
from .anchor_generator import RoundedAnchorGenerator

# backbone
from .backbone.c4_fpn import build_person_search_resnet_c4_fpn_backbone
from .backbone.fpn import build_person_search_resnet_fpn_backbone
from .backbone.resnet import build_person_search_resnet_backbone, build_res5_stage

# losses
from .losses.oim import OIMLoss

# meta-architecture
from .meta_arch.person_search_rcnn import PersonSearchRCNN

# proposal generator (torchvision-compatible filtering for converted models)
from .proposal_generator.torchvision_rpn import TorchvisionRPN

# re-identification heads
from .reid_heads.linear import LinearEmbeddingHead
from .reid_heads.norm_aware import NormAwareEmbeddingHead
from .reid_heads.pixel_norm_aware import PixelNormAwareEmbeddingHead
from .reid_heads.registry import REID_HEAD_REGISTRY, build_reid_head

# RoI heads, and the RoI feature heads they run on (C4's res5, the FPN box head)
from .roi_heads.deprecated import FPNNAEROIHeads, FPNOIMROIHeads
from .roi_heads.feature_head import ROI_FEATURE_HEAD_REGISTRY, build_roi_feature_head
from .roi_heads.fpn_feature_head import FPNFeatureHead
from .roi_heads.nae_plus_roi_heads import NAEPlusROIHeads
from .roi_heads.nae_roi_heads import NAEROIHeads
from .roi_heads.oim_roi_heads import OIMROIHeads
from .roi_heads.person_search_roi_heads import PersonSearchROIHeads
from .roi_heads.plain_res5_roi_heads import PlainRes5ROIHeads
from .roi_heads.res5_feature_head import Res5FeatureHead
from .roi_heads.seqnet_roi_heads import SeqNetROIHeads

# UGAS modules (SFM, SD, UG), composed onto any RoI head's embedding path by MODEL.UGAS
from .ugas import SD_REGISTRY, SFM_REGISTRY, UG_REGISTRY, build_ugas
