"""Every method head on both RoI feature heads (``MODEL.ROI_FEATURE_HEAD.NAME``): C4's res5 and the
FPN box head, with no per-detector subclass; the UGAS contract on both; the deprecated FPN names."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from personsearch.modeling import FPNFeatureHead, Res5FeatureHead
from tests.common import random_input, tiny_cfg

# a C4 config -> the same method on detectron2's FPN (narrow, CPU size)
FPN = [
    "MODEL.BACKBONE.NAME", "build_person_search_resnet_fpn_backbone",
    "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.OUT_CHANNELS", 16,
    "MODEL.ANCHOR_GENERATOR.SIZES", [[32], [64], [128], [256]],
    "MODEL.RPN.IN_FEATURES", ["p2", "p3", "p4", "p5"],
    "MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p3", "p4", "p5"],
    "MODEL.ROI_FEATURE_HEAD.NAME", "FPNFeatureHead",
    "MODEL.ROI_BOX_HEAD.NAME", "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_FC", 2,
    "MODEL.ROI_BOX_HEAD.FC_DIM", 32,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 7,
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2",
]  # fmt: skip
TINY_UGAS = ["MODEL.UGAS.SFM.CONV_DIM", 8, "MODEL.UGAS.SFM.EMBED_DIM", 16,
             "MODEL.UGAS.SFM.POOLER_RESOLUTION", 7, "MODEL.UGAS.SD.START_ITER", 0]  # fmt: skip
# method: (config, RoI head, the re-ID head's inputs on the FPN, extra FPN options)
METHODS = {
    "OIM": ("synthetic/OIM_R10.yaml", "OIMROIHeads", ["box_head"], []),
    "NAE": ("synthetic/NAE_R10.yaml", "NAEROIHeads", ["fpn", "box_head"], []),
    "NAE+": ("synthetic/NAE+_R10.yaml", "NAEPlusROIHeads", ["fpn_map"], []),
    "SeqNet": ("synthetic/SeqNet_R10.yaml", "SeqNetROIHeads", ["fpn", "box_head"], []),
    "UGAS": ("synthetic/UGAS_R10.yaml", "SeqNetROIHeads", ["fpn", "box_head"],
             ["MODEL.UGAS.SFM.IN_FEATURES", ["p2", "p3"]]),
    "UGAS-NAE": ("synthetic/UGAS-NAE_R10.yaml", "NAEROIHeads", ["fpn", "box_head"],
                 ["MODEL.UGAS.SFM.IN_FEATURES", ["p2", "p3"]]),
}  # fmt: skip


def method_cfg(method: str, detector: str, opts=()):
    config, _, fpn_inputs, fpn_opts = METHODS[method]
    extra = list(TINY_UGAS if method.startswith("UGAS") else [])
    if detector == "fpn":
        extra += FPN + ["MODEL.REID_HEAD.IN_FEATURES", fpn_inputs] + fpn_opts
    return tiny_cfg(config, extra + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0] + list(opts))


def build(method: str, detector: str, opts=(), seed=0):
    torch.manual_seed(seed)
    return build_model(method_cfg(method, detector, opts))


@pytest.mark.parametrize("detector", ["c4", "fpn"])
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_and_searches_on_c4_and_fpn(method, detector):
    model = build(method, detector)
    heads = model.roi_heads
    assert type(heads).__name__ == METHODS[method][1]
    feature_head = FPNFeatureHead if detector == "fpn" else Res5FeatureHead
    assert type(heads.feature_head) is feature_head
    if method in ("SeqNet", "UGAS"):
        assert type(heads.box_feature_head) is feature_head
        assert heads.box_feature_head is not heads.feature_head
    keys = model.state_dict().keys()
    body = "box_head." if detector == "fpn" else "res5."
    assert any(k.startswith("roi_heads.feature_head." + body) for k in keys)

    model.train()
    with EventStorage():
        losses = model([random_input(seed=0), random_input(pids=(1, 2), seed=1)])
    assert "loss_oim" in losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused

    model.eval()
    x = random_input()
    x["query_boxes"] = Boxes(torch.tensor([[5.0, 10, 30, 80]]))
    with torch.no_grad():
        out = model([x])[0]
    dim = heads.embed_dim
    inst = out["instances"]
    assert inst.reid_feats.shape == (len(inst), dim) and out["query_feats"].shape == (1, dim)
    assert torch.isfinite(inst.scores).all()
    torch.testing.assert_close(out["query_feats"].norm(dim=1), torch.ones(1))


@pytest.mark.parametrize("detector, maps", [("c4", ["res4_map"]), ("fpn", ["fpn_map"])])
def test_ugas_contract_holds_on_both_feature_heads(detector, maps):
    heads = build("UGAS-NAE", detector).roi_heads
    # UG's variance head reads the map the feature head declares as its RoIAlign input
    assert heads.ugas.ug_inputs == maps == [heads.feature_head.input_map]
    assert set(heads.feature_head.pooled_of) <= set(heads.feature_head.output_channels)
    assert heads.feature_head.box_feature in heads.feature_head.output_channels


@pytest.mark.parametrize(
    "detector, message",
    [
        ("c4", r"\['res4'\]: UG's variance head reads RoI maps; Res5FeatureHead provides the maps "
               r"\['res4_map', 'res5_map'\]"),
        ("fpn", r"\['fpn'\]: UG's variance head reads RoI maps; FPNFeatureHead provides the maps "
                r"\['fpn_map'\]"),
    ],
)  # fmt: skip
def test_ugas_contract_violation_names_the_feature_head(detector, message):
    name = "res4" if detector == "c4" else "fpn"
    with pytest.raises(ValueError, match=message):
        build("UGAS-NAE", detector, ["MODEL.UGAS.UG.IN_FEATURES", [name]])


def test_unknown_feature_head_names_the_key():
    with pytest.raises(ValueError, match="MODEL.ROI_FEATURE_HEAD.NAME 'C5Head' is not registered"):
        build("NAE", "c4", ["MODEL.ROI_FEATURE_HEAD.NAME", "C5Head"])


@pytest.mark.parametrize(
    "old, method, new", [("FPNNAEROIHeads", "NAE", "NAEROIHeads"),
                         ("FPNOIMROIHeads", "OIM", "OIMROIHeads")]
)  # fmt: skip
def test_deprecated_fpn_head_names_warn_and_build_the_same_model(old, method, new):
    # an old config: the removed class's name, no MODEL.ROI_FEATURE_HEAD key
    opts = ["MODEL.ROI_HEADS.NAME", old, "MODEL.ROI_FEATURE_HEAD.NAME", "Res5FeatureHead"]
    with pytest.warns(FutureWarning, match=f"MODEL.ROI_HEADS.NAME '{old}' is deprecated"):
        old_model = build(method, "fpn", opts)
    new_model = build(method, "fpn")
    assert type(old_model.roi_heads).__name__ == new
    assert type(old_model.roi_heads.feature_head) is FPNFeatureHead
    old_state, new_state = old_model.state_dict(), new_model.state_dict()
    assert list(old_state) == list(new_state)  # checkpoints of the old classes load unchanged
    for k, v in new_state.items():
        torch.testing.assert_close(old_state[k], v, msg=k)
