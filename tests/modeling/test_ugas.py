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
from personsearch.modeling.ugas import GaussianEmbeddingUncertainty, LogitDistillation
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


def test_sd_uses_the_lookup_table_columns_of_labeled_rois_and_waits_for_its_start():
    sd = LogitDistillation(temperature=3.0, weight=0.5, start_iter=10, num_pids=2, deep_dim=4,
                           shallow_dim=4)  # fmt: skip
    zd, zs = torch.randn(3, 5), torch.randn(3, 5, requires_grad=True)
    pids = torch.tensor([0, -1, 1])
    feats = torch.zeros(3, 4)
    assert sd(zd, zs, feats, feats, pids, iteration=9)["loss_sd"] == 0
    loss = sd(zd, zs, feats, feats, pids, iteration=10)["loss_sd"]
    sel = torch.tensor([0, 2])
    torch.testing.assert_close(loss, 0.5 * distillation_kl(zd[sel, :2], zs[sel, :2], 3.0))


def test_ug_kl_formula_and_samples():
    ug = GaussianEmbeddingUncertainty(in_channels=3, embed_dim=4, kl_weight=1.0, init_sigma=0.5)
    d = 4.0
    log_var = torch.log(torch.tensor([[1 / d] * 4, [2 / d] * 4]))
    # per RoI, KL to N(0, I/D) is 0 when sigma^2 = 1/D and 0.5 * D * (2 - 1 - log 2) for 2/D;
    # the loss is the mean over RoIs
    expected = (0.0 + 0.5 * 4 * (2 - 1 - math.log(2))) / 2
    torch.testing.assert_close(ug.kl(log_var), torch.tensor(expected))
    mean = F.normalize(torch.randn(6, 4), dim=1)
    z = ug.sample(mean, torch.full((6, 4), -50.0))  # tiny variance: the sample is the mean
    assert z.shape == (1, 6, 4)
    torch.testing.assert_close(z[0], mean)
    # at initialisation sigma = INIT_SIGMA for every input
    ug.eval()
    torch.testing.assert_close(
        ug.log_variance(torch.randn(5, 3)), torch.full((5, 4), 2 * math.log(0.5)), atol=1e-3, rtol=0
    )


def test_oim_memory_is_updated_with_the_mean_not_the_sample():
    oim = OIMLoss(num_pids=2, queue_size=2, feat_dim=2, momentum=0.0)
    mean = torch.tensor([[1.0, 0.0]])
    sample = torch.tensor([[0.0, 1.0]])
    oim.train()
    oim(sample, torch.tensor([1]), memory_feats=mean)
    torch.testing.assert_close(oim.lut[1], mean[0])
    oim(sample, torch.tensor([0]), memory_feats=mean, update_memory=False)
    assert oim.lut[0].abs().sum() == 0


# ---- composed onto the heads ----


@pytest.mark.parametrize("config", ["synthetic/UGAS_R10.yaml", "synthetic/UGAS-NAE_R10.yaml"])
def test_training_step_and_inference_of_the_full_model(config):
    model = ugas(config)
    losses = _train_step(model)
    expected = {"loss_oim", "loss_oim_deep", "loss_oim_shallow", "loss_sd", "loss_ug_kl",
                "loss_det", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}  # fmt: skip
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


def test_sd_teacher_gets_no_gradient_from_the_distillation():
    model = ugas()
    _train_step(model)  # fills the memories (with empty ones all logits are 0 and KL is 0)
    losses = _train_step(model, seed=2)
    assert losses["loss_sd"] > 0
    model.zero_grad()
    losses["loss_sd"].backward()
    deep = model.roi_heads.reid_head
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in deep.parameters())
    shallow = model.roi_heads.ugas.sfm
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in shallow.parameters())


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


def test_branch_memories_are_saved_and_restored(tmp_path):
    from personsearch.engine import PersonSearchCheckpointer

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
        (["MODEL.UGAS.UG.INIT_SIGMA", -1.0], "MODEL.UGAS.UG.INIT_SIGMA must be > 0, got -1.0"),
        (["MODEL.UGAS.SFM.NAME", "X"], "MODEL.UGAS.SFM.NAME 'X' is not registered"),
        (["MODEL.UGAS.UG.NORM", "GN"], "MODEL.UGAS.UG.NORM must be one of"),
    ],
)
def test_bad_ugas_values_name_the_key(opts, message):
    with pytest.raises(ValueError, match=message):
        ugas(opts=opts)
