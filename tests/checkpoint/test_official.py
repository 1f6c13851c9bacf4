"""tools/convert_checkpoint.py on checkpoints written here in the official SeqNet / NAE / NAE+
key layouts (random weights; the layouts of the official code: torchvision ResNet-50
names, torchvision RPN head, the official RoI-head modules)."""

import collections
import os
import pickle

import pytest
import torch
import torchvision
from detectron2.modeling import build_model

from personsearch import get_person_search_cfg
from personsearch.checkpoint import (
    ConversionError,
    PersonSearchCheckpointer,
    load_official_state_dict,
)
from tests.common import CONFIGS, load_tool


def _bn(prefix, c, g):
    return {
        f"{prefix}.weight": torch.rand(c, generator=g) + 0.5,
        f"{prefix}.bias": torch.randn(c, generator=g) * 0.1,
        f"{prefix}.running_mean": torch.randn(c, generator=g) * 0.1,
        f"{prefix}.running_var": torch.rand(c, generator=g) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(7),
    }


def official_state_dict(source: str, seed: int = 0, rpn_conv: str = "conv.0.0"):
    """A state dict with the official key layout and random values."""
    g = torch.Generator().manual_seed(seed)
    resnet = torchvision.models.resnet50(weights=None).state_dict()
    out = {}
    for k, v in resnet.items():
        if k.startswith("fc."):
            continue
        value = torch.randn(v.shape, generator=g) * 0.01 if v.dtype.is_floating_point else v
        if k.startswith("layer4."):
            out["roi_heads.box_head." + k] = value
            if source == "seqnet":
                out["roi_heads.reid_head." + k] = value + 1.0  # a different second copy
        else:
            out["backbone." + k] = value
    out[f"rpn.head.{rpn_conv}.weight"] = torch.randn(1024, 1024, 3, 3, generator=g)
    out[f"rpn.head.{rpn_conv}.bias"] = torch.randn(1024, generator=g)
    out["rpn.head.cls_logits.weight"] = torch.randn(15, 1024, 1, 1, generator=g)
    out["rpn.head.cls_logits.bias"] = torch.arange(15.0)  # channel a holds a
    out["rpn.head.bbox_pred.weight"] = torch.randn(60, 1024, 1, 1, generator=g)
    out["rpn.head.bbox_pred.bias"] = torch.arange(60.0)
    out["roi_heads.box_predictor.bbox_pred.0.weight"] = torch.randn(8, 2048, generator=g)
    out["roi_heads.box_predictor.bbox_pred.0.bias"] = torch.arange(8.0)
    out.update(_bn("roi_heads.box_predictor.bbox_pred.1", 8, g))
    if source == "seqnet":
        out["roi_heads.faster_rcnn_predictor.cls_score.weight"] = torch.randn(2, 2048, generator=g)
        out["roi_heads.faster_rcnn_predictor.cls_score.bias"] = torch.tensor([-1.0, 1.0])
        out["roi_heads.faster_rcnn_predictor.bbox_pred.weight"] = torch.randn(8, 2048, generator=g)
        out["roi_heads.faster_rcnn_predictor.bbox_pred.bias"] = torch.arange(8.0)
    else:
        out["roi_heads.box_predictor.cls_score.weight"] = torch.randn(2, 2048, generator=g)
        out["roi_heads.box_predictor.cls_score.bias"] = torch.zeros(2)
    for name, c in (("feat_res4", 1024), ("feat_res5", 2048)):
        shape = (128, c, 1, 1) if source == "nae+" else (128, c)
        out[f"roi_heads.embedding_head.projectors.{name}.0.weight"] = torch.randn(
            *shape, generator=g
        )
        out[f"roi_heads.embedding_head.projectors.{name}.0.bias"] = torch.randn(128, generator=g)
        out.update(_bn(f"roi_heads.embedding_head.projectors.{name}.1", 128, g))
    out.update(_bn("roi_heads.embedding_head.rescaler", 1, g))
    out["roi_heads.reid_loss.lut"] = torch.randn(5532, 256, generator=g)
    out["roi_heads.reid_loss.cq"] = torch.randn(5000, 256, generator=g)
    return out


COUNTS = {"seqnet": 416, "nae": 354, "nae+": 354}
CONFIG = {"seqnet": "SeqNet_R50.yaml", "nae": "NAE_R50.yaml", "nae+": "NAE+_R50.yaml"}


def _save_official(path, state, legacy=True):
    sched = {"milestones": collections.Counter({16: 1}), "last_epoch": 19}
    ckpt = {"model": state, "optimizer": {"state": {}}, "lr_scheduler": sched, "epoch": 19}
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)


@pytest.mark.parametrize("source", ["seqnet", "nae", "nae+"])
def test_conversion_round_trip(tmp_path, source):
    state = official_state_dict(source, rpn_conv="conv" if source == "nae" else "conv.0.0")
    assert len(state) == COUNTS[source]  # the official layouts' key counts
    src = str(tmp_path / "official.pth")
    _save_official(src, state)
    out = str(tmp_path / "converted.pth")
    res = load_tool("convert_checkpoint").convert(["--from", source, src, out])
    text = "\n".join(res["report"])
    assert "restricted unpickler" in text  # the Counter in the scheduler state
    cfg = get_person_search_cfg(
        os.path.join(CONFIGS, "official", CONFIG[source]), ["MODEL.DEVICE", "cpu"]
    )
    model = build_model(cfg)
    converted = torch.load(out, weights_only=True)["model"]
    result = model.load_state_dict(converted, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys == ["roi_heads.reid_loss.queue_head"]  # reported as a default
    ours = model.state_dict()
    # spot checks of every rule
    torch.testing.assert_close(ours["backbone.stem.conv1.weight"], state["backbone.conv1.weight"])
    torch.testing.assert_close(
        ours["backbone.res4.5.conv3.norm.running_var"], state["backbone.layer3.5.bn3.running_var"]
    )
    torch.testing.assert_close(
        ours["backbone.res2.0.shortcut.weight"], state["backbone.layer1.0.downsample.0.weight"]
    )
    first = "box_feature_head" if source == "seqnet" else "feature_head"
    torch.testing.assert_close(
        ours[f"roi_heads.{first}.res5.2.conv2.weight"],
        state["roi_heads.box_head.layer4.2.conv2.weight"],
    )
    if source == "seqnet":
        torch.testing.assert_close(
            ours["roi_heads.feature_head.res5.2.conv2.weight"],
            state["roi_heads.reid_head.layer4.2.conv2.weight"],
        )
        assert ours["roi_heads.box_predictor.cls_score.bias"].tolist() == [
            1.0,
            -1.0,
        ]  # person first
        assert ours["roi_heads.box_predictor.bbox_pred.bias"].tolist() == [4.0, 5.0, 6.0, 7.0]
    # RPN: detectron2's anchor a = s * 3 + r holds torchvision's r * 5 + s
    obj = ours["proposal_generator.rpn_head.objectness_logits.bias"].tolist()
    assert obj == [float(r * 5 + s) for s in range(5) for r in range(3)]
    deltas = ours["proposal_generator.rpn_head.anchor_deltas.bias"].reshape(15, 4)
    assert deltas[1].tolist() == [20.0, 21.0, 22.0, 23.0]  # d=1 (s=0, r=1) <- t=5
    assert ours["roi_heads.box_regressor.linear.bias"].tolist() == [4.0, 5.0, 6.0, 7.0]
    torch.testing.assert_close(
        ours["roi_heads.box_regressor.norm.running_mean"],
        state["roi_heads.box_predictor.bbox_pred.1.running_mean"][4:8],
    )
    proj = ours["roi_heads.reid_head.projectors.res5.0.weight"]
    torch.testing.assert_close(
        proj.reshape(128, -1),
        state["roi_heads.embedding_head.projectors.feat_res5.0.weight"].reshape(128, -1),
    )
    torch.testing.assert_close(ours["roi_heads.reid_loss.queue"], state["roi_heads.reid_loss.cq"])
    # everything else of the model came from the file: loading it through the checkpointer too
    PersonSearchCheckpointer(model).load(out)
    assert "background rows" in text and "not saved by the official code" in text
    if source != "seqnet":
        assert "built, never called" in text


def test_bare_state_dicts_and_dataparallel_prefixes(tmp_path):
    state = official_state_dict("nae")
    path = str(tmp_path / "bare.pth")
    torch.save({"module." + k: v for k, v in state.items()}, path)
    loaded, notes = load_official_state_dict(path)
    assert set(loaded) == set(state)
    assert any("module." in n for n in notes)


def test_wrong_source_or_foreign_checkpoints_are_refused_naming_the_keys(tmp_path):
    tool = load_tool("convert_checkpoint")
    nae = str(tmp_path / "nae.pth")
    _save_official(nae, official_state_dict("nae"))
    out = str(tmp_path / "x.pth")
    with pytest.raises(ConversionError, match=r"have no place in a personsearch seqnet.*cls_score"):
        tool.convert(["--from", "seqnet", nae, out])  # NAE's unused classifier is not SeqNet's
    state = official_state_dict("nae")
    del (
        state["roi_heads.box_predictor.cls_score.weight"],
        state["roi_heads.box_predictor.cls_score.bias"],
    )
    partial = str(tmp_path / "partial.pth")
    _save_official(partial, state)
    with pytest.raises(ConversionError, match=r"64 keys of the target .*feature_head.res5.\* \(60"):
        tool.convert(["--from", "seqnet", partial, out])  # no second res5 in an NAE file
    seqnet = str(tmp_path / "seqnet.pth")
    _save_official(seqnet, official_state_dict("seqnet"))
    with pytest.raises(
        ConversionError, match=r"have no place.*faster_rcnn_predictor.cls_score.\* \(2 keys"
    ):
        tool.convert(["--from", "nae", seqnet, out])
    # a detectron2 checkpoint is not an official one
    d2 = str(tmp_path / "d2.pth")
    torch.save({"model": {"backbone.res2.0.conv1.weight": torch.zeros(1)}}, d2)
    with pytest.raises(ConversionError, match=r"have no place.*backbone.res2.\* \(1 key\)"):
        tool.convert(["--from", "nae", d2, out])
    # a wrong shape
    state = official_state_dict("nae")
    state["roi_heads.embedding_head.projectors.feat_res4.0.weight"] = torch.zeros(64, 1024)
    bad = str(tmp_path / "shape.pth")
    _save_official(bad, state)
    with pytest.raises(ConversionError, match="shapes differ.*projectors.res4.0.weight"):
        tool.convert(["--from", "nae", bad, out])
    assert not os.path.exists(out)


def test_unreadable_or_malicious_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConversionError, match="Cannot read .*junk.pth"):
        load_official_state_dict(str(junk))
    plain = tmp_path / "list.pth"
    torch.save([1, 2, 3], plain)
    with pytest.raises(ConversionError, match="not an official SeqNet/NAE checkpoint"):
        load_official_state_dict(str(plain))

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"model": {"x": Evil()}}, f)
    with pytest.raises(ConversionError, match="Cannot read"):
        load_official_state_dict(str(evil))
    assert not (tmp_path / "pwned").exists()  # nothing stored in the file ran
