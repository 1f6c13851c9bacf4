"""All configuration keys that personsearch adds to Detectron2's config.

Call :func:`add_personsearch_config` on a fresh ``get_cfg()`` *before* ``merge_from_file``; yaml
files that use these keys fail with ``KeyError: 'Non-existent config key'`` otherwise. Detectron2's
own keys keep their meaning; where personsearch accepts new values for an existing key, the comment
here says so.
"""

import warnings
from typing import Any

from detectron2.config import CfgNode as CN

# Keys renamed in this release, old -> new. The old key stays in the config for one release as a
# deprecated alias (default None = not given): a value given under it (yaml file, command line,
# an older run's config.yaml) is moved to the new key with a FutureWarning by
# :func:`upgrade_renamed_keys`, which get_person_search_cfg and the readers of the new key call.
RENAMED_KEYS = {
    # the score threshold of the *gallery* detections a search ranks; DET_THRESH read like an
    # abbreviation of TEST.SEARCH.DETECTION_THRESH (the detection metrics' threshold)
    "TEST.SEARCH.DET_THRESH": "TEST.SEARCH.GALLERY_SCORE_THRESH",
}


def add_personsearch_config(cfg: CN) -> CN:
    """Add every personsearch key, with its default, to ``cfg`` (in place).

    Args:
        cfg: a Detectron2 config, typically ``detectron2.config.get_cfg()``.

    Returns:
        The same ``cfg``, for chaining.
    """
    _add_data_config(cfg)
    _add_backbone_config(cfg)
    _add_roi_head_config(cfg)
    _add_reid_config(cfg)
    _add_nae_config(cfg)
    _add_seqnet_config(cfg)
    _add_ugas_config(cfg)
    _add_solver_config(cfg)
    _add_search_test_config(cfg)
    _add_test_optimize_config(cfg)
    return cfg


def _add_data_config(cfg: CN) -> None:
    # What to do when an image cannot be read while training: "fail" stops with the file name;
    # "skip" drops the record, logs it and counts it (see MAX_CORRUPT_IMAGES).
    cfg.DATALOADER.ON_CORRUPT_IMAGE = "fail"
    # With ON_CORRUPT_IMAGE "skip": stop once this many distinct images failed to load (counted
    # per data-loading process).
    cfg.DATALOADER.MAX_CORRUPT_IMAGES = 10


def _add_backbone_config(cfg: CN) -> None:
    # Used by the registered backbone "build_person_search_resnet_backbone" and by the res5 RoI
    # head. Besides detectron2's depths it accepts DEPTH 10 (one BasicBlock per stage), and basic
    # blocks (DEPTH 10/18/34) may have any MODEL.RESNETS.RES2_OUT_CHANNELS (detectron2 forces 64),
    # which gives narrow networks that train on a CPU.
    #
    # Keep the stem's BatchNorm updating its running statistics while its affine parameters are
    # frozen (the official NAE/SeqNet behaviour, where conv1/bn1 have requires_grad=False but bn1
    # stays an ordinary BatchNorm in train mode). False converts the stem norm to FrozenBN as
    # detectron2 does. Only used when MODEL.BACKBONE.FREEZE_AT >= 1 and RESNETS.NORM is a BN.
    cfg.MODEL.RESNETS.STEM_NORM_TRACK_STATS = True
    # Zero-pad every batch (after normalisation) to a multiple of this many pixels (0: only to the
    # largest image, enough for C4 models). torchvision's detectors, hence the official SeqNet/NAE
    # code, pad to 32; configs/official/* do the same so that converted models see the same
    # borders.
    cfg.MODEL.BACKBONE.SIZE_DIVISIBILITY = 0
    # How PersonSearchRCNN normalises images: "detectron2" ((x - PIXEL_MEAN) / PIXEL_STD on 0..255
    # values) or "torchvision" (x / 255 first, then mean and std divided by 255: the same function
    # with the official torchvision-based code's float rounding; configs/official/* use it, so that
    # converted models compute bit-identical backbone features).
    cfg.MODEL.INPUT_NORMALIZATION = "detectron2"
    # MODEL.PROPOSAL_GENERATOR.NAME "TorchvisionRPN": detectron2's RPN with torchvision's test-time
    # proposal filtering (configs/official/*, for converted official models).
    cfg.MODEL.TORCHVISION_RPN = CN()
    # Scores the proposal NMS ranks by: "probabilities" (sigmoid of the logits, torchvision >=
    # 0.8, what the official code computes on a current torchvision) or "logits" (torchvision
    # 0.4, the official code's pinned version). They differ only where the sigmoid saturates.
    cfg.MODEL.TORCHVISION_RPN.NMS_SCORES = "probabilities"
    # Proposals with a side below this many input pixels are dropped (torchvision's 1e-3).
    cfg.MODEL.TORCHVISION_RPN.MIN_SIZE = 0.001
    # FPN backbones (personsearch/modeling/backbone): "build_person_search_resnet_fpn_backbone" is
    # detectron2's FPN (MODEL.FPN.IN_FEATURES / OUT_CHANNELS / NORM / FUSE_TYPE, levels p2..p6 on
    # res2..res5) on this ResNet body. "build_person_search_resnet_c4_fpn_backbone" outputs the C4
    # body's MODEL.RESNETS.OUT_FEATURES (res4 for the RPN and the RoI head) plus an FPN on
    # MODEL.FPN.IN_FEATURES (e.g. res2..res4), computing the body once; this key names the FPN
    # levels it returns (read by UGAS's SFM, MODEL.UGAS.SFM.IN_FEATURES). The other levels' 3x3
    # output convolutions are not built, so no parameter is left without a gradient.
    cfg.MODEL.FPN.C4_FPN_OUT_FEATURES = ["p2", "p3"]


def _add_roi_head_config(cfg: CN) -> None:
    cfg.MODEL.ROI_FEATURE_HEAD = CN()
    # Registered name (personsearch.modeling.ROI_FEATURE_HEAD_REGISTRY) of what every person-search
    # RoI head (OIM, NAE, NAE+, SeqNet, UGAS on any of them) runs on each RoI pooled from
    # MODEL.ROI_HEADS.IN_FEATURES: "Res5FeatureHead" (C4: res5 on the res4 RoI map; outputs res4,
    # res5, res4_map, res5_map) or "FPNFeatureHead" (FPN: RoIs pooled from their level, p2..p5, then
    # the box head MODEL.ROI_BOX_HEAD.NAME/NUM_FC/FC_DIM; outputs box_head, fpn, fpn_map).
    # MODEL.REID_HEAD.IN_FEATURES and MODEL.UGAS.UG.IN_FEATURES name these outputs.
    cfg.MODEL.ROI_FEATURE_HEAD.NAME = "Res5FeatureHead"
    # How the C4 RoI head turns per-RoI maps into vectors: "max" (global max pooling, as the
    # official NAE/SeqNet code does despite its comments) or "avg" (the original OIM Caffe model).
    cfg.MODEL.ROI_BOX_HEAD.GLOBAL_POOL = "max"
    # RoIAlign implementation on the CPU for the person-search heads and UGAS's SFM: "sparse"
    # (personsearch.layers.roi_align: a sparse-matrix product equal to torchvision's values to
    # float rounding, with a multithreaded backward several times faster) or "torchvision" (its
    # kernel; serial backward). CUDA tensors always use torchvision's kernel.
    cfg.MODEL.ROI_BOX_HEAD.ROI_ALIGN_CPU = "sparse"


def _add_reid_config(cfg: CN) -> None:
    cfg.MODEL.REID_HEAD = CN()
    # Registered name (personsearch.modeling.REID_HEAD_REGISTRY) of the module that maps pooled
    # RoI features to re-identification embeddings. "LinearEmbeddingHead": OIM's FC + L2 norm;
    # "NormAwareEmbeddingHead": NAE (norm = detection score, used by NAEROIHeads and
    # SeqNetROIHeads); "PixelNormAwareEmbeddingHead": NAE+ (NAEPlusROIHeads).
    cfg.MODEL.REID_HEAD.NAME = "LinearEmbeddingHead"
    # Dimension D of the embedding (NAE heads split it evenly over IN_FEATURES: 128 + 128).
    cfg.MODEL.REID_HEAD.EMBED_DIM = 256
    # Which RoI features the head reads, in this order. Pooled vectors (Linear/NormAware heads):
    # "res4" (global-pooled RoIAlign input of the res5 head) and "res5" (global-pooled res5
    # output). RoI maps (PixelNormAware head): "res4_map" (the RoIAlign output, e.g. 14x14) and
    # "res5_map" (the res5 output, e.g. 7x7). On the FPN feature head (MODEL.ROI_FEATURE_HEAD.NAME
    # "FPNFeatureHead"): "fpn" (global-pooled RoIAlign map), "box_head" (the box head's output) and
    # the map "fpn_map".
    cfg.MODEL.REID_HEAD.IN_FEATURES = ["res5"]
    # Normalisation layers of the head. LinearEmbeddingHead: after its projection, "" (none, the
    # OIM paper), "BN" or "SyncBN" (centring is needed when training from scratch, see the head).
    # NAE heads: "BN" or "SyncBN" for every BatchNorm of the head (projectors, norm rescaler) and
    # of the NAE box regressor; "SyncBN" synchronises the statistics over processes, as the
    # reference's multi-GPU training does (personsearch.layers.SyncBatchNormND, CPU and GPU).
    cfg.MODEL.REID_HEAD.NORM = ""

    cfg.MODEL.OIM = CN()
    # Number of labeled identities in the training split = rows of the lookup table (LUT).
    # Must be >= the largest training person_id + 1; the trainer checks it before training.
    # CUHK-SYSU 5532, PRW 483 (the official codes' 482 is a bug, see docs/METHODS.md).
    cfg.MODEL.OIM.NUM_PIDS = 5532
    # Size of the circular queue (CQ) of unlabeled-person features: 5000 CUHK-SYSU, 500 PRW.
    cfg.MODEL.OIM.CQ_SIZE = 5000
    # Inverse temperature 1/tau applied to the cosine logits: 30 in NAE/SeqNet, 10 in the OIM paper.
    cfg.MODEL.OIM.SCALAR = 30.0
    # LUT update v <- m * v + (1 - m) * x, then v is re-normalised.
    cfg.MODEL.OIM.MOMENTUM = 0.5
    # Weight of the OIM loss in the total loss.
    cfg.MODEL.OIM.LOSS_WEIGHT = 1.0
    # Distributed debugging: every this many iterations (and after the last one) compare a hash
    # of every OIM buffer (lut, queue, queue_head) across ranks and stop with an error naming the
    # buffer and the iteration if they differ. Costs one hash per buffer and a small all-gather
    # per check. 0 (default): off. Ignored in single-process training.
    cfg.MODEL.OIM.SYNC_CHECK_PERIOD = 0


def _add_nae_config(cfg: CN) -> None:
    # The NAE family's RoI heads (NAEROIHeads, NAEPlusROIHeads, and SeqNetROIHeads' second stage).
    cfg.MODEL.NAE = CN()
    # Weight of the detection loss on the norm: binary cross-entropy of the rescaled norm (NAE,
    # SeqNet stage 2) or the per-cell BCE against the soft pixel labels (NAE+).
    cfg.MODEL.NAE.DET_LOSS_WEIGHT = 1.0
    # Weight of the smooth-L1 loss of the NAE box regressor (Linear + BN on pooled res5): 10 in
    # the official NAE command; 1 for SeqNet's second stage.
    cfg.MODEL.NAE.BOX_REG_LOSS_WEIGHT = 10.0
    # At test time, detections whose width or height is below this many input pixels are dropped
    # before NMS (the reference's torchvision remove_small_boxes).
    cfg.MODEL.NAE.MIN_BOX_SIZE_TEST = 0.01


def _add_seqnet_config(cfg: CN) -> None:
    # SeqNetROIHeads: stage 1 = res5 copy + detectron2's FastRCNNOutputLayers on the proposals
    # (its regression weight is MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT, 10 in the reference; its
    # test NMS is MODEL.ROI_HEADS.NMS_THRESH_TEST, 0.4); stage 2 = a second res5 copy + the NAE
    # embedding and box regressor (MODEL.NAE.*) on the refined, detached stage-1 boxes.
    cfg.MODEL.SEQNET = CN()
    # Weight of stage 1's softmax cross-entropy.
    cfg.MODEL.SEQNET.STAGE1_CLS_LOSS_WEIGHT = 1.0
    # NMS threshold of the final (stage-2 refined) boxes at test time: 0.5 in the reference.
    cfg.MODEL.SEQNET.NMS_THRESH_TEST = 0.5
    # Detection score of the final boxes, also the CWS weight: "stage1" (the reference's First
    # Classification Score, the stage-1 softmax) or "stage2" (sigmoid of stage 2's rescaled norm).
    cfg.MODEL.SEQNET.SCORE = "stage1"


def _add_ugas_config(cfg: CN) -> None:
    # UGAS modules on the embedding path of any person-search RoI head (personsearch/modeling/
    # ugas). Each is switched on by its ENABLED key; with all three off the head is unchanged.
    cfg.MODEL.UGAS = CN()

    # SFM, the shallow fusion module: per-box multi-scale shallow features fused with the deep
    # (base head's) embedding.
    cfg.MODEL.UGAS.SFM = CN({"ENABLED": False})
    # Registered module (personsearch.modeling.ugas.SFM_REGISTRY): "ShallowFusionModule" (pooled
    # levels, 1x1/3x3 convs, global max pooling) or "AttentionShallowFusionModule" (the same with
    # spatial and/or level attention before pooling, keys below).
    cfg.MODEL.UGAS.SFM.NAME = "ShallowFusionModule"
    # Backbone features pooled per box, each with its own RoIAlign scale: "res2"/"res3" of the C4
    # backbone (add them to MODEL.RESNETS.OUT_FEATURES) or FPN levels "p2"/"p3".
    cfg.MODEL.UGAS.SFM.IN_FEATURES = ["res2", "res3"]
    # RoIAlign output size, sampling ratio and type of the shallow levels.
    cfg.MODEL.UGAS.SFM.POOLER_RESOLUTION = 14
    cfg.MODEL.UGAS.SFM.POOLER_SAMPLING_RATIO = 2
    cfg.MODEL.UGAS.SFM.POOLER_TYPE = "ROIAlign"
    # Channels of each level's Conv1x1 + BN + ReLU (and of its 3x3 convs): the per-level vector.
    cfg.MODEL.UGAS.SFM.CONV_DIM = 256
    # Number of Conv3x3 + BN + ReLU after the 1x1 projection of each level (0 = none).
    cfg.MODEL.UGAS.SFM.NUM_CONV = 1
    # D_s of the shallow embedding (Linear + BN1d over the concatenated level vectors).
    cfg.MODEL.UGAS.SFM.EMBED_DIM = 256
    # Retrieval embedding: "concat" ([d/|d|; s/|s|] / sqrt 2, D_d + D_s dims; the poster's best),
    # "mean" (normalize(d/|d| + s/|s|), needs D_s = D_d), "deep" (d only), "shallow" (s only).
    # OIM's main loss (MODEL.OIM) is on this embedding; the detection score stays on the deep one.
    cfg.MODEL.UGAS.SFM.FUSION = "concat"
    # BatchNorm of the module: "BN" or "SyncBN".
    cfg.MODEL.UGAS.SFM.NORM = "BN"
    # Weights of the per-branch OIM losses on d and on s (each with its own lookup table and
    # queue, sized like MODEL.OIM).
    cfg.MODEL.UGAS.SFM.DEEP_LOSS_WEIGHT = 0.5
    cfg.MODEL.UGAS.SFM.SHALLOW_LOSS_WEIGHT = 0.5
    # AttentionShallowFusionModule only: gate every position of each level's map by
    # 2 sigmoid(conv1x1) before global max pooling (spatial), and weight the levels per box by a
    # softmax over them (level). Both start as the identity.
    cfg.MODEL.UGAS.SFM.SPATIAL_ATTENTION = True
    cfg.MODEL.UGAS.SFM.LEVEL_ATTENTION = True

    # SD, self-distillation between the deep and the shallow branch's OIM logits (needs SFM).
    cfg.MODEL.UGAS.SD = CN({"ENABLED": False})
    # Registered module (personsearch.modeling.ugas.SD_REGISTRY).
    cfg.MODEL.UGAS.SD.NAME = "LogitDistillation"
    # Temperature T of the softened distributions (each direction is scaled by T^2).
    cfg.MODEL.UGAS.SD.TEMPERATURE = 2.0
    # Weight of the deep -> shallow KL term (WEIGHT * T^2 = 0.5: SD stays below the OIM losses).
    cfg.MODEL.UGAS.SD.WEIGHT = 0.125
    # First iteration with the loss (the memories are empty at first); -1: SOLVER.WARMUP_ITERS.
    cfg.MODEL.UGAS.SD.START_ITER = -1
    # Iterations over which the loss weight rises linearly from 0 after START_ITER (0: a step;
    # -1: SOLVER.WARMUP_ITERS, about one epoch in the recipes).
    cfg.MODEL.UGAS.SD.RAMP_ITERS = -1
    # Weight, relative to WEIGHT, of the reverse shallow -> deep term: 1 = mutual learning (each
    # branch learns from the other), 0 = one-way deep -> shallow (BYOT).
    cfg.MODEL.UGAS.SD.SYMMETRIC_WEIGHT = 1.0
    # "none", or "correct": distil a RoI in a direction only where that direction's teacher ranks
    # the RoI's identity first.
    cfg.MODEL.UGAS.SD.GATE = "none"
    # True: SD's gradient stops at each branch's own layers (the students are recomputed from the
    # detached pooled RoI maps / vectors), so it cannot move the shared backbone.
    cfg.MODEL.UGAS.SD.STOP_BACKBONE_GRADIENT = False
    # Weight of the feature hint 1 - cos(P s, d) with a training-only projector P (0 = off).
    cfg.MODEL.UGAS.SD.HINT_WEIGHT = 0.0
    # Distil on labeled foreground RoIs only (False: unlabeled foreground RoIs too).
    cfg.MODEL.UGAS.SD.LABELED_ONLY = True

    # UG, uncertainty guidance (training only; no inference cost unless OUTPUT_VARIANCE).
    cfg.MODEL.UGAS.UG = CN({"ENABLED": False})
    # Registered module (personsearch.modeling.ugas.UG_REGISTRY): "GaussianEmbeddingUncertainty"
    # (a Gaussian embedding: input-dependent variance, OIM on reparameterised samples, guidance
    # below), "UncertaintyAwareLoss" (the same variance head and guidance without sampling, UAL)
    # or "FeatureStatisticsUncertainty" (DSU: parameter-free perturbation of the RoI maps'
    # channel statistics; no variance, only DSU_PROBABILITY applies).
    cfg.MODEL.UGAS.UG.NAME = "GaussianEmbeddingUncertainty"
    # RoI maps the variance head reads ([]: the RoIAlign map of the RoI feature head, "res4_map"
    # in C4 heads, "fpn_map" in FPN heads); each is reduced to MAP_DIM channels by Conv1x1 + BN +
    # ReLU and average-pooled to a MAP_GRID x MAP_GRID grid (so the head sees where in the box the
    # person is). With SFM the head also reads SFM's level vectors.
    cfg.MODEL.UGAS.UG.IN_FEATURES = []
    cfg.MODEL.UGAS.UG.MAP_DIM = 32
    cfg.MODEL.UGAS.UG.MAP_GRID = 4
    # c of the prior N(0, c I / D): the noise of a sample is ~sqrt(c) of the unit embedding.
    cfg.MODEL.UGAS.UG.PRIOR_SCALE = 0.05
    # Weight of the KL regulariser to the prior (0 = none) and its reduction over dimensions:
    # "mean" (keeps the variance input-dependent) or "sum" (with PRIOR_SCALE 1: the first
    # reconstruction, whose variance collapsed to a constant; docs/METHODS.md "UG").
    cfg.MODEL.UGAS.UG.KL_WEIGHT = 0.1
    cfg.MODEL.UGAS.UG.KL_REDUCTION = "mean"
    # Train OIM on reparameterised samples (False: on the mean); samples per RoI, all scored
    # against the memories before this batch, which are then updated once with the mean.
    cfg.MODEL.UGAS.UG.SAMPLE = True
    cfg.MODEL.UGAS.UG.NUM_SAMPLES = 1
    # Guidance by loss weighting (UAL): each labeled RoI's OIM loss weighted by
    # exp(-WEIGHT_POWER * s) renormalised to mean 1 (s: its mean relative log-variance), and s fit
    # to the RoI's relative difficulty with weight FIT_WEIGHT.
    cfg.MODEL.UGAS.UG.LOSS_WEIGHTING = True
    cfg.MODEL.UGAS.UG.WEIGHT_POWER = 1.0
    cfg.MODEL.UGAS.UG.FIT_WEIGHT = 1.0
    # Weight of the box-quality supervision 1 - pearson(s, -log IoU) (0 = off). On by default:
    # without it the variance does not track box quality (MODEL_ZOO.md, UG variants).
    cfg.MODEL.UGAS.UG.QUALITY_WEIGHT = 1.0
    # Rate of each RoI's lookup-table update: "none" (plain OIM), "iou" (scaled by the box's IoU
    # with its ground truth) or "certainty" (by its certainty weight / the batch maximum).
    cfg.MODEL.UGAS.UG.MEMORY_WEIGHT = "iou"
    # Entropy floor: weight of relu(ENTROPY_FLOOR - s) (0 = off), against a vanishing variance.
    cfg.MODEL.UGAS.UG.ENTROPY_WEIGHT = 0.0
    cfg.MODEL.UGAS.UG.ENTROPY_FLOOR = -2.0
    # Width of the variance head's hidden layer (Linear + BN + ReLU + Linear), one variance per
    # RoI (an isotropic Gaussian) or per embedding dimension (PER_DIMENSION, DUL's diagonal), and
    # the bound of |log-variance - log prior| (soft, tanh).
    cfg.MODEL.UGAS.UG.HIDDEN_DIM = 128
    cfg.MODEL.UGAS.UG.PER_DIMENSION = False
    cfg.MODEL.UGAS.UG.CLAMP = 4.0
    # BatchNorm of the variance head: "BN" or "SyncBN".
    cfg.MODEL.UGAS.UG.NORM = "BN"
    # FeatureStatisticsUncertainty only: probability that a training batch is perturbed.
    cfg.MODEL.UGAS.UG.DSU_PROBABILITY = 0.5
    # Also run the variance head at inference: every detection gets "uncertainty" (mean
    # log-variance of its embedding, larger = coarser) and PersonSearchPredictor.embed(...,
    # with_uncertainty=True) returns it for given boxes. Off: UG costs nothing at inference.
    cfg.MODEL.UGAS.UG.OUTPUT_VARIANCE = False
    # Replaced by PRIOR_SCALE and HIDDEN_DIM (the variance now starts at the prior's).
    cfg.register_deprecated_key("MODEL.UGAS.UG.INIT_SIGMA")
    cfg.register_deprecated_key("MODEL.UGAS.UG.INIT_SCALE")


def _add_solver_config(cfg: CN) -> None:
    # SOLVER.CLIP_GRADIENTS.CLIP_TYPE additionally accepts "full_model": clip the total norm of
    # all gradients together (torch.nn.utils.clip_grad_norm_), as the official NAE/SeqNet code
    # does. detectron2's "norm" clips every parameter separately.
    # SOLVER.AMP.ENABLED (detectron2's key) runs the training forward pass under torch.autocast
    # in PersonSearchTrainer's guarded train loop, with this dtype: "bfloat16" (CPU or GPU) or
    # "float16" (GPU; the loss is scaled by a GradScaler). OIM memories, logits and updates stay
    # float32.
    cfg.SOLVER.AMP.DTYPE = "bfloat16"
    # Mixed precision at inference (PersonSearchRCNN.inference): outputs are returned as float32.
    cfg.TEST.AMP = CN({"ENABLED": False})
    # "bfloat16" (CPU or GPU) or "float16" (GPU).
    cfg.TEST.AMP.DTYPE = "bfloat16"
    cfg.SOLVER.NONFINITE = CN()
    # How many training steps with a NaN/Inf loss or gradient may be skipped (no optimizer step,
    # logged with the iteration and the offending loss/parameter names) before training stops.
    # 0 (default): stop at the first one.
    cfg.SOLVER.NONFINITE.MAX_SKIPS = 0


def _add_search_test_config(cfg: CN) -> None:
    cfg.TEST.SEARCH = CN()
    # CUHK-SYSU gallery size: one of the TestG{N}.mat files present (official: 50, 100, 500, 1000,
    # 2000, 4000; the standard is 100). -1: TestG50 plus every other test image as a negative.
    cfg.TEST.SEARCH.GALLERY_SIZE = 100
    # Query subset to evaluate: "" (all queries), "resolution" / "occlusion" (CUHK-SYSU's
    # Resolution.mat / Occlusion.mat protocols) or "lowres" (the LOWRES_FRACTION of queries with
    # the smallest box height; any dataset).
    cfg.TEST.SEARCH.SUBSET = ""
    # Fraction of queries in the "lowres" subset (0.1 matches CUHK-SYSU's 290 of 2900).
    cfg.TEST.SEARCH.LOWRES_FRACTION = 0.1
    # Gallery detections with a score below this are discarded before searching (the search
    # protocols' det_thresh). Not the detection metrics' threshold (DETECTION_THRESH below).
    cfg.TEST.SEARCH.GALLERY_SCORE_THRESH = 0.5
    # Deprecated alias of GALLERY_SCORE_THRESH (its old name), removed in the next release; None =
    # not given. A value given here replaces GALLERY_SCORE_THRESH, with a warning (RENAMED_KEYS).
    cfg.TEST.SEARCH.DET_THRESH = None
    # Confidence-weighted similarity: multiply gallery embeddings by their detection score.
    # Query embeddings are never weighted.
    cfg.TEST.SEARCH.CWS = True
    # PRW-style galleries only: also remove the query camera's frames from the gallery.
    cfg.TEST.SEARCH.CROSS_CAMERA = False
    # Use the ground-truth boxes of every test image as its "detections" (score 1), so that search
    # accuracy measures re-identification alone (the NAE paper's upper-bound ablation).
    cfg.TEST.SEARCH.USE_GT_BOXES = False
    # Context Bipartite Graph Matching re-ranking (SeqNet, test time only).
    cfg.TEST.SEARCH.CBGM = CN({"ENABLED": False})
    # Number of top-ranked gallery detections whose images are re-scored. -1: the reference value
    # of the dataset's protocol (CUHK-SYSU 10, PRW 30; 10 otherwise).
    cfg.TEST.SEARCH.CBGM.K1 = -1
    # Size of the query-image context: the query box plus the K2 - 1 best other detections of the
    # query image. -1: the protocol's reference value (CUHK-SYSU 3, PRW 4; 3 otherwise).
    cfg.TEST.SEARCH.CBGM.K2 = -1
    # Number of query-image context entries the model saves per query in the results file (the
    # reference's context: the query image's detections with the query box forced in at score 1
    # before NMS, computed in the same backbone pass by the NAE-family heads). CBGM uses the first
    # K2; 0 saves none (CBGM then emulates the context from the query image's detections).
    cfg.TEST.SEARCH.QUERY_CONTEXT_SIZE = 8
    # Detection metrics: detections below this score are ignored (the reference uses 0.01; the
    # model's own SCORE_THRESH_TEST usually removes more).
    cfg.TEST.SEARCH.DETECTION_THRESH = 0.01
    # Detection metrics over labeled ground truth only (person_id >= 0) instead of all people.
    cfg.TEST.SEARCH.DETECTION_LABELED_ONLY = False
    # Save the raw per-image results file (search_results.pth) to the evaluator's output folder so
    # that tools/evaluate_search.py can re-score any protocol offline.
    cfg.TEST.SEARCH.SAVE_RESULTS = True


def get_person_search_cfg(config_file: str = "", opts=()) -> CN:
    """A detectron2 config with the personsearch keys, merged from ``config_file`` and ``opts``.

    Args:
        config_file: a yaml file (may use ``_BASE_``); "" for the defaults only.
        opts: ``["KEY", "VALUE", ...]`` overrides, as on the command line.

    Returns:
        The (unfrozen) config.
    """
    from detectron2.config import get_cfg

    cfg = add_personsearch_config(get_cfg())
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return upgrade_renamed_keys(cfg)


def _lookup(cfg: CN, key: str, default: Any = None) -> Any:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def upgrade_renamed_keys(cfg: CN) -> CN:
    """Move the values given under deprecated aliases to their new keys (:data:`RENAMED_KEYS`).

    Each alias given (not None) emits a ``FutureWarning`` naming the new key. Giving both an alias
    and its new key with different values is an error.

    Args:
        cfg: a personsearch config (frozen or not; it is not changed).

    Returns:
        ``cfg`` itself when no alias is given, else an upgraded copy (frozen if ``cfg`` was) whose
        aliases are None again.
    """
    given = {old: new for old, new in RENAMED_KEYS.items() if _lookup(cfg, old) is not None}
    if not given:
        return cfg
    from detectron2.config import get_cfg

    defaults = add_personsearch_config(get_cfg())
    out = cfg.clone()
    out.defrost()
    for old, new in given.items():
        value, current = _lookup(cfg, old), _lookup(cfg, new)
        default = _lookup(defaults, new)
        if current != default and current != value:
            raise ValueError(
                f"Config keys {old} (deprecated) and {new} are both given, with different values "
                f"({value!r} and {current!r}); give only {new}."
            )
        warnings.warn(
            f"Config key {old} is deprecated and will be removed in the next release; it was "
            f"renamed {new} ({old} {value!r} is used as {new}).",
            FutureWarning,
            stacklevel=2,
        )
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
        *parents, last = new.split(".")
        _lookup(out, ".".join(parents))[last] = value
        *parents, last = old.split(".")
        _lookup(out, ".".join(parents))[last] = None
    if cfg.is_frozen():
        out.freeze()
    return out


def _add_test_optimize_config(cfg: CN) -> None:
    # Inference-only optimisations that PersonSearchPredictor and tools/benchmark.py apply to the
    # built model after loading its weights (personsearch/modeling/inference_optimization.py);
    # training and the trainer's evaluation never use them. Each computes the same function up to
    # float rounding (tolerances in MODEL_ZOO.md, "Speed").
    cfg.TEST.OPTIMIZE = CN()
    # Fold every BatchNorm that follows a convolution or linear layer into that layer (one pass
    # over each feature map less). The folded model refuses to train.
    cfg.TEST.OPTIMIZE.FOLD_BATCHNORM = True
    # Weights and feature maps in channels_last (NHWC) order: "on", "off", or "auto" = on for the
    # CPU (oneDNN; measured faster, MODEL_ZOO.md) and on a GPU under TEST.AMP (tensor cores), off
    # for a GPU in float32.
    cfg.TEST.OPTIMIZE.CHANNELS_LAST = "auto"
    # torch.compile the fixed-shape parts (backbone, res5 RoI heads); proposal generation, NMS
    # and post-processing stay eager. The first calls of every new input shape compile (seconds
    # to minutes); for long runs on a GPU.
    cfg.TEST.OPTIMIZE.COMPILE = False
