"""Backbone construction/freezing and loading detectron2 model-zoo weight files."""

import pickle
import uuid

import numpy as np
import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model

from personsearch.checkpoint import PersonSearchCheckpointer
from tests.common import tiny_cfg


def test_depth10_narrow_channels_and_stride():
    model = build_model(tiny_cfg())
    body = model.backbone
    assert [len(s) for s in body.stages] == [1, 1, 1]  # res2..res4, one BasicBlock each
    assert body.output_shape()["res4"].channels == 32 and body.output_shape()["res4"].stride == 16
    res5 = model.roi_heads.feature_head.res5
    assert res5[0].conv1.stride == (2, 2) and res5[0].conv2.out_channels == 64


def test_stem_frozen_but_its_bn_keeps_tracking_statistics():
    model = build_model(tiny_cfg())
    stem = model.backbone.stem
    assert not any(p.requires_grad for p in stem.parameters())
    assert all(p.requires_grad for p in model.backbone.stages[0].parameters())
    bn = stem.conv1.norm
    assert isinstance(bn, torch.nn.BatchNorm2d)
    before = bn.running_mean.clone()
    model.train()
    model.backbone(torch.randn(2, 3, 64, 64))
    assert not torch.equal(before, bn.running_mean)


def test_stem_can_use_frozen_bn_like_detectron2():
    model = build_model(tiny_cfg(opts=["MODEL.RESNETS.STEM_NORM_TRACK_STATS", False]))
    assert isinstance(model.backbone.stem.conv1.norm, FrozenBatchNorm2d)


def test_unsupported_depth_is_a_clear_error():
    with pytest.raises(ValueError, match="DEPTH=20"):
        build_model(tiny_cfg(opts=["MODEL.RESNETS.DEPTH", 20]))


def _zoo_names(model):
    """Model parameter name -> name in a detectron2-converted torchvision/MSRA model-zoo file."""
    out = {}
    for name in model.state_dict():
        if name.endswith("num_batches_tracked"):
            continue
        if name.startswith("backbone."):
            out[name] = name[len("backbone.") :]
        elif name.startswith("roi_heads.feature_head."):
            out[name] = name[len("roi_heads.feature_head.") :]
    return out


def _random_like(model, names, seed=0):
    rng = np.random.default_rng(seed)
    sd = model.state_dict()
    return {
        zoo: rng.standard_normal(tuple(sd[ours].shape)).astype(np.float32)
        for ours, zoo in names.items()
    }


@pytest.mark.parametrize("how", ["local file", "detectron2:// URL"])
def test_load_torchvision_model_zoo_pickle(tmp_path, monkeypatch, how):
    model = build_model(tiny_cfg())
    names = _zoo_names(model)
    weights = _random_like(model, names)
    name = f"R-10-tiny-{uuid.uuid4().hex[:8]}.pkl"
    if how == "local file":
        path = tmp_path / name
        url = str(path)
    else:
        # detectron2://X resolves to https://dl.fbaipublicfiles.com/detectron2/X, downloaded into
        # $FVCORE_CACHE/detectron2/X; a file already there is used without a download
        monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
        path = tmp_path / "cache" / "detectron2" / "ImageNetPretrained" / "torchvision" / name
        path.parent.mkdir(parents=True)
        url = f"detectron2://ImageNetPretrained/torchvision/{name}"
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "torchvision", "matching_heuristics": True}, f)
    PersonSearchCheckpointer(model).load(url)
    sd = model.state_dict()
    for ours, zoo in names.items():
        np.testing.assert_array_equal(sd[ours].numpy(), weights[zoo], err_msg=ours)
    assert len(names) > 20  # stem, res2..res4 and the RoI head's res5 all received weights


def _c2_name(d2_name):
    """Inverse of detectron2's Caffe2 (MSRA) name conversion, for the names a ResNet uses."""
    name = d2_name.replace("stem.conv1.norm.", "res_conv1_bn.").replace("stem.conv1.", "conv1.")
    for ours, c2 in [("conv1", "branch2a"), ("conv2", "branch2b"), ("conv3", "branch2c"),
                     ("shortcut", "branch1")]:  # fmt: skip
        name = name.replace(f".{ours}.norm.", f".{c2}_bn.").replace(f".{ours}.", f".{c2}.")
    name = name.replace(".", "_")
    for ours, c2 in [("_weight", "_w"), ("_bias", "_b"), ("_bn_w", "_bn_s"),
                     ("_running_mean", "_rm"), ("_running_var", "_riv")]:  # fmt: skip
        name = name.replace(ours, c2)
    return name.replace("_bn_s", "_bn_s").replace("_bn_b", "_bn_b")


def test_load_msra_caffe2_pickle(tmp_path):
    # bottleneck R-50 topology at a small width: MSRA files use Caffe2 blob names
    opts = ["MODEL.RESNETS.DEPTH", 50, "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
            "MODEL.RESNETS.WIDTH_PER_GROUP", 4, "MODEL.RESNETS.STRIDE_IN_1X1", True]  # fmt: skip
    cfg = tiny_cfg(opts=opts)
    model = build_model(cfg)
    names = {ours: zoo for ours, zoo in _zoo_names(model).items() if "running" not in zoo}
    weights = _random_like(model, names, seed=1)
    blobs = {_c2_name(zoo): w for zoo, w in weights.items()}
    assert "res2_0_branch2a_w" in blobs and "res_conv1_bn_s" in blobs and "conv1_w" in blobs
    path = tmp_path / "R-50-msra.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)
    PersonSearchCheckpointer(model).load(str(path))
    sd = model.state_dict()
    for ours, zoo in names.items():
        np.testing.assert_array_equal(sd[ours].numpy(), weights[zoo], err_msg=ours)


def test_missing_weights_file_names_the_path(tmp_path):
    model = build_model(tiny_cfg())
    missing = str(tmp_path / "nope" / "model.pth")
    with pytest.raises(FileNotFoundError, match="nope/model.pth"):
        PersonSearchCheckpointer(model).load(missing)
