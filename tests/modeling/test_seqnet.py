"""SeqNet: two sequential res5 heads, stage-2 re-sampling, first-classification score."""

import pickle

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from personsearch.checkpoint import PersonSearchCheckpointer
from personsearch.modeling.roi_heads.inference import person_detections
from personsearch.modeling.roi_heads.seqnet_roi_heads import SeqNetROIHeads
from tests.common import random_input, tiny_cfg


def seqnet(opts=()):
    torch.manual_seed(0)
    return build_model(tiny_cfg("synthetic/SeqNet_R10.yaml", list(opts)))


def test_the_two_res5_stages_share_no_parameters():
    model = seqnet()
    heads = model.roi_heads
    a = dict(heads.box_feature_head.named_parameters())
    b = dict(heads.feature_head.named_parameters())
    assert set(a) == set(b) and len(a) > 0
    ptrs_a = {p.data_ptr() for p in a.values()}
    assert not ptrs_a & {p.data_ptr() for p in b.values()}
    # built alike: the same initial values (the reference deep-copies one res5)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        a["res5.0.conv1.weight"].add_(1.0)
    assert not torch.equal(a["res5.0.conv1.weight"], b["res5.0.conv1.weight"])


def test_training_step_and_stage2_sampling_on_detached_refined_boxes(monkeypatch):
    model = seqnet()
    model.train()
    heads = model.roi_heads
    calls = []
    original = SeqNetROIHeads.label_and_sample_proposals

    def spy(self, proposals, targets):
        out = original(self, proposals, targets)
        calls.append(([p.proposal_boxes.tensor.clone() for p in proposals], out))
        return out

    monkeypatch.setattr(SeqNetROIHeads, "label_and_sample_proposals", spy)
    predictions = []
    monkeypatch.setattr(
        heads.box_predictor,
        "predict_boxes",
        _recording(heads.box_predictor.predict_boxes, predictions),
    )
    inputs = [random_input(seed=0), random_input(pids=(), seed=1)]
    with EventStorage():
        losses = model(inputs)
    assert set(losses) == {
        "loss_stage1_cls", "loss_stage1_box_reg",
        "loss_det", "loss_box_reg", "loss_oim",
        "loss_rpn_cls", "loss_rpn_loc",
    }  # fmt: skip
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(calls) == 2  # RPN proposals, then the stage-1 boxes
    stage1_sampled = calls[0][1]
    stage2_inputs, stage2_sampled = calls[1]
    refined = predictions[0]
    for img, (boxes_in, sampled1, new) in enumerate(zip(stage2_inputs, stage1_sampled, refined)):
        # stage 2 gets one refined box per stage-1 RoI: decoded, clipped to the image, detached
        assert len(boxes_in) == len(sampled1)
        clipped = Boxes(new.detach().clone())
        clipped.clip(sampled1.image_size)
        torch.testing.assert_close(boxes_in, clipped.tensor)
        assert not boxes_in.requires_grad
        assert not stage2_sampled[img].proposal_boxes.tensor.requires_grad
    # the ground truth is appended again before the second sampling: every GT box of image 0
    # is a sampled stage-2 RoI (all are foreground and fit in the batch)
    gt = inputs[0]["instances"].gt_boxes.tensor
    s2 = stage2_sampled[0].proposal_boxes.tensor
    for box in gt:
        assert (s2 - box).abs().sum(dim=1).min() == 0
    assert len(s2) <= heads.batch_size_per_image
    sum(losses.values()).backward()
    for name in ("box_feature_head", "feature_head", "box_predictor", "box_regressor", "reid_head"):
        grads = [p.grad for p in getattr(heads, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def _recording(fn, store):
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        store.append([b.clone() for b in out])
        return out

    return wrapped


def test_inference_scores_are_the_stage1_scores_and_boxes_refined_by_stage2():
    model = seqnet(["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0])
    model.eval()
    heads = model.roi_heads
    x = random_input()
    x["query_boxes"] = Boxes(torch.tensor([[5.0, 10, 30, 80]]))
    with torch.no_grad():
        out = model([x])[0]
        images = model.preprocess_image([x])
        feats = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, feats, None)
        pred = heads.stage1(feats, proposals)
        probs = heads.box_predictor.predict_probs(pred, proposals)[0][:, 0]
        boxes = heads.box_predictor.predict_boxes(pred, proposals)[0]
        first, _, _ = person_detections(
            boxes, probs, boxes.new_zeros(len(boxes), 0), proposals[0].image_size,
            0.0, heads.test_nms_thresh, heads.test_topk_per_image,
        )  # fmt: skip
        reid, deltas = heads.embedding_stage(feats, [first.pred_boxes])
    inst = out["instances"]
    assert len(inst) > 0
    # every final score is one of the stage-1 scores (FCS), not the stage-2 norm
    stage1 = first.scores
    for s in inst.scores:
        assert (stage1 - s).abs().min() < 1e-6
    stage2 = torch.sigmoid(reid["norm_logits"])
    assert not torch.allclose(stage2.sort().values[: len(inst)], inst.scores.sort().values)
    # final boxes = stage-2 deltas applied to stage-1 boxes (not the stage-1 boxes themselves)
    refined = heads.box2box_transform.apply_deltas(deltas, first.pred_boxes.tensor)
    refined = Boxes(refined)
    refined.clip(first.image_size)
    for b in inst.pred_boxes.tensor:
        assert (refined.tensor - b).abs().sum(dim=1).min() < 1e-4
    assert out["query_feats"].shape == (1, 16)
    torch.testing.assert_close(out["query_contexts"][0][0], out["query_feats"][0])


def test_stage2_score_option():
    model = seqnet(["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "MODEL.SEQNET.SCORE", "stage2"])
    model.eval()
    with torch.no_grad():
        inst = model([random_input()])[0]["instances"]
    assert len(inst) > 0
    with pytest.raises(ValueError, match="MODEL.SEQNET.SCORE must be one of"):
        seqnet(["MODEL.SEQNET.SCORE", "best"])


def test_both_res5_stages_load_the_same_pretrained_res5(tmp_path):
    model = seqnet()
    # a detectron2 model-zoo style file: short names, name-matching heuristics
    torch.manual_seed(3)
    res5 = {
        f"res5.{k}": torch.randn_like(v)
        for k, v in model.roi_heads.feature_head.res5.state_dict().items()
        if v.dtype.is_floating_point
    }
    path = tmp_path / "r.pkl"
    blob = {"model": {k: v.numpy() for k, v in res5.items()}, "__author__": "torchvision",
            "matching_heuristics": True}  # fmt: skip
    with open(path, "wb") as f:
        pickle.dump(blob, f)
    PersonSearchCheckpointer(model).load(str(path))
    for head in (model.roi_heads.box_feature_head, model.roi_heads.feature_head):
        state = head.res5.state_dict()
        for k, v in res5.items():
            assert torch.equal(state[k[len("res5.") :]], v), k
    # the two copies were filled from one source but remain separate tensors
    a = model.roi_heads.box_feature_head.res5[0].conv1.weight
    b = model.roi_heads.feature_head.res5[0].conv1.weight
    assert a.data_ptr() != b.data_ptr()
