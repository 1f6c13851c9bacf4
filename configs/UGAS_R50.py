"""UGAS (on SeqNet) on CUHK-SYSU as a detectron2 LazyConfig: the model of UGAS_R50.yaml, i.e.
SeqNet_R50.py plus the three UGAS modules on its second stage (tests/test_lazy_config.py checks
that both configs build the same modules and hyper-parameters).

    cfg = LazyConfig.load("configs/UGAS_R50.py"); model = instantiate(cfg.model)

Data, optimiser, schedule and the notes on checkpoints and gradient clipping: SeqNet_R50.py.
"""

from detectron2.config import LazyCall as L

from personsearch.layers import build_roi_pooler
from personsearch.modeling import OIMLoss
from personsearch.modeling.ugas import (
    GaussianEmbeddingUncertainty,
    LogitDistillation,
    ShallowFusionModule,
    UGASEmbedding,
)

from .SeqNet_R50 import (
    CQ_SIZE,
    EMBED_DIM,
    NUM_PIDS,
    RES4,
    RES5,
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

SHALLOW_DIM = 256  # D_s of the shallow embedding
SFM_CONV_DIM = 256  # per-level vector of SFM
FUSED_DIM = EMBED_DIM + SHALLOW_DIM  # "concat" fusion: [d/|d|; s/|s|] / sqrt 2
WARMUP_ITERS = 2241  # SD starts after the warm-up (MODEL.UGAS.SD.START_ITER -1)


def _oim(feat_dim, loss_weight):
    return L(OIMLoss)(
        num_pids=NUM_PIDS,
        queue_size=CQ_SIZE,
        feat_dim=feat_dim,
        scalar=30.0,
        momentum=0.5,
        loss_weight=loss_weight,
    )


def _shallow_pooler(stride):
    # each shallow level pooled on its own at 14x14, sampling 2, with its own scale
    return L(build_roi_pooler)(
        output_size=14,
        scales=(1.0 / stride,),
        sampling_ratio=2,
        pooler_type="ROIAlign",
        cpu_impl="sparse",
    )


# the body also returns res2 (stride 4) and res3 (stride 8) for SFM; RPN and RoI heads read res4
model.backbone.out_features = ["res2", "res3", "res4"]
# OIM's main loss is on the fused 512-d retrieval embedding
model.roi_heads.reid_loss.feat_dim = FUSED_DIM
model.roi_heads.ugas = L(UGASEmbedding)(
    deep_dim=EMBED_DIM,
    # SFM: res2 (256 ch) and res3 (512 ch) -> Conv1x1 + Conv3x3 (256) -> max pool -> Linear + BN
    sfm=L(ShallowFusionModule)(
        in_features=["res2", "res3"],
        poolers=[_shallow_pooler(4), _shallow_pooler(8)],
        in_channels=[RES4 // 4, RES4 // 2],
        conv_dim=SFM_CONV_DIM,
        num_conv=1,
        embed_dim=SHALLOW_DIM,
        deep_dim=EMBED_DIM,
        fusion="concat",
        norm="BN",
    ),
    # SD: mutual logit distillation over the identities (T = 2, weight 0.125 per direction),
    # ramped in over the warm-up's length after the warm-up
    sd=L(LogitDistillation)(
        temperature=2.0,
        weight=0.125,
        start_iter=WARMUP_ITERS,
        ramp_iters=WARMUP_ITERS,
        symmetric_weight=1.0,
        gate="none",
        hint_weight=0.0,
        labeled_only=True,
        stop_backbone_gradient=False,
        num_pids=NUM_PIDS,
        deep_dim=EMBED_DIM,
        shallow_dim=SHALLOW_DIM,
    ),
    # UG: variance head on the pooled res4 RoI map and SFM's level vectors (training only)
    ug=L(GaussianEmbeddingUncertainty)(
        map_channels=[RES4],
        vector_channels=2 * SFM_CONV_DIM,
        embed_dim=FUSED_DIM,
        map_dim=32,
        map_grid=4,
        prior_scale=0.05,
        kl_weight=0.1,
        kl_reduction="mean",
        sample=True,
        num_samples=1,
        loss_weighting=True,
        weight_power=1.0,
        fit_weight=1.0,
        quality_weight=1.0,
        memory_weight="iou",
        entropy_floor=-2.0,
        entropy_weight=0.0,
        hidden_dim=128,
        per_dimension=False,
        clamp=4.0,
        norm="BN",
    ),
    # per-branch OIM losses with their own memories, weights 0.5 / 0.5
    deep_loss=_oim(EMBED_DIM, 0.5),
    shallow_loss=_oim(SHALLOW_DIM, 0.5),
    main_feature="oim_features",
    ug_inputs=["res4_map"],
    output_variance=False,
)

train.output_dir = "output/UGAS_R50_lazy"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
