"""The sparse-product RoIAlign equals torchvision's kernel (values and gradients), alone and
inside the models."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torchvision.ops import roi_align

from personsearch.layers import ROIAlign, build_roi_pooler, roi_align_sparse
from tests.common import random_input, tiny_cfg


def _rois(n, h, w, scale, count, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(count, 2, generator=g) * torch.tensor([w / scale, h / scale]) - 20
    wh = torch.rand(count, 2, generator=g) * 120 + 0.1
    rois = torch.cat([torch.randint(0, n, (count, 1), generator=g).float(), xy, xy + wh], 1)
    # boxes outside the map, across its borders, degenerate
    extra = torch.tensor(
        [
            [0, -40.0, -40, -10, -10],
            [0, -30, -30, 5, 5],
            [n - 1, w / scale - 3, h / scale - 3, w / scale + 40, h / scale + 40],
            [0, 10, 10, 10, 10],
        ]
    )
    return torch.cat([rois, extra])


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize(
    "output_size,sampling_ratio,scale", [(7, 1, 1 / 16), (14, 2, 1 / 16), (5, 3, 1 / 4)]
)
def test_values_and_gradients_equal_torchvision(aligned, output_size, sampling_ratio, scale):
    torch.manual_seed(0)
    feats = torch.randn(2, 6, 20, 27, requires_grad=True)
    rois = _rois(2, 20, 27, scale, 40, seed=1)
    grad = torch.randn(len(rois), 6, output_size, output_size)
    outs = []
    for fn in (roi_align, roi_align_sparse):
        feats.grad = None
        y = fn(feats, rois, output_size, scale, sampling_ratio, aligned)
        y.backward(grad)
        outs.append((y.detach(), feats.grad.clone()))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=0, atol=1e-5)
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=0, atol=1e-5)


def test_no_rois_and_module_dispatch():
    feats = torch.randn(1, 3, 8, 8)
    assert roi_align_sparse(feats, torch.zeros(0, 5), 4, 0.5, 2).shape == (0, 3, 4, 4)
    rois = torch.tensor([[0, 1.0, 1, 9, 9]])
    adaptive = ROIAlign(4, 0.5, 0, aligned=False)  # adaptive sampling: torchvision's kernel
    assert torch.equal(adaptive(feats, rois), roi_align(feats, rois, 4, 0.5, 0, False))
    with pytest.raises(ValueError, match="ROI_ALIGN_CPU must be one of"):
        ROIAlign(4, 0.5, 2, cpu_impl="fast")
    pooler = build_roi_pooler(4, (0.5,), 2, "ROIAlignV2", "sparse")
    assert isinstance(pooler.level_poolers[0], ROIAlign) and pooler.level_poolers[0].aligned


@pytest.mark.parametrize("config", ["Base-PersonSearch.yaml", "synthetic/SeqNet_R10.yaml"])
def test_models_give_the_same_outputs_with_either_implementation(config):
    results = []
    for impl in ("torchvision", "sparse"):
        torch.manual_seed(0)
        opts = ["MODEL.ROI_BOX_HEAD.ROI_ALIGN_CPU", impl, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
        model = build_model(tiny_cfg(config, opts))
        model.train()
        torch.manual_seed(1)
        with EventStorage():
            losses = model([random_input(seed=0)])
        sum(losses.values()).backward()
        grad = model.roi_heads.feature_head.res5[0].conv1.weight.grad.clone()
        model.eval()
        with torch.no_grad():
            out = model([random_input(seed=2)])[0]["instances"]
        results.append((losses, grad, out))
    (la, ga, oa), (lb, gb, ob) = results
    for k in la:
        torch.testing.assert_close(lb[k], la[k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gb, ga, rtol=1e-3, atol=1e-5)
    assert len(oa) == len(ob)
    torch.testing.assert_close(ob.pred_boxes.tensor, oa.pred_boxes.tensor, rtol=0, atol=1e-3)
    torch.testing.assert_close(ob.reid_feats, oa.reid_feats, rtol=0, atol=1e-4)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("where", ["corner", "whole map", "outside"])
def test_inference_window_is_bit_identical_to_the_full_product(aligned, where):
    """Without autograd only the window of pixels the RoIs read is copied (a 1-box query on a
    900x1500 res2 map no longer copies the whole map); the sum runs over the same terms in the
    same order, so the result is bit for bit the product over the full map."""
    from personsearch.layers.roi_align import roi_align_matrix

    torch.manual_seed(0)
    feats = torch.randn(2, 5, 40, 60)
    rois = {
        "corner": torch.tensor([[0, 3.0, 4, 20, 30], [1, 10, 2, 33, 25]]),
        "whole map": torch.tensor([[0, 0.0, 0, 60, 40], [1, 5, 5, 20, 20]]),
        "outside": torch.tensor([[0, -30.0, -30, -5, -5], [1, 58, 38, 90, 90]]),
    }[where]
    a = roi_align_matrix(rois, (2, 40, 60), (7, 7), 1.0, 2, aligned)
    full = (a @ feats.permute(0, 2, 3, 1).reshape(-1, 5)).reshape(2, 7, 7, 5).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = roi_align_sparse(feats, rois, 7, 1.0, 2, aligned)
    assert torch.equal(out, full.contiguous())
    ref = roi_align(feats, rois, 7, 1.0, 2, aligned)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # with autograd the full product runs (training is unchanged) and gives the same values
    g = feats.clone().requires_grad_(True)
    assert torch.equal(roi_align_sparse(g, rois, 7, 1.0, 2, aligned).detach(), out)


def test_channels_last_maps_give_channels_last_rois_with_the_same_values():
    torch.manual_seed(0)
    feats = torch.randn(2, 6, 20, 27)
    rois = _rois(2, 20, 27, 1 / 16, 30, seed=3)
    with torch.no_grad():
        ref = roi_align_sparse(feats, rois, 7, 1 / 16, 2, False)
        out = roi_align_sparse(feats.to(memory_format=torch.channels_last), rois, 7, 1 / 16, 2)
    assert ref.is_contiguous()
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_16_bit_maps_are_pooled_at_unrounded_box_coordinates():
    # a 16-bit map (autocast) is pooled in float32 with float32 boxes: bfloat16 would move a
    # coordinate near 1000 px by up to 4 px
    torch.manual_seed(0)
    feats = torch.randn(1, 4, 80, 80).to(torch.bfloat16)
    rois = torch.tensor([[0, 1001.0, 1003.0, 1207.0, 1209.0]])
    layer = ROIAlign(7, 1 / 16, 2, aligned=False, cpu_impl="torchvision")
    out = layer(feats, rois)
    assert out.dtype == torch.bfloat16
    expected = roi_align(feats.float(), rois, 7, 1 / 16, 2, False).to(torch.bfloat16)
    rounded = roi_align(feats.float(), rois.to(torch.bfloat16).float(), 7, 1 / 16, 2, False)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert (rounded.to(torch.bfloat16) != expected).any()
