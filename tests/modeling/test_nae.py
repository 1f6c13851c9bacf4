"""NAE and NAE+: the norm-aware embedding heads, their RoI heads and the NAE -> NAE+ weights."""

import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from personsearch.checkpoint import PersonSearchCheckpointer
from personsearch.modeling import NormAwareEmbeddingHead, PixelNormAwareEmbeddingHead
from personsearch.modeling.reid_heads.norm_aware import split_embedding_dim
from personsearch.modeling.roi_heads.pixel_labels import cell_coverage
from tests.common import random_input, tiny_cfg

NAE = ["MODEL.REID_HEAD.NORM", "BN"]


def nae_cfg(name="synthetic/NAE_R10.yaml", opts=()):
    return tiny_cfg(name, NAE + list(opts))


def test_split_of_the_embedding_dimension_follows_the_reference():
    assert split_embedding_dim(256, 2) == [128, 128]
    assert split_embedding_dim(7, 2) == [3, 4]
    assert split_embedding_dim(10, 3) == [3, 3, 4]


def _identity_head():
    """A 4-d NAE head whose projections copy (res4[:2], res5[:2]) and whose BNs are identities."""
    head = NormAwareEmbeddingHead(in_features=["res4", "res5"], in_channels=[3, 3], embed_dim=4)
    with torch.no_grad():
        for proj in head.projectors.values():
            proj[0].weight.copy_(torch.eye(2, 3))
            proj[0].bias.zero_()
            proj[1].weight.fill_(1.0)
            proj[1].bias.zero_()
            proj[1].running_mean.zero_()
            proj[1].running_var.fill_(1.0 - proj[1].eps)
    return head.eval()


def test_norm_and_angle_decomposition():
    head = _identity_head()
    feats = {
        "res4": torch.tensor([[3.0, 0, 9], [0, 1, 9]]),
        "res5": torch.tensor([[0.0, 4, 9], [0, 0, 9]]),
    }
    out = head(feats)
    x = torch.tensor([[3.0, 0, 0, 4], [0, 1, 0, 0]])  # res4 projection first, then res5
    torch.testing.assert_close(out["norms"], torch.tensor([5.0, 1.0]))
    torch.testing.assert_close(out["embeddings"], x / x.norm(dim=1, keepdim=True))
    assert out["oim_features"] is out["embeddings"]


def test_rescaler_is_a_one_channel_batchnorm_of_the_norm_and_orders_the_scores():
    head = _identity_head()
    with torch.no_grad():
        head.rescaler.running_mean.fill_(2.0)
        head.rescaler.running_var.fill_(4.0 - head.rescaler.eps)
        head.rescaler.weight.fill_(3.0)
        head.rescaler.bias.fill_(-1.0)
    norms = torch.tensor([0.5, 5.0, 1.0, 2.0])
    feats = {
        "res4": torch.stack([norms, torch.zeros(4), torch.zeros(4)], 1),
        "res5": torch.zeros(4, 3),
    }
    out = head(feats)
    torch.testing.assert_close(out["norm_logits"], 3.0 * (norms - 2.0) / 2.0 - 1.0)
    scores = torch.sigmoid(out["norm_logits"])
    assert torch.equal(torch.argsort(scores), torch.argsort(norms))  # larger norm, higher score


def test_reference_initialisation_of_projections_and_bn_weights():
    torch.manual_seed(0)
    head = NormAwareEmbeddingHead(
        in_features=["res4", "res5"], in_channels=[512, 1024], embed_dim=256
    )
    for proj in head.projectors.values():
        lin, bn = proj
        assert lin.weight.std().item() == pytest.approx(0.01, rel=0.1)
        assert bn.weight.std().item() == pytest.approx(0.01, rel=0.2)
        assert lin.bias.abs().max() == 0 and bn.bias.abs().max() == 0


def test_cell_coverage_gives_exact_fractions():
    rois = torch.tensor([[10.0, 20, 24, 34], [0, 0, 7, 14], [5, 5, 5, 9]])
    gts = torch.tensor([[10.0, 20, 17, 34], [0, 0, 3.5, 3.5], [0, 0, 9, 9]])
    labels = cell_coverage(rois, gts, (7, 7))
    assert labels.shape == (3, 1, 7, 7)
    # RoI 0: the GT covers its left half, 7 px = 3.5 cells of 2 px
    expected0 = torch.tensor([1.0, 1, 1, 0.5, 0, 0, 0]).expand(7, 7)
    torch.testing.assert_close(labels[0, 0], expected0)
    # RoI 1: cells are 1 x 2 px; the GT covers 3.5 x 3.5 px in the corner
    row = torch.tensor([1.0, 1, 1, 0.5, 0, 0, 0])
    col = torch.tensor([1.0, 0.75, 0, 0, 0, 0, 0])
    torch.testing.assert_close(labels[1, 0], col[:, None] * row[None, :])
    assert labels[2].abs().sum() == 0  # zero-width RoI


def test_pixel_labels_are_zero_for_background_rois():
    model = build_model(nae_cfg("synthetic/NAE+_R10.yaml"))
    heads = model.roi_heads
    p = Instances((100, 100))
    p.proposal_boxes = Boxes(torch.tensor([[0.0, 0, 20, 40], [0, 0, 20, 40]]))
    p.gt_boxes = Boxes(torch.tensor([[0.0, 0, 10, 40], [0, 0, 10, 40]]))
    p.gt_classes = torch.tensor([0, 1])  # foreground, background (num_classes = 1)
    labels = heads.pixel_labels([p], (4, 4))
    torch.testing.assert_close(labels[0, 0], torch.tensor([1.0, 1, 0, 0]).expand(4, 4))
    assert labels[1].abs().sum() == 0


def test_nae_plus_score_is_divided_by_the_best_proposal_of_its_image():
    model = build_model(nae_cfg("synthetic/NAE+_R10.yaml"))
    out = {"scores": torch.tensor([0.2, 0.4, 0.1, 0.3, 0.6])}
    s = model.roi_heads.detection_scores(out, [2, 3])
    torch.testing.assert_close(s[0], torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(s[1], torch.tensor([1 / 6, 0.5, 1.0]))


def test_pixel_head_attention_pooling():
    head = PixelNormAwareEmbeddingHead(
        in_features=["res4_map", "res5_map"], in_channels=[2, 2], embed_dim=2
    )
    head.eval()
    out = head({"res4_map": torch.randn(3, 2, 8, 8), "res5_map": torch.randn(3, 2, 4, 4)})
    assert out["pixel_logits"].shape == (3, 1, 4, 4)
    x = head.project({"res4_map": torch.randn(1, 2, 8, 8), "res5_map": torch.randn(1, 2, 4, 4)})
    assert x.shape == (1, 2, 4, 4)
    # the pooled embedding is the mean of attention x unit cell directions
    feats = {"res4_map": torch.randn(2, 2, 8, 8), "res5_map": torch.randn(2, 2, 4, 4)}
    out = head(feats)
    x = head.project(feats)
    unit = x / x.norm(dim=1, keepdim=True)
    torch.testing.assert_close(out["oim_features"], (unit * out["attention"]).mean(dim=(2, 3)))
    torch.testing.assert_close(out["embeddings"].norm(dim=1), torch.ones(2))
    torch.testing.assert_close(out["scores"], out["attention"].mean(dim=(1, 2, 3)))


def test_res4_map_is_resized_by_bilinear_interpolation_equal_to_2x2_average():
    head = PixelNormAwareEmbeddingHead(
        in_features=["res4_map", "res5_map"], in_channels=[1, 1], embed_dim=2
    )
    head.eval()
    with torch.no_grad():
        for proj in head.projectors.values():
            proj[0].weight.fill_(1.0)
            proj[0].bias.zero_()
            proj[1].weight.fill_(1.0)
    r4 = torch.randn(1, 1, 14, 14)
    x = head.project({"res4_map": r4, "res5_map": torch.zeros(1, 1, 7, 7)})
    bn = head.projectors["res4"][1]
    expected = torch.nn.functional.avg_pool2d(r4, 2) / math.sqrt(1 + bn.eps)
    torch.testing.assert_close(x[:, :1], expected)


@pytest.mark.parametrize("config", ["synthetic/NAE_R10.yaml", "synthetic/NAE+_R10.yaml"])
def test_training_step_and_inference(config):
    torch.manual_seed(0)
    model = build_model(nae_cfg(config, ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]))
    model.train()
    with EventStorage():
        losses = model([random_input(seed=0), random_input(pids=(), seed=1)])
    assert set(losses) == {"loss_det", "loss_box_reg", "loss_oim", "loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.roi_heads.box_regressor.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    rescaler = model.roi_heads.reid_head.rescaler
    assert rescaler.weight.grad.abs().sum() > 0  # the detection loss trains the norm
    model.eval()
    x = random_input()
    x["query_boxes"] = Boxes(torch.tensor([[5.0, 10, 30, 80]]))
    with torch.no_grad():
        out = model([x])[0]
    inst = out["instances"]
    assert len(inst) > 0 and inst.reid_feats.shape == (len(inst), 16)
    torch.testing.assert_close(inst.reid_feats.norm(dim=1), torch.ones(len(inst)))
    assert torch.all(inst.scores[:-1] >= inst.scores[1:])
    assert out["query_feats"].shape == (1, 16)
    assert len(out["query_contexts"]) == 1 and out["query_contexts"][0].shape[1] == 16
    torch.testing.assert_close(out["query_contexts"][0][0], out["query_feats"][0])


def test_nae_scores_are_the_sigmoid_of_the_rescaled_norm():
    torch.manual_seed(0)
    model = build_model(nae_cfg(opts=["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]))
    model.eval()
    x = random_input()
    with torch.no_grad():
        inst = model([x])[0]["instances"]
        # recompute the norm-aware outputs of the (deterministic) proposals the detector used
        images = model.preprocess_image([x])
        feats = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, feats, None)
        out, _ = model.roi_heads.embedding_stage(feats, [proposals[0].proposal_boxes])
    scores = torch.sigmoid(out["norm_logits"])
    # every reported (score, embedding) pair is one of the proposals' pairs
    for s, e in zip(inst.scores, inst.reid_feats):
        j = torch.argmin((out["embeddings"] - e).norm(dim=1))
        assert (out["embeddings"][j] - e).abs().max() < 1e-5
        assert scores[j].item() == pytest.approx(s.item(), abs=1e-6)


def test_nae_plus_loads_a_trained_nae_checkpoint(tmp_path):
    torch.manual_seed(0)
    nae = build_model(nae_cfg())
    with torch.no_grad():
        for p in nae.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    PersonSearchCheckpointer(nae, str(tmp_path)).save("nae")
    torch.manual_seed(1)
    plus = build_model(nae_cfg("synthetic/NAE+_R10.yaml"))
    PersonSearchCheckpointer(plus).load(str(tmp_path / "nae.pth"))
    a, b = nae.state_dict(), plus.state_dict()
    assert set(a) == set(b)
    for k in a:
        if a[k].dim() == 2 and b[k].dim() == 4:  # the projections became 1x1 convs
            torch.testing.assert_close(b[k], a[k].reshape(b[k].shape), rtol=0, atol=0)
        else:
            assert torch.equal(a[k], b[k]), k
    # the converted projection computes the same per-cell values as the Linear layer did
    lin = nae.roi_heads.reid_head.projectors["res5"][0]
    conv = plus.roi_heads.reid_head.projectors["res5"][0]
    x = torch.randn(3, lin.in_features, 2, 2)
    torch.testing.assert_close(conv(x).permute(0, 2, 3, 1), lin(x.permute(0, 2, 3, 1)))


def test_nae_heads_reject_incompatible_reid_heads():
    with pytest.raises(ValueError, match="needs a re-ID head that returns.*norm_logits"):
        build_model(nae_cfg(opts=["MODEL.REID_HEAD.NAME", "LinearEmbeddingHead"]))
    with pytest.raises(ValueError, match="reads RoI maps"):
        build_model(
            nae_cfg("synthetic/NAE+_R10.yaml", ["MODEL.REID_HEAD.IN_FEATURES", ["res4", "res5"]])
        )
    with pytest.raises(ValueError, match="reads pooled vectors"):
        build_model(nae_cfg(opts=["MODEL.REID_HEAD.IN_FEATURES", ["res5_map"]]))
    with pytest.raises(ValueError, match="MODEL.REID_HEAD.NORM must be one of"):
        build_model(nae_cfg(opts=["MODEL.REID_HEAD.NORM", ""]))
    with pytest.raises(KeyError, match="NONEXISTENT"):
        build_model(nae_cfg(opts=["MODEL.ROI_HEADS.NAME", "NONEXISTENT"]))
