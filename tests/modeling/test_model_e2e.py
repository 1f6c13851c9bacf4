"""PersonSearchRCNN end to end on random images: a training step and inference with queries."""

import glob
import os

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from personsearch import get_person_search_cfg
from tests.common import CONFIGS, random_input, tiny_cfg


def test_every_config_file_loads():
    files = sorted(glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True))
    assert len(files) >= 3
    for f in files:
        cfg = get_person_search_cfg(f)
        assert cfg.MODEL.META_ARCHITECTURE == "PersonSearchRCNN", f


def test_every_config_file_builds_a_model():
    # every method and ablation config builds (at the tiny test size: the structure is the
    # config's, the widths and sizes are shrunk)
    from detectron2.modeling import build_model

    files = sorted(glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True))
    for f in files:
        cfg = tiny_cfg(os.path.relpath(f, CONFIGS), ["MODEL.UGAS.SFM.CONV_DIM", 8])
        if cfg.MODEL.UGAS.SFM.FUSION == "mean":
            cfg.MODEL.UGAS.SFM.EMBED_DIM = cfg.MODEL.REID_HEAD.EMBED_DIM
        model = build_model(cfg)
        assert type(model.roi_heads).__name__ == cfg.MODEL.ROI_HEADS.NAME, f


def test_unknown_config_key_fails_naming_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        '_BASE_: "%s"\nMODEL:\n  OIM:\n    NUM_PID: 3\n'
        % os.path.join(CONFIGS, "Base-PersonSearch.yaml")
    )
    with pytest.raises(KeyError, match="MODEL.OIM.NUM_PID"):
        get_person_search_cfg(str(bad))


def test_training_step_returns_finite_losses_and_gradients():
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    model.train()
    with EventStorage():
        losses = model([random_input(seed=0), random_input(pids=(), seed=1)])  # 2nd: no people
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_oim", "loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    proj = model.roi_heads.reid_head.proj.weight
    # the memories start at zero, so the first OIM step has all-zero logits and no gradient ...
    assert proj.grad.abs().sum() == 0
    # labeled ids 0 and 3 were seen: their LUT rows are unit vectors, others still zero
    norms = model.roi_heads.reid_loss.lut.norm(dim=1)
    assert norms[0] == pytest.approx(1.0) and norms[3] == pytest.approx(1.0)
    assert norms[1] == 0 and norms[2] == 0
    assert int(model.roi_heads.reid_loss.queue_head) > 0  # the unlabeled person was queued
    # ... and once they hold features, the embedding receives gradient
    model.zero_grad()
    with EventStorage():
        sum(model([random_input(seed=2)]).values()).backward()
    assert proj.grad.abs().sum() > 0


def test_inference_returns_detections_with_features_and_query_features():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(opts=["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]))
    model.eval()
    x = random_input(height=96, width=128)
    x.update(height=192, width=256)  # original image twice the input size
    x["query_boxes"] = Boxes(torch.tensor([[5.0, 10, 30, 80], [40, 10, 65, 80]]))
    y = random_input(seed=1)
    with torch.no_grad():
        out = model([x, y])
    inst = out[0]["instances"]
    assert len(inst) > 0
    assert inst.reid_feats.shape == (len(inst), 16)
    torch.testing.assert_close(inst.reid_feats.norm(dim=1), torch.ones(len(inst)))
    assert inst.pred_boxes.tensor[:, 2].max() <= 256 and inst.pred_boxes.tensor[:, 2].max() > 128
    assert out[0]["query_feats"].shape == (2, 16)
    assert out[1]["query_feats"].shape == (0, 16)
    # the query embedding equals embedding the same box as a "detection" of the same image
    with torch.no_grad():
        images = model.preprocess_image([x])
        feats = model.backbone(images.tensor)
        direct = model.roi_heads.embed_boxes(feats, [x["query_boxes"]])[0]
    torch.testing.assert_close(out[0]["query_feats"], direct)


def test_gt_boxes_as_detections_mode():
    model = build_model(tiny_cfg(opts=["TEST.SEARCH.USE_GT_BOXES", True]))
    model.eval()
    x = random_input(pids=(0, -1))
    x.update(height=192, width=256)
    with torch.no_grad():
        inst = model([x])[0]["instances"]
    expected = x["instances"].gt_boxes.tensor * 2  # rescaled to the original size
    torch.testing.assert_close(inst.pred_boxes.tensor, expected)
    assert inst.scores.tolist() == [1.0, 1.0]
    assert inst.reid_feats.shape == (2, 16)


def test_gt_mode_without_instances_is_a_clear_error():
    model = build_model(tiny_cfg(opts=["TEST.SEARCH.USE_GT_BOXES", True]))
    model.eval()
    x = random_input()
    del x["instances"]
    with pytest.raises(KeyError, match="USE_GT_BOXES"):
        model([x])


def test_training_without_person_ids_is_a_clear_error():
    model = build_model(tiny_cfg())
    model.train()
    x = random_input()
    x["instances"].remove("gt_pids")
    with EventStorage(), pytest.raises(KeyError, match="gt_pids"):
        model([x])
