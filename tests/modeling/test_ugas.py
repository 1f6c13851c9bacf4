"""UGAS: SFM, SD and UG on hand-made inputs, composed onto NAE and SeqNet heads."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from personsearch.modeling.export import inference_state_dict, training_only_keys
from personsearch.modeling.losses.oim import OIMLoss
from personsearch.modeling.ugas import (
    FeatureStatisticsUncertainty,
    GaussianEmbeddingUncertainty,
    LogitDistillation,
)
from personsearch.modeling.ugas.guidance import (
    certainty_weights,
    memory_update_rates,
    quality_correlation_loss,
    uncertainty_fit_loss,
)
from personsearch.modeling.ugas.self_distillation import distillation_kl
from tests.common import random_input, tiny_cfg

# shallow levels of the tiny network: res2 8 and res3 16 channels
TINY_UGAS = [
    "MODEL.UGAS.SFM.CONV_DIM", 8,
    "MODEL.UGAS.SFM.EMBED_DIM", 16,
    "MODEL.UGAS.SFM.POOLER_RESOLUTION", 7,
    "MODEL.UGAS.SD.START_ITER", 0,
]  # fmt: skip
ALL_OFF = ["MODEL.UGAS.SFM.ENABLED", False, "MODEL.UGAS.SD.ENABLED", False,
           "MODEL.UGAS.UG.ENABLED", False]  # fmt: skip


def ugas(config="synthetic/UGAS_R10.yaml", opts=(), seed=0):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(config, TINY_UGAS + list(opts)))


def _train_step(model, seed=0):
    model.train()
    with EventStorage():
        return model([random_input(seed=seed), random_input(pids=(1, 2), seed=seed + 1)])


# ---- modules on hand-made inputs ----


def test_fusion_modes():
    model = ugas()
    sfm = model.roi_heads.ugas.sfm
    d = F.normalize(torch.randn(5, 16), dim=1)
    s = torch.randn(5, 16) * 7
    fused = sfm.fuse(d, s)
    assert fused.shape == (5, 32) and sfm.embed_dim == 32
    torch.testing.assert_close(fused.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(fused[:, :16] * math.sqrt(2), d)
    torch.testing.assert_close(fused[:, 16:] * math.sqrt(2), F.normalize(s, dim=1))
    for mode, expected in [
        ("mean", F.normalize(d + F.normalize(s, dim=1), dim=1)),
        ("deep", d),
        ("shallow", F.normalize(s, dim=1)),
    ]:
        sfm.fusion = mode
        torch.testing.assert_close(sfm.fuse(d, s), expected)


def test_mean_fusion_needs_equal_dimensions():
    with pytest.raises(ValueError, match="EMBED_DIM .* must equal MODEL.REID_HEAD.EMBED_DIM"):
        ugas(opts=["MODEL.UGAS.SFM.FUSION", "mean", "MODEL.UGAS.SFM.EMBED_DIM", 8])
    with pytest.raises(ValueError, match="FUSION must be one of"):
        ugas(opts=["MODEL.UGAS.SFM.FUSION", "sum"])


def test_sfm_pools_each_level_with_its_own_scale():
    model = ugas()
    sfm = model.roi_heads.ugas.sfm
    assert [p.level_poolers[0].spatial_scale for p in sfm.poolers] == [1 / 4, 1 / 8]
    feats = {"res2": torch.randn(1, 8, 24, 32), "res3": torch.randn(1, 16, 12, 16)}
    sfm.eval()
    out = sfm(feats, [Boxes(torch.tensor([[0.0, 0, 40, 80], [10, 10, 60, 90]]))])
    assert out["shallow"].shape == (2, 16) and out["levels"].shape == (2, 16)


def test_sfm_without_shallow_backbone_outputs_is_a_clear_error():
    with pytest.raises(ValueError, match="MODEL.RESNETS.OUT_FEATURES"):
        ugas(opts=["MODEL.RESNETS.OUT_FEATURES", ["res4"]])


def test_sd_needs_sfm():
    with pytest.raises(ValueError, match="SD.ENABLED needs MODEL.UGAS.SFM.ENABLED"):
        ugas(opts=["MODEL.UGAS.SFM.ENABLED", False])


def test_distillation_kl_value_and_detached_teacher():
    teacher = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    student = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
    t = 2.0
    p = F.softmax(teacher.detach() / t, dim=1)
    q = F.softmax(student.detach() / t, dim=1)
    expected = t * t * (p * (p.log() - q.log())).sum()
    loss = distillation_kl(teacher, student, t)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert teacher.grad is None  # the teacher side gets no gradient
    assert student.grad.abs().sum() > 0


def _sd(**kw):
    args = dict(temperature=2.0, weight=0.5, start_iter=10, num_pids=2, deep_dim=4, shallow_dim=4)
    args.update(kw)
    return LogitDistillation(**args)


def test_sd_one_way_uses_the_lookup_table_columns_of_labeled_rois_and_waits_for_its_start():
    sd = _sd(symmetric_weight=0.0)
    zd, zs = torch.randn(3, 5), torch.randn(3, 5, requires_grad=True)
    pids = torch.tensor([0, -1, 1])
    feats = torch.zeros(3, 4)
    assert sd(zd, zs, feats, feats, pids, iteration=9)["loss_sd"] == 0
    loss = sd(zd, zs, feats, feats, pids, iteration=10)["loss_sd"]
    sel = torch.tensor([0, 2])
    torch.testing.assert_close(loss, 0.5 * distillation_kl(zd[sel, :2], zs[sel, :2], 2.0))


def test_sd_mutual_is_both_directions_each_teacher_detached():
    sd = _sd(symmetric_weight=1.0, start_iter=0)
    zd = torch.randn(4, 6, requires_grad=True)
    zs = torch.randn(4, 6, requires_grad=True)
    pids = torch.tensor([0, 1, 1, 0])
    feats = torch.zeros(4, 4)
    loss = sd(zd, zs, feats, feats, pids, iteration=3)["loss_sd"]
    expected = 0.5 * (
        distillation_kl(zd[:, :2], zs[:, :2], 2.0) + distillation_kl(zs[:, :2], zd[:, :2], 2.0)
    )
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert zd.grad.abs().sum() > 0 and zs.grad.abs().sum() > 0  # each branch learns as student
    # the deep branch's gradient is exactly that of the shallow -> deep term (as teacher it is
    # detached)
    zd2 = zd.detach().clone().requires_grad_(True)
    (0.5 * distillation_kl(zs[:, :2].detach(), zd2[:, :2], 2.0)).backward()
    torch.testing.assert_close(zd.grad, zd2.grad)


def test_sd_ramps_in_linearly_after_its_start():
    sd = _sd(start_iter=10, ramp_iters=4, symmetric_weight=0.0)
    assert [sd.ramp(i) for i in (9, 10, 11, 12, 13, 50)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    zd, zs = torch.randn(2, 3), torch.randn(2, 3)
    pids = torch.tensor([0, 1])
    f = torch.zeros(2, 4)
    full = sd(zd, zs, f, f, pids, iteration=20)["loss_sd"]
    torch.testing.assert_close(sd(zd, zs, f, f, pids, iteration=11)["loss_sd"], 0.5 * full)


def test_sd_gate_distils_only_where_the_teacher_is_right():
    sd = _sd(start_iter=0, symmetric_weight=0.0, gate="correct")
    zd = torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])  # right for RoI 0, wrong for RoI 1
    zs = torch.randn(2, 3)
    pids = torch.tensor([0, 1])
    f = torch.zeros(2, 4)
    loss = sd(zd, zs, f, f, pids, iteration=0)["loss_sd"]
    per_roi = distillation_kl(zd[:, :2], zs[:, :2], 2.0, reduction="none")
    torch.testing.assert_close(loss, 0.5 * per_roi[0] / 2)


def _ug(**kw):
    args = dict(map_channels=[3], embed_dim=4)
    args.update(kw)
    return GaussianEmbeddingUncertainty(**args)


def test_ug_kl_formula_mean_and_sum_over_dimensions():
    d = 4
    mean_kl = _ug(embed_dim=d, kl_weight=1.0, prior_scale=1.0)
    sum_kl = _ug(embed_dim=d, kl_weight=1.0, prior_scale=1.0, kl_reduction="sum")
    log_var = torch.log(torch.tensor([[1 / d] * d, [2 / d] * d]))
    # KL to N(0, I/D) per dimension is 0 at sigma^2 = 1/D and 0.5 (2 - 1 - log 2) at 2/D
    per_dim = 0.5 * (2 - 1 - math.log(2))
    torch.testing.assert_close(mean_kl.kl(log_var), torch.tensor(per_dim / 2))
    torch.testing.assert_close(sum_kl.kl(log_var), torch.tensor(d * per_dim / 2))


def test_ug_samples_and_initial_variance_is_the_prior_for_every_input():
    ug = _ug(prior_scale=0.05, num_samples=2)
    mean = F.normalize(torch.randn(6, 4), dim=1)
    z = ug.sample(mean, torch.full((6, 4), -50.0))  # tiny variance: the sample is the mean
    assert z.shape == (2, 6, 4)
    torch.testing.assert_close(z[1], mean)
    ug.eval()
    log_var = ug.log_variance([torch.randn(5, 3, 7, 7) * 10])
    torch.testing.assert_close(log_var, torch.full((5, 4), math.log(0.05 / 4)))
    torch.testing.assert_close(ug.uncertainty(log_var), torch.full((5,), math.log(0.05 / 4)))
    assert _ug(per_dimension=True).head[3].out_features == 4 and ug.head[3].out_features == 1


def test_ug_variance_head_runs_in_float32_under_autocast():
    ug = _ug(map_channels=[8], vector_channels=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps, vector = [torch.randn(6, 8, 7, 7).bfloat16()], torch.randn(6, 5).bfloat16()
        assert ug.log_variance(maps, vector).dtype == torch.float32


def test_guidance_terms():
    s = torch.tensor([-1.0, 0.0, 1.0])
    w = certainty_weights(s, 1.0)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    assert w[0] > w[1] > w[2]  # the most uncertain RoI weighs least
    torch.testing.assert_close(certainty_weights(s, 0.0), torch.ones(3))
    # the fit loss is minimal (zero gradient) where s = log(ce / mean ce)
    ce = torch.tensor([0.5, 1.0, 4.0])
    best = torch.log(ce / ce.mean()).requires_grad_(True)
    uncertainty_fit_loss(best, ce).backward()
    torch.testing.assert_close(best.grad, torch.zeros(3), atol=1e-6, rtol=0)
    for delta in (0.1, -0.1):
        assert uncertainty_fit_loss(best.detach() + delta, ce) > uncertainty_fit_loss(best, ce)
    assert uncertainty_fit_loss(torch.zeros(3), torch.ones(3)) == 0
    iou = torch.tensor([0.9, 0.7, 0.5])
    assert quality_correlation_loss(torch.tensor([0.0, 1.0, 2.0]), iou) < 0.05
    assert quality_correlation_loss(torch.tensor([2.0, 1.0, 0.0]), iou) > 1.95
    assert memory_update_rates("none", iou, w) is None
    torch.testing.assert_close(memory_update_rates("iou", iou, w), iou)
    torch.testing.assert_close(memory_update_rates("certainty", iou, w).max(), torch.tensor(1.0))


def test_oim_memory_update_rates_and_side_effect_free_logits():
    oim = OIMLoss(num_pids=2, queue_size=2, feat_dim=2, momentum=0.5)
    oim.train()
    oim.lut[0] = torch.tensor([1.0, 0.0])
    plain = oim.lut.clone()
    x, pid = torch.tensor([[0.0, 1.0]]), torch.tensor([0])
    oim.update(x, pid, rates=torch.tensor([0.0]))
    assert torch.equal(oim.lut, plain)  # rate 0: the prototype does not move
    oim.update(x, pid, rates=torch.tensor([1.0]))
    expected = F.normalize(torch.tensor([0.5, 0.5]), dim=0)
    torch.testing.assert_close(oim.lut[0], expected)  # rate 1: the plain update
    oim.lut[0] = torch.tensor([1.0, 0.0])
    oim(x, pid)
    torch.testing.assert_close(oim.lut[0], expected)
    before = oim.lut.clone()
    logits = oim.logits(x)
    ce = oim.per_roi_loss(logits, torch.tensor([1]))
    assert torch.equal(oim.lut, before)  # logits and per-RoI losses never update
    torch.testing.assert_close(ce, F.cross_entropy(logits, torch.tensor([1]), reduction="none"))
    assert oim.per_roi_loss(logits, torch.tensor([-1])) == 0


def test_every_ug_sample_is_scored_against_the_memory_before_the_batch():
    """Regression: with NUM_SAMPLES > 1 the samples after the first used to see a lookup table
    that already held this batch's means (their loss dropped to ~0)."""
    feats = F.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    pids = torch.tensor([0, 1, 2, -1])
    log_var = torch.full((4, 8), -60.0)  # negligible noise: every sample is the mean
    lut = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    losses = []
    for samples in (1, 4):
        oim = OIMLoss(num_pids=3, queue_size=4, feat_dim=8, momentum=0.0)
        oim.train()
        oim.lut.copy_(lut)
        ug = _ug(embed_dim=8, num_samples=samples, loss_weighting=False, kl_weight=0.0,
                 quality_weight=0.0, memory_weight="none")  # fmt: skip
        losses.append(ug.reid_loss(oim, feats, pids, log_var)["loss_oim"])
        torch.testing.assert_close(oim.lut, feats[:3])  # updated once, with the means
    assert losses[0] > 0.1
    torch.testing.assert_close(losses[0], losses[1])


def test_dsu_perturbs_the_statistics_of_maps_in_training_only():
    dsu = FeatureStatisticsUncertainty(probability=1.0)
    assert sum(p.numel() for p in dsu.parameters()) == 0
    x = torch.randn(6, 4, 5, 5) * 3 + 1
    dsu.train()
    y = dsu.perturb(x)
    assert y.shape == x.shape and not torch.allclose(y, x)

    def standardised(t):
        return (t - t.mean(dim=(2, 3), keepdim=True)) / t.std(dim=(2, 3), keepdim=True)

    # only each channel's statistics change, not the pattern
    torch.testing.assert_close(standardised(y), standardised(x), atol=1e-3, rtol=1e-3)
    dsu.eval()
    assert dsu.perturb(x) is x
    assert FeatureStatisticsUncertainty(probability=0.0).perturb(x) is x


# ---- composed onto the heads ----


@pytest.mark.parametrize("config", ["synthetic/UGAS_R10.yaml", "synthetic/UGAS-NAE_R10.yaml"])
def test_training_step_and_inference_of_the_full_model(config):
    model = ugas(config)
    _train_step(model)  # fills the memories: with empty ones OIM's logits carry no gradient
    losses = _train_step(model, seed=2)
    expected = {"loss_oim", "loss_oim_deep", "loss_oim_shallow", "loss_sd", "loss_ug_kl",
                "loss_ug_fit", "loss_det", "loss_box_reg", "loss_rpn_cls",
                "loss_rpn_loc"}  # fmt: skip
    assert expected <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    heads = model.roi_heads
    for name in ("sfm", "ug"):
        grads = [p.grad for p in getattr(heads.ugas, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    for mem in (heads.reid_loss, heads.ugas.deep_loss, heads.ugas.shallow_loss):
        assert mem.lut.norm(dim=1).max() > 0.99  # every branch's memory was updated
    assert heads.reid_loss.lut.shape[1] == 32  # fused: 16 deep + 16 shallow
    model.eval()
    x = random_input()
    x["query_boxes"] = Boxes(torch.tensor([[5.0, 10, 30, 80]]))
    with torch.no_grad():
        out = model([x])[0]
    assert out["instances"].reid_feats.shape[1] == 32 and out["query_feats"].shape == (1, 32)
    assert not out["instances"].has("uncertainty")


def test_one_way_sd_teacher_gets_no_gradient_from_the_distillation():
    model = ugas(opts=["MODEL.UGAS.SD.SYMMETRIC_WEIGHT", 0.0, "MODEL.UGAS.SD.RAMP_ITERS", 0])
    _train_step(model)  # fills the memories (with empty ones all logits are 0 and KL is 0)
    losses = _train_step(model, seed=2)
    assert losses["loss_sd"] > 0
    model.zero_grad()
    losses["loss_sd"].backward()
    deep = model.roi_heads.reid_head
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in deep.parameters())
    shallow = model.roi_heads.ugas.sfm
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in shallow.parameters())


def _grads(module):
    return [p.grad for p in module.parameters() if p.grad is not None and p.grad.abs().sum() > 0]


def test_sd_can_stop_its_gradient_at_each_branch():
    model = ugas(opts=["MODEL.UGAS.SD.STOP_BACKBONE_GRADIENT", True, "MODEL.UGAS.SD.RAMP_ITERS", 0])
    _train_step(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    losses = _train_step(model, seed=2)
    assert all(m.momentum == 0.1 for m in norms)  # restored after the students' second pass
    assert losses["loss_sd"] > 0
    model.zero_grad()
    losses["loss_sd"].backward()
    heads = model.roi_heads
    assert _grads(heads.ugas.sfm) and _grads(heads.reid_head)  # both branches learn (mutual)
    assert not _grads(model.backbone)  # but the shared trunk gets nothing from SD
    assert not _grads(heads.feature_head)  # res5 of the deep branch reads the trunk's maps
    assert _grads(heads.ugas.sfm.proj)


def test_sd_gradient_reaches_the_backbone_by_default():
    model = ugas(opts=["MODEL.UGAS.SD.RAMP_ITERS", 0])
    _train_step(model)
    losses = _train_step(model, seed=2)
    model.zero_grad()
    losses["loss_sd"].backward()
    assert _grads(model.backbone)


def test_ug_without_sfm_on_the_oim_head():
    """Regression: UG without SFM on the OIM head raised KeyError 'oim_features'."""
    model = ugas("synthetic/OIM_R10.yaml", ["MODEL.UGAS.UG.ENABLED", True,
                                            "MODEL.UGAS.UG.OUTPUT_VARIANCE", True])  # fmt: skip
    assert model.roi_heads.ugas.sfm is None and model.roi_heads.ugas.ug is not None
    _train_step(model)
    losses = _train_step(model, seed=2)
    assert {"loss_oim", "loss_ug_fit"} <= set(losses)
    sum(losses.values()).backward()
    assert _grads(model.roi_heads.ugas.ug)
    model.eval()
    with torch.no_grad():
        out = model([random_input()])[0]
    inst = out["instances"]
    assert inst.has("uncertainty") and inst.uncertainty.shape == (len(inst),)


@pytest.mark.parametrize("name", ["GaussianEmbeddingUncertainty", "UncertaintyAwareLoss",
                                  "FeatureStatisticsUncertainty"])  # fmt: skip
def test_ug_variants_train(name):
    opts = ["MODEL.UGAS.UG.NAME", name, "MODEL.UGAS.UG.QUALITY_WEIGHT", 1.0,
            "MODEL.UGAS.UG.MEMORY_WEIGHT", "iou", "MODEL.UGAS.UG.DSU_PROBABILITY", 1.0]  # fmt: skip
    model = ugas(opts=opts)
    _train_step(model)
    losses = _train_step(model, seed=2)
    assert all(torch.isfinite(v) for v in losses.values())
    if name == "FeatureStatisticsUncertainty":
        assert not any(k.startswith("loss_ug") for k in losses)
        assert sum(p.numel() for p in model.roi_heads.ugas.ug.parameters()) == 0
    else:
        assert "loss_ug_quality" in losses
        sum(losses.values()).backward()
        assert _grads(model.roi_heads.ugas.ug)


def test_ug_contract_names_the_head_and_what_is_missing():
    with pytest.raises(ValueError, match="UG's variance head reads RoI maps; Res5FeatureHead"):
        ugas(opts=["MODEL.UGAS.UG.IN_FEATURES", ["res4"]])
    with pytest.raises(ValueError, match="FeatureStatisticsUncertainty' predicts no variance"):
        ugas(opts=["MODEL.UGAS.UG.NAME", "FeatureStatisticsUncertainty",
                   "MODEL.UGAS.UG.OUTPUT_VARIANCE", True])  # fmt: skip
    # by default UG reads the map the RoI feature head reads; any other map can be named
    assert ugas().roi_heads.ugas.ug_inputs == ["res4_map"]
    opts = ["MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4"], "MODEL.UGAS.UG.ENABLED", True,
            "MODEL.UGAS.UG.IN_FEATURES", ["res5_map"]]  # fmt: skip
    model = ugas("synthetic/NAE+_R10.yaml", opts)
    assert model.roi_heads.ugas.ug_inputs == ["res5_map"]
    _train_step(model)


def test_attention_sfm_starts_as_the_plain_sfm_and_learns():
    plain = ugas(opts=["MODEL.UGAS.SD.ENABLED", False, "MODEL.UGAS.UG.ENABLED", False])
    att = ugas(opts=["MODEL.UGAS.SD.ENABLED", False, "MODEL.UGAS.UG.ENABLED", False,
                     "MODEL.UGAS.SFM.NAME", "AttentionShallowFusionModule"])  # fmt: skip
    att.roi_heads.ugas.sfm.load_state_dict(plain.roi_heads.ugas.sfm.state_dict(), strict=False)
    feats = {"res2": torch.randn(1, 8, 24, 32), "res3": torch.randn(1, 16, 12, 16)}
    boxes = [Boxes(torch.tensor([[0.0, 0, 40, 80], [10, 10, 60, 90]]))]
    outs = []
    for m in (plain, att):
        m.eval()
        with torch.no_grad():
            outs.append(m.roi_heads.ugas.sfm(feats, boxes))
    torch.testing.assert_close(outs[0]["shallow"], outs[1]["shallow"])
    assert [a.shape for a in outs[1]["attention"]] == [(2, 1, 7, 7)] * 2
    torch.testing.assert_close(outs[1]["level_weights"], torch.ones(2, 2))
    att.train()
    _train_step(att)
    sum(_train_step(att, seed=2).values()).backward()
    sfm = att.roi_heads.ugas.sfm
    assert _grads(sfm.spatial) and _grads(sfm.level_fc)


@pytest.mark.parametrize(
    "config,base", [("synthetic/UGAS_R10.yaml", "synthetic/SeqNet_R10.yaml"),
                    ("synthetic/UGAS-NAE_R10.yaml", "synthetic/NAE_R10.yaml")]
)  # fmt: skip
def test_every_module_disabled_is_the_base_head_exactly(config, base):
    off = ugas(config, ALL_OFF, seed=0)
    torch.manual_seed(0)
    ref = build_model(tiny_cfg(base))
    assert off.roi_heads.ugas is None
    a, b = off.state_dict(), ref.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same random initialisation, too
    for seed in (0, 3):
        torch.manual_seed(seed)
        la = _train_step(off, seed)
        torch.manual_seed(seed)
        lb = _train_step(ref, seed)
        assert la.keys() == lb.keys()
        assert all(torch.equal(la[k], lb[k]) for k in la)
    off.eval()
    ref.eval()
    x = random_input(seed=5)
    x["query_boxes"] = Boxes(torch.tensor([[5.0, 10, 30, 80]]))
    with torch.no_grad():
        oa, ob = off([x])[0], ref([x])[0]
    assert torch.equal(oa["instances"].pred_boxes.tensor, ob["instances"].pred_boxes.tensor)
    assert torch.equal(oa["instances"].reid_feats, ob["instances"].reid_feats)
    assert torch.equal(oa["query_feats"], ob["query_feats"])


def test_ug_adds_no_parameters_and_no_work_at_inference():
    with_ug = ugas(opts=["MODEL.UGAS.SD.ENABLED", False])
    without = ugas(opts=["MODEL.UGAS.SD.ENABLED", False, "MODEL.UGAS.UG.ENABLED", False])
    # the exported inference weights of the UG model are exactly the parameters of the model
    # without UG
    exported = inference_state_dict(with_ug)
    assert set(exported) == set(inference_state_dict(without))
    assert any(k.startswith("roi_heads.ugas.ug.") for k in training_only_keys(with_ug))
    without.load_state_dict(exported, strict=False)
    with_ug.eval()
    without.eval()
    calls = []
    hooks = [
        m.register_forward_hook(lambda *a: calls.append(1))
        for m in with_ug.roi_heads.ugas.ug.modules()
    ]
    outputs = []
    for model in (with_ug, without):
        x = random_input(seed=4)
        x["query_boxes"] = Boxes(torch.tensor([[5.0, 10, 30, 80]]))
        with torch.no_grad():
            outputs.append(model([x])[0])
    for h in hooks:
        h.remove()
    assert calls == []  # the variance head never ran
    assert torch.equal(outputs[0]["instances"].reid_feats, outputs[1]["instances"].reid_feats)
    assert torch.equal(outputs[0]["query_feats"], outputs[1]["query_feats"])


def test_optional_variance_output():
    model = ugas(opts=["MODEL.UGAS.UG.OUTPUT_VARIANCE", True])
    model.eval()
    heads = model.roi_heads
    feats = {"res2": torch.randn(1, 8, 24, 32), "res3": torch.randn(1, 16, 12, 16),
             "res4": torch.randn(1, 32, 6, 8)}  # fmt: skip
    boxes = [Boxes(torch.tensor([[0.0, 0, 40, 80]]))]
    with torch.no_grad():
        out = heads.reid_forward(feats, boxes, heads.roi_features(feats, boxes))
    assert out["uncertainty"].shape == (1,)
    assert not any(k.startswith("roi_heads.ugas.ug.") for k in training_only_keys(model))
    x = random_input(seed=4)
    x["query_boxes"] = Boxes(torch.tensor([[5.0, 10, 30, 80]]))
    with torch.no_grad():
        inst = model([x])[0]["instances"]
    assert inst.has("uncertainty") and inst.uncertainty.shape == (len(inst),)


def test_predictor_embeds_boxes_with_their_uncertainty():
    from personsearch.engine import PersonSearchPredictor

    cfg = tiny_cfg("synthetic/UGAS_R10.yaml", TINY_UGAS + ["MODEL.UGAS.UG.OUTPUT_VARIANCE", True])
    torch.manual_seed(0)
    predictor = PersonSearchPredictor(cfg)
    image = random_input(seed=1)["image"].permute(1, 2, 0).numpy().copy()
    boxes = [[5.0, 10, 30, 80], [40, 10, 65, 80]]
    feats, unc = predictor.embed(image, boxes, with_uncertainty=True)
    assert feats.shape == (2, 32) and unc.shape == (2,) and torch.isfinite(unc).all()
    torch.testing.assert_close(feats, predictor.embed(image, boxes))
    plain = PersonSearchPredictor(tiny_cfg("synthetic/UGAS_R10.yaml", TINY_UGAS))
    with pytest.raises(ValueError, match="OUTPUT_VARIANCE"):
        plain.embed(image, boxes, with_uncertainty=True)


def test_deprecated_ug_keys_are_accepted():
    model = ugas(opts=["MODEL.UGAS.UG.INIT_SIGMA", 0.5, "MODEL.UGAS.UG.INIT_SCALE", 0.1])
    assert model.roi_heads.ugas.ug is not None


def test_branch_memories_are_saved_and_restored(tmp_path):
    from personsearch.checkpoint import PersonSearchCheckpointer

    model = ugas()
    _train_step(model)
    PersonSearchCheckpointer(model, str(tmp_path)).save("m")
    fresh = ugas(seed=1)
    PersonSearchCheckpointer(fresh).load(str(tmp_path / "m.pth"))
    for name in ("deep_loss", "shallow_loss"):
        for key in ("lut", "queue", "queue_head"):
            a = getattr(getattr(model.roi_heads.ugas, name), key)
            b = getattr(getattr(fresh.roi_heads.ugas, name), key)
            assert torch.equal(a, b), (name, key)


@pytest.mark.parametrize(
    "opts,message",
    [
        (["MODEL.UGAS.SD.TEMPERATURE", 0.0], "MODEL.UGAS.SD.TEMPERATURE must be > 0, got 0.0"),
        (["MODEL.UGAS.UG.NUM_SAMPLES", 0], "MODEL.UGAS.UG.NUM_SAMPLES must be >= 1, got 0"),
        (["MODEL.UGAS.UG.PRIOR_SCALE", 0.0], "MODEL.UGAS.UG.PRIOR_SCALE must be > 0, got 0.0"),
        (["MODEL.UGAS.UG.KL_REDUCTION", "max"], "MODEL.UGAS.UG.KL_REDUCTION must be one of"),
        (["MODEL.UGAS.UG.MEMORY_WEIGHT", "x"], "MODEL.UGAS.UG.MEMORY_WEIGHT must be one of"),
        (["MODEL.UGAS.UG.HIDDEN_DIM", 0], "MODEL.UGAS.UG.HIDDEN_DIM must be >= 1, got 0"),
        (
            [
                "MODEL.UGAS.UG.NAME",
                "FeatureStatisticsUncertainty",
                "MODEL.UGAS.UG.DSU_PROBABILITY",
                2.0,
            ],
            "DSU_PROBABILITY must be in \\[0, 1\\], got 2.0",
        ),
        (["MODEL.UGAS.UG.NAME", "Y"], "MODEL.UGAS.UG.NAME 'Y' is not registered"),
        (["MODEL.UGAS.SD.GATE", "x"], "MODEL.UGAS.SD.GATE must be one of"),
        (["MODEL.UGAS.SFM.NAME", "X"], "MODEL.UGAS.SFM.NAME 'X' is not registered"),
        (["MODEL.UGAS.UG.NORM", "GN"], "MODEL.UGAS.UG.NORM must be one of"),
    ],
)
def test_bad_ugas_values_name_the_key(opts, message):
    with pytest.raises(ValueError, match=message):
        ugas(opts=opts)


def test_ug_quality_guidance_needs_the_rois_iou():
    ug = _ug(embed_dim=8)  # default: IoU supervision and IoU-weighted memory update
    oim = OIMLoss(num_pids=3, queue_size=4, feat_dim=8)
    oim.train()
    feats = F.normalize(torch.randn(3, 8), dim=1)
    with pytest.raises(ValueError, match="need the IoU of each RoI"):
        ug.reid_loss(oim, feats, torch.tensor([0, 1, -1]), torch.zeros(3, 8))
    losses = ug.reid_loss(oim, feats, torch.tensor([0, 1, -1]), torch.zeros(3, 8),
                          iou=torch.tensor([0.9, 0.6, 0.7]))  # fmt: skip
    assert {"loss_oim", "loss_ug_kl", "loss_ug_fit", "loss_ug_quality"} == set(losses)
