"""FPN person search: the FPN backbone on our ResNet body, the FPN OIM/NAE heads (training,
detections, query embeddings, CBGM contexts, ground-truth boxes), the C4+FPN backbone that UGAS's
SFM reads p2/p3 from, and initialisation from a COCO R50-FPN detector file."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.backbone.fpn import FPN
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from personsearch.checkpoint import PersonSearchCheckpointer
from personsearch.modeling.backbone.c4_fpn import C4FPNBackbone
from personsearch.modeling.backbone.resnet import PersonSearchResNet
from tests.common import random_input, tiny_cfg
from tests.modeling.test_model_zoo_weights import NARROW_R50, detectron2_detector_file

NAE_FPN = "synthetic/NAE_R10_FPN.yaml"
# narrow FPN and box head on the tiny body (res2..res5: 8, 16, 32, 64 channels)
TINY_FPN = ["MODEL.FPN.OUT_CHANNELS", 16, "MODEL.ROI_BOX_HEAD.FC_DIM", 32]
OIM_FPN = ["MODEL.ROI_HEADS.NAME", "OIMROIHeads", "MODEL.REID_HEAD.NAME", "LinearEmbeddingHead",
           "MODEL.REID_HEAD.IN_FEATURES", ["box_head"]]  # fmt: skip
UGAS_FPN = "synthetic/ablations/UGAS_R10_SFM_FPN.yaml"
TINY_UGAS = ["MODEL.UGAS.SFM.CONV_DIM", 8, "MODEL.UGAS.SFM.EMBED_DIM", 16,
             "MODEL.UGAS.SFM.POOLER_RESOLUTION", 7, "MODEL.UGAS.SD.START_ITER", 0,
             "MODEL.FPN.OUT_CHANNELS", 8]  # fmt: skip


def build(config=NAE_FPN, opts=(), seed=0):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(config, TINY_FPN + list(opts)))


def train_step(model, seed=0):
    model.train()
    with EventStorage():
        return model([random_input(seed=seed), random_input(pids=(1, 2), seed=seed + 1)])


def query_input():
    x = random_input()
    x.update(height=192, width=256)  # original image twice the input size
    x["query_boxes"] = Boxes(torch.tensor([[5.0, 10, 30, 80], [40, 10, 65, 80]]))
    return x


def test_fpn_backbone_is_detectron2s_fpn_on_our_resnet_body():
    model = build()
    fpn = model.backbone
    assert type(fpn) is FPN and isinstance(fpn.bottom_up, PersonSearchResNet)
    shapes = fpn.output_shape()
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == {
        "p2": (16, 4), "p3": (16, 8), "p4": (16, 16), "p5": (16, 32), "p6": (16, 64)
    }  # fmt: skip
    assert fpn.size_divisibility == 32
    # the official stem freezing carries over: parameters frozen, BN statistics tracked
    stem = fpn.bottom_up.stem
    assert not any(p.requires_grad for p in stem.parameters())
    assert isinstance(stem.conv1.norm, torch.nn.BatchNorm2d)
    out = fpn(torch.randn(1, 3, 96, 128))
    assert out["p2"].shape == (1, 16, 24, 32) and out["p6"].shape == (1, 16, 2, 2)


@pytest.mark.parametrize("head", ["NAEROIHeads", "OIMROIHeads"])
def test_fpn_heads_train_and_give_detections_with_query_embeddings(head):
    opts = OIM_FPN if head == "OIMROIHeads" else []
    model = build(opts=opts + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0])
    heads = model.roi_heads
    assert type(heads).__name__ == head and type(heads.feature_head).__name__ == "FPNFeatureHead"
    losses = train_step(model)
    expected = {"loss_oim", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    expected |= {"loss_det"} if head == "NAEROIHeads" else {"loss_cls"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    # every trainable parameter takes part (no unused parameter under DDP)
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused
    assert heads.feature_head.box_head.fc1.weight.grad.abs().sum() > 0
    assert model.backbone.fpn_lateral2.weight.grad is not None
    assert heads.reid_loss.lut.norm(dim=1).max() > 0.99  # OIM memory updated

    model.eval()
    x = query_input()
    with torch.no_grad():
        out = model([x, random_input(seed=3)])
    inst = out[0]["instances"]
    assert len(inst) > 0 and inst.reid_feats.shape == (len(inst), 16)
    torch.testing.assert_close(inst.reid_feats.norm(dim=1), torch.ones(len(inst)))
    assert inst.pred_boxes.tensor[:, 2].max() > 128  # rescaled to the original size
    assert out[0]["query_feats"].shape == (2, 16) and out[1]["query_feats"].shape == (0, 16)
    with torch.no_grad():
        images = model.preprocess_image([x])
        direct = heads.embed_boxes(model.backbone(images.tensor), [x["query_boxes"]])[0]
    torch.testing.assert_close(out[0]["query_feats"], direct)
    contexts = out[0]["query_contexts"]
    if head == "NAEROIHeads":  # exact CBGM contexts, query first
        assert len(contexts) == 2
        for c, q in zip(contexts, out[0]["query_feats"]):
            assert 1 <= len(c) <= 8
            torch.testing.assert_close(c[0], q)
    else:  # not computed: the evaluator emulates them
        assert contexts == []


def test_fpn_head_with_ground_truth_boxes_as_detections():
    model = build(opts=["TEST.SEARCH.USE_GT_BOXES", True])
    model.eval()
    x = random_input(pids=(0, -1))
    x.update(height=192, width=256)
    with torch.no_grad():
        inst = model([x])[0]["instances"]
    torch.testing.assert_close(inst.pred_boxes.tensor, x["instances"].gt_boxes.tensor * 2)
    assert inst.scores.tolist() == [1.0, 1.0] and inst.reid_feats.shape == (2, 16)


def test_embedding_from_the_box_head_feature_alone():
    model = build(opts=["MODEL.REID_HEAD.IN_FEATURES", ["box_head"]])
    assert list(model.roi_heads.reid_head.projectors) == ["box_head"]
    assert model.roi_heads.reid_head.projectors["box_head"][0].in_features == 32  # FC_DIM
    assert model.roi_heads.box_regressor.linear.in_features == 32
    assert all(torch.isfinite(v) for v in train_step(model).values())


def test_c4_fpn_backbone_outputs_res4_and_p2_p3_from_one_body_pass():
    model = build(UGAS_FPN, TINY_UGAS)
    backbone = model.backbone
    assert isinstance(backbone, C4FPNBackbone)
    shapes = {k: (s.channels, s.stride) for k, s in backbone.output_shape().items()}
    assert shapes == {"res2": (8, 4), "res3": (16, 8), "res4": (32, 16), "p2": (8, 4),
                      "p3": (8, 8)}  # fmt: skip
    assert backbone.size_divisibility == 16
    # p4's output conv is not built: nothing reads p4
    names = [k for k in backbone.state_dict() if k.startswith("fpn.")]
    assert any(k.startswith("fpn.fpn_output3.") for k in names)
    assert not any(k.startswith("fpn.fpn_output4.") for k in names)
    assert any(k.startswith("fpn.fpn_lateral4.") for k in names)  # the top-down path needs it
    calls = []
    backbone.bottom_up.register_forward_hook(lambda *args: calls.append(1))
    backbone.eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        out = backbone(x)
    assert len(calls) == 1  # the body ran once
    assert set(out) == {"res2", "res3", "res4", "p2", "p3"}
    assert out["res4"].shape == (1, 32, 6, 8) and out["p2"].shape == (1, 8, 24, 32)
    # p2/p3 are exactly detectron2's FPN on the same body and weights
    reference = FPN(bottom_up=backbone.bottom_up, in_features=["res2", "res3", "res4"],
                    out_channels=8)  # fmt: skip
    weights = {
        k[len("fpn.") :]: v for k, v in backbone.state_dict().items() if k.startswith("fpn.")
    }
    missing = reference.load_state_dict(weights, strict=False).missing_keys
    assert all(k.startswith(("fpn_output4.", "bottom_up.")) for k in missing)
    reference.eval()
    with torch.no_grad():
        expected = reference(x)
    for level in ("p2", "p3"):
        torch.testing.assert_close(out[level], expected[level])


def test_ugas_trains_with_sfm_on_p2_p3():
    model = build(UGAS_FPN, TINY_UGAS)
    assert model.roi_heads.ugas.sfm.in_features == ["p2", "p3"]
    train_step(model)  # fills the OIM memories (empty memories give the re-ID losses no gradient)
    model.zero_grad()
    losses = train_step(model)
    assert {"loss_oim", "loss_oim_deep", "loss_oim_shallow", "loss_sd", "loss_ug_kl"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused
    # the shallow branch's gradient reaches the FPN and, through it, the body's res4
    assert model.backbone.fpn.fpn_lateral2.weight.grad.abs().sum() > 0
    assert model.backbone.fpn.fpn_lateral4.weight.grad.abs().sum() > 0
    model.eval()
    x = query_input()
    with torch.no_grad():
        out = model([x])[0]
    assert out["instances"].reid_feats.shape[1] == 32 and out["query_feats"].shape == (2, 32)


def test_coco_r50_fpn_detector_initialises_the_fpn_nae_model(tmp_path):
    opts = ["MODEL.FPN.OUT_CHANNELS", 16, "MODEL.ROI_BOX_HEAD.FC_DIM", 32]
    path = tmp_path / "model_final_280758.pkl"
    state, d2_model = detectron2_detector_file(
        path, "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml", opts
    )
    torch.manual_seed(0)
    cfg = tiny_cfg("model_zoo/NAE_R50_FPN_COCO.yaml",
                   NARROW_R50 + opts + ["MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7])  # fmt: skip
    model = build_model(cfg)
    checkpointer = PersonSearchCheckpointer(model)
    checkpointer.load(str(path))
    ours = model.state_dict()
    for k, v in state.items():
        if k.startswith(("backbone.", "proposal_generator.")):
            torch.testing.assert_close(ours[k], torch.from_numpy(v), msg=k)
        elif k.startswith("roi_heads.box_head."):
            target = k.replace("roi_heads.", "roi_heads.feature_head.")
            torch.testing.assert_close(ours[target], torch.from_numpy(v), msg=target)
    report = checkpointer.detector_mapping
    # NAE has no softmax predictor: the 81-class one is reported unused
    assert report.skipped == [f"roi_heads.box_predictor.{n}.{p}" for n in ("bbox_pred", "cls_score")
                              for p in ("bias", "weight")]  # fmt: skip
    assert report.renamed == {"roi_heads.box_head.* -> roi_heads.feature_head.box_head.*": 4}
    # the loaded pyramid computes the detector's
    d2_model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model.eval()
    d2_model.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ours_p, theirs_p = model.backbone(x), d2_model.backbone(x)
    for level in ("p2", "p3", "p4", "p5", "p6"):
        torch.testing.assert_close(ours_p[level], theirs_p[level], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "config, opts, message",
    [
        (NAE_FPN, ["MODEL.RESNETS.OUT_FEATURES", ["res4", "res5"]],
         r"MODEL.FPN.IN_FEATURES \['res2', 'res3', 'res4', 'res5'\]: \['res2', 'res3'\] are not "
         r"outputs of the ResNet body"),
        (NAE_FPN, ["MODEL.FPN.IN_FEATURES", ["res2", "res4"]], "must be consecutive stages"),
        (NAE_FPN, ["MODEL.FPN.FUSE_TYPE", "max"], "MODEL.FPN.FUSE_TYPE must be one of"),
        (NAE_FPN, ["MODEL.ROI_BOX_HEAD.NAME", ""], "MODEL.ROI_BOX_HEAD.NAME is empty"),
        (NAE_FPN, ["MODEL.ROI_BOX_HEAD.NUM_FC", 0], "set MODEL.ROI_BOX_HEAD.NUM_FC"),
        (NAE_FPN, ["MODEL.ROI_HEADS.IN_FEATURES", ["res4"]],
         r"MODEL.ROI_HEADS.IN_FEATURES=\['res4'\]: \['res4'\] not among the backbone outputs"),
        (NAE_FPN, ["MODEL.REID_HEAD.IN_FEATURES", ["res5"]],
         r"\['res5'\] are not produced by the RoI head; available: \['box_head', 'fpn', "),
        (UGAS_FPN, ["MODEL.FPN.C4_FPN_OUT_FEATURES", ["p5"]],
         r"MODEL.FPN.C4_FPN_OUT_FEATURES \['p5'\]: \['p5'\] not among the levels \['p2', 'p3', "
         r"'p4'\] of the FPN"),
    ],
)  # fmt: skip
def test_bad_fpn_settings_name_the_key(config, opts, message):
    with pytest.raises(ValueError, match=message):
        build(config, TINY_UGAS + opts if config == UGAS_FPN else opts)
