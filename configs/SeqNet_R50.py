"""SeqNet on CUHK-SYSU as a detectron2 LazyConfig: the model of SeqNet_R50.yaml, argument by
argument (tests/test_lazy_config.py checks that both build the same modules and hyper-parameters).

    from detectron2.config import LazyConfig, instantiate
    cfg = LazyConfig.load("configs/SeqNet_R50.py")
    model = instantiate(cfg.model)                      # a PersonSearchRCNN

The sections follow detectron2's lazy-config training script (``tools/lazyconfig_train_net.py``:
``model``, ``dataloader``, ``optimizer``, ``lr_multiplier``, ``train``). Two things that script
does differently from personsearch's trainer (README, "Using personsearch in your own detectron2
code"): load ``train.init_checkpoint`` with ``personsearch.checkpoint.PersonSearchCheckpointer``
(detectron2's checkpointer cannot give the one ImageNet res5 to both res5 stages), and it has no
full-model gradient clipping (the reference clips the total norm at 10).
"""

from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data import transforms as T
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import MultiStepParamScheduler
from omegaconf import OmegaConf
from torch.optim import SGD

from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from personsearch.data.build import load_training_records
from personsearch.evaluation import PersonSearchEvaluator
from personsearch.layers import build_roi_pooler
from personsearch.modeling import NormAwareEmbeddingHead, OIMLoss, PersonSearchRCNN, SeqNetROIHeads
from personsearch.modeling.backbone.lazy_builders import person_search_resnet, res5_stage
from personsearch.modeling.roi_heads.box_regressor import NormAwareBoxRegressor
from personsearch.modeling.roi_heads.lazy_builders import seqnet_stage1_predictor
from personsearch.modeling.roi_heads.res5_feature_head import Res5FeatureHead

# torchvision ResNet-50 (MODEL.RESNETS of Base-PersonSearch.yaml); res4 1024, res5 2048 channels
_RESNET = dict(
    depth=50,
    res2_out_channels=256,
    num_groups=1,
    width_per_group=64,
    stride_in_1x1=False,
    norm="BN",
)
RES4, RES5 = 1024, 2048
NUM_PIDS, CQ_SIZE = 5532, 5000  # CUHK-SYSU: labeled identities, unlabeled-person queue
EMBED_DIM = 256

# stage 1 and stage 2 each run their own res5 copy on 14x14 RoIAlign res4 maps, max-pooled
_res5_head = L(Res5FeatureHead)(
    res5=L(res5_stage)(**_RESNET), res4_channels=RES4, res5_channels=RES5, pool="max"
)

model = L(PersonSearchRCNN)(
    # stem..res4 on the image; stem frozen with live BN statistics (FREEZE_AT 1)
    backbone=L(person_search_resnet)(
        **_RESNET,
        stem_out_channels=64,
        out_features=["res4"],
        freeze_at=1,
        stem_norm_track_stats=True,
    ),
    # RPN on res4: 5 sizes x 3 ratios = 15 anchors, IoU 0.3/0.7, 256 anchors, L1 loss
    proposal_generator=L(RPN)(
        in_features=["res4"],
        head=L(StandardRPNHead)(in_channels=RES4, num_anchors=15, box_dim=4, conv_dims=[-1]),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[32, 64, 128, 256, 512]],
            aspect_ratios=[[0.5, 1.0, 2.0]],
            strides=[16],
            offset=0.0,
        ),
        anchor_matcher=L(Matcher)(
            thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True
        ),
        box2box_transform=L(Box2BoxTransform)(weights=(1.0, 1.0, 1.0, 1.0)),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(12000, 6000),  # (train, test)
        post_nms_topk=(2000, 300),
        nms_thresh=0.7,
        min_box_size=0.0,
        anchor_boundary_thresh=-1,
        loss_weight={"loss_rpn_cls": 1.0, "loss_rpn_loc": 1.0},
        box_reg_loss_type="smooth_l1",
        smooth_l1_beta=0.0,
    ),
    roi_heads=L(SeqNetROIHeads)(
        # RoI sampling (both stages): 128 per image, half positive, fg IoU >= 0.5, GT appended
        num_classes=1,
        batch_size_per_image=128,
        positive_fraction=0.5,
        proposal_matcher=L(Matcher)(
            thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False
        ),
        proposal_append_gt=True,
        # RoIAlign 14x14 on res4, sampling 2, not aligned (torchvision 0.4)
        in_features=["res4"],
        pooler=L(build_roi_pooler)(
            output_size=14,
            scales=(1.0 / 16,),
            sampling_ratio=2,
            pooler_type="ROIAlign",
            cpu_impl="sparse",
        ),
        # stage 1: res5 copy A + softmax classifier and class-specific regression (weight 10)
        box_feature_head=_res5_head,
        box_predictor=L(seqnet_stage1_predictor)(
            input_shape=L(ShapeSpec)(channels=RES5, height=1, width=1),
            box2box_transform=L(Box2BoxTransform)(weights=(10.0, 10.0, 5.0, 5.0)),
            num_classes=1,
            cls_agnostic_bbox_reg=False,
            smooth_l1_beta=1.0,
            test_score_thresh=0.5,
            test_nms_thresh=0.4,
            test_topk_per_image=300,
            box_reg_loss_type="smooth_l1",
            loss_weight={"loss_cls": 1.0, "loss_box_reg": 10.0},
        ),
        # stage 2: res5 copy B + the NAE embedding (128 from pooled res4 + 128 from pooled res5)
        feature_head=_res5_head,
        reid_head=L(NormAwareEmbeddingHead)(
            in_features=["res4", "res5"], in_channels=[RES4, RES5], embed_dim=EMBED_DIM, norm="BN"
        ),
        reid_loss=L(OIMLoss)(
            num_pids=NUM_PIDS,
            queue_size=CQ_SIZE,
            feat_dim=EMBED_DIM,
            scalar=30.0,
            momentum=0.5,
            loss_weight=1.0,
        ),
        ugas=None,
        box_regressor=L(NormAwareBoxRegressor)(in_channels=RES5, norm="BN"),
        box2box_transform=L(Box2BoxTransform)(weights=(10.0, 10.0, 5.0, 5.0)),
        smooth_l1_beta=1.0,
        box_reg_loss_weight=1.0,
        det_loss_weight=1.0,
        # test: stage-1 score > 0.5, NMS 0.4; refined boxes NMS 0.5; score = stage 1 (FCS)
        test_score_thresh=0.5,
        test_nms_thresh=0.4,
        test_topk_per_image=300,
        test_min_box_size=0.01,
        final_nms_thresh=0.5,
        score="stage1",
    ),
    # torchvision weights: RGB, ImageNet mean/std
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    input_format="RGB",
    vis_period=0,
    use_gt_boxes=False,  # TEST.SEARCH.USE_GT_BOXES
    query_context_size=8,  # TEST.SEARCH.QUERY_CONTEXT_SIZE (CBGM query contexts)
    input_normalization="detectron2",
)

# data: 900/1500 input, horizontal flip; the evaluator's search options are TEST.SEARCH's defaults
dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(load_training_records)(dataset_names=["cuhk_sysu_train"], num_pids=NUM_PIDS),
    mapper=L(PersonSearchDatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(900,), max_size=1500, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
    ),
    total_batch_size=5,
    num_workers=4,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="cuhk_sysu_test", filter_empty=False),
    mapper=L(PersonSearchDatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=900, max_size=1500)],
        image_format="RGB",
    ),
    num_workers=4,
)
dataloader.evaluator = L(PersonSearchEvaluator)(dataset_name="${..test.dataset.names}")

# SGD 0.003 at batch 5, momentum 0.9, weight decay 5e-4 (norm layers included)
optimizer = L(SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=5e-4),
    lr=0.003,
    momentum=0.9,
    weight_decay=5e-4,
)

# 20 epochs of 2241 iterations, x0.1 at epoch 16, linear warm-up over the first epoch from 1/1000
MAX_ITER = 44820
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[35856, MAX_ITER]),
    warmup_length=2241 / MAX_ITER,
    warmup_method="linear",
    warmup_factor=0.001,
)

# detectron2's common/train.py fields (detectron2.model_zoo needs pkg_resources, so not imported)
train = dict(
    output_dir="output/SeqNet_R50_lazy",
    init_checkpoint="detectron2://ImageNetPretrained/torchvision/R-50.pkl",
    max_iter=MAX_ITER,
    amp=dict(enabled=False),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=2241, max_to_keep=100),
    eval_period=MAX_ITER,
    log_period=20,
    device="cuda",
)
