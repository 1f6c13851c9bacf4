"""Inference-only optimisations: BatchNorm folding and channels_last give the same outputs as the
model as built (to float rounding), on every head; the NAE+ projection order; refusals."""

import copy

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from torch import nn

from personsearch.layers import SyncBatchNormND
from personsearch.modeling import PixelNormAwareEmbeddingHead
from personsearch.modeling.fold_batchnorm import fold_batchnorm, is_folded
from personsearch.modeling.inference_optimization import InferenceOptions, optimize_for_inference
from personsearch.modeling.roi_heads.box_regressor import NormAwareBoxRegressor
from tests.common import random_input, randomize_batchnorm, tiny_cfg

# every head family, small (UGAS: the tiny SFM of tests/modeling/test_ugas.py)
TINY_UGAS = ["MODEL.UGAS.SFM.CONV_DIM", 8, "MODEL.UGAS.SFM.EMBED_DIM", 16,
             "MODEL.UGAS.SFM.POOLER_RESOLUTION", 7]  # fmt: skip
FORCED = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "MODEL.ROI_HEADS.NMS_THRESH_TEST", 1.0]
CONFIGS = {
    "OIM": ("synthetic/OIM_R10.yaml", []),
    "NAE": ("synthetic/NAE_R10.yaml", []),
    "NAE+": ("synthetic/NAE+_R10.yaml", []),
    "SeqNet": ("synthetic/SeqNet_R10.yaml", ["MODEL.SEQNET.NMS_THRESH_TEST", 1.0]),
    "UGAS": ("synthetic/UGAS_R10.yaml", TINY_UGAS + ["MODEL.SEQNET.NMS_THRESH_TEST", 1.0]),
    "NAE FPN": ("synthetic/NAE_R10_FPN.yaml", ["MODEL.FPN.OUT_CHANNELS", 16]),
}


def count_batchnorms(model: nn.Module) -> int:
    return sum(
        isinstance(m, (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)) for m in model.modules()
    )


@pytest.mark.parametrize(
    "layer, bn, shape",
    [
        (Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), (2, 4, 9, 7)),
        (Conv2d(4, 6, 1, stride=2, bias=True), FrozenBatchNorm2d(6), (2, 4, 9, 7)),
        (nn.Conv2d(4, 6, 1), SyncBatchNormND(6), (3, 4, 5, 5)),
        (nn.Linear(5, 6), nn.BatchNorm1d(6), (7, 5)),
        (nn.Linear(5, 6), SyncBatchNormND(6), (7, 5)),
    ],
)
def test_a_folded_pair_computes_the_same_function(layer, bn, shape):
    torch.manual_seed(0)
    if isinstance(layer, Conv2d):
        layer.norm = bn
        model = nn.Sequential(layer)
    else:
        model = nn.Sequential(layer, bn)
    randomize_batchnorm(model)
    model.eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
        assert fold_batchnorm(model) == 1
        got = model(x)
    assert count_batchnorms(model) == 0 and is_folded(model)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_declared_pairs_are_folded_and_other_batchnorms_are_left():
    # NAE's box regressor declares (linear, norm); a BatchNorm after a ReLU is not foldable
    reg = NormAwareBoxRegressor(8)
    model = nn.Sequential(reg, nn.ReLU(), nn.BatchNorm1d(4))
    randomize_batchnorm(model)
    model.eval()
    x = torch.randn(5, 8)
    with torch.no_grad():
        expected = model(x)
        assert fold_batchnorm(model) == 1
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
    assert isinstance(reg.norm, nn.Identity) and isinstance(model[2], nn.BatchNorm1d)


def test_folding_needs_eval_mode_and_a_folded_model_refuses_to_train():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    with pytest.raises(RuntimeError, match="training mode; call model.eval"):
        fold_batchnorm(model)
    model.eval()
    fold_batchnorm(model)
    model.train()
    with pytest.raises(RuntimeError, match="folded for inference.*cannot be trained"):
        model(torch.randn(1, 3, 4, 4))
    with pytest.raises(RuntimeError, match="training mode"):
        optimize_for_inference(model, InferenceOptions())


def test_bad_channels_last_value_names_the_key():
    with pytest.raises(ValueError, match="TEST.OPTIMIZE.CHANNELS_LAST must be one of"):
        InferenceOptions(channels_last="yes")
    cfg = tiny_cfg(opts=["TEST.OPTIMIZE.CHANNELS_LAST", "maybe"])
    with pytest.raises(ValueError, match="TEST.OPTIMIZE.CHANNELS_LAST"):
        InferenceOptions.from_config(cfg)


def test_channels_last_auto_is_on_for_the_cpu_and_for_gpu_amp_only():
    auto = InferenceOptions()
    assert auto.use_channels_last("cpu", False)
    assert auto.use_channels_last("cuda", True) and not auto.use_channels_last("cuda", False)
    assert not InferenceOptions(channels_last="off").use_channels_last("cpu", False)
    assert InferenceOptions(channels_last="on").use_channels_last("cuda", False)


def test_nae_plus_projects_after_resizing_in_eval_mode_with_the_same_values():
    torch.manual_seed(0)
    head = PixelNormAwareEmbeddingHead(
        in_features=["res4_map", "res5_map"], in_channels=[6, 10], embed_dim=8
    )
    randomize_batchnorm(head)
    head.eval()
    feats = {"res4_map": torch.randn(5, 6, 14, 14), "res5_map": torch.randn(5, 10, 7, 7)}
    with torch.no_grad():
        got = head.project(feats)
        proj4, proj5 = head.projectors["res4"], head.projectors["res5"]
        reference = torch.cat(  # the training order: project the 14x14 map, then resize
            [
                F.interpolate(proj4(feats["res4_map"]), (7, 7), mode="bilinear"),
                proj5(feats["res5_map"]),
            ],
            dim=1,
        )
    assert got.shape == (5, 8, 7, 7)
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)


def _inference(model, inputs):
    with torch.no_grad():
        return model.inference(copy.deepcopy(inputs))


def _assert_same_outputs(got, expected, atol):
    for g, e in zip(got, expected):
        gi, ei = g["instances"], e["instances"]
        assert len(gi) == len(ei) > 0
        # forced thresholds keep every box; near-equal scores may swap places: match the boxes
        dist = torch.cdist(ei.pred_boxes.tensor, gi.pred_boxes.tensor, p=1)
        match = dist.argmin(dim=1)
        assert len(set(match.tolist())) == len(ei)
        torch.testing.assert_close(gi.pred_boxes.tensor[match], ei.pred_boxes.tensor, atol=1e-3,
                                   rtol=0)  # fmt: skip
        torch.testing.assert_close(gi.scores[match], ei.scores, atol=atol, rtol=0)
        torch.testing.assert_close(gi.reid_feats[match], ei.reid_feats, atol=atol, rtol=0)
        torch.testing.assert_close(g["query_feats"], e["query_feats"], atol=atol, rtol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("channels_last", ["off", "on"])
def test_optimized_model_gives_the_outputs_of_the_model_as_built(name, channels_last):
    config, opts = CONFIGS[name]
    torch.manual_seed(0)
    model = build_model(tiny_cfg(config, FORCED + opts))
    randomize_batchnorm(model)
    model.eval()
    inputs = []
    for seed in (0, 1):
        x = random_input(seed=seed)
        x["query_boxes"] = Boxes(x["instances"].gt_boxes.tensor.clone())
        del x["instances"]
        inputs.append(x)
    expected = _inference(model, inputs)
    optimized = copy.deepcopy(model)
    summary = optimize_for_inference(optimized, InferenceOptions(channels_last=channels_last))
    # every BatchNorm that follows a conv/linear layer is gone; NAE's rescaler (on the norms) and
    # the variance head's BatchNorm (never run at inference) stay
    assert summary["folded_batchnorm"] == count_batchnorms(model) - count_batchnorms(optimized)
    assert summary["folded_batchnorm"] > 10
    assert summary["channels_last"] == (channels_last == "on")
    if summary["channels_last"]:
        convs = [m for m in optimized.backbone.modules() if isinstance(m, nn.Conv2d)]
        w = next(m.weight for m in convs if m.kernel_size != (1, 1))
        assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    _assert_same_outputs(_inference(optimized, inputs), expected, atol=1e-4)
