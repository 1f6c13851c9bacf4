"""Mixed precision (SOLVER.AMP / TEST.AMP): bfloat16 autocast on the CPU with float32 memories."""

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from personsearch.engine.train_loop import GuardedTrainLoop
from tests.common import random_input, tiny_cfg

UGAS_TINY = ["MODEL.UGAS.SFM.CONV_DIM", 8, "MODEL.UGAS.SFM.EMBED_DIM", 16]


@pytest.mark.parametrize("config", ["synthetic/SeqNet_R10.yaml", "synthetic/UGAS_R10.yaml"])
def test_bfloat16_training_keeps_the_memories_in_float32(config):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(config, UGAS_TINY))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    data = [[random_input(seed=i), random_input(seed=i + 10)] for i in range(3)]
    loop = GuardedTrainLoop(model, iter(data), optimizer, amp_dtype="bfloat16")
    seen = {}
    oim = model.roi_heads.reid_loss
    logits = oim.logits

    def record(*args, **kwargs):  # every OIM loss (UG's guided one too) goes through logits()
        out = logits(*args, **kwargs)
        seen["dtype"] = out.dtype
        return out

    oim.logits = record
    with EventStorage(0) as storage:
        loop.storage = storage
        for i in range(3):
            loop.iter = i
            loop.run_step()
    del oim.logits
    assert seen["dtype"] == torch.float32  # OIM's logits (and so its loss) are float32
    for m in [model.roi_heads.reid_loss] + (
        [model.roi_heads.ugas.deep_loss] if model.roi_heads.ugas else []
    ):
        assert m.lut.dtype == torch.float32 and m.queue.dtype == torch.float32
        assert m.lut.norm(dim=1).max() == pytest.approx(1.0, abs=1e-5)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bfloat16_inference_returns_float32_close_to_float32_inference():
    torch.manual_seed(0)
    opts = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
    fp32 = build_model(tiny_cfg("synthetic/SeqNet_R10.yaml", opts))
    bf16 = build_model(tiny_cfg("synthetic/SeqNet_R10.yaml", opts + ["TEST.AMP.ENABLED", True]))
    bf16.load_state_dict(fp32.state_dict())
    x = random_input(seed=3)
    outs = []
    for model in (fp32, bf16):
        model.eval()
        with torch.no_grad():
            outs.append(model([x])[0])
    a, b = outs[0]["instances"], outs[1]["instances"]
    assert b.reid_feats.dtype == b.scores.dtype == b.pred_boxes.tensor.dtype == torch.float32
    assert outs[1]["query_feats"].dtype == torch.float32
    assert len(b) > 0
    # the best detection is found in both, with a similar box and embedding
    ious = a.pred_boxes.tensor[:1]
    assert (b.pred_boxes.tensor - ious).abs().sum(dim=1).min() < 5.0


def test_unsupported_amp_dtypes_name_the_key():
    with pytest.raises(ValueError, match="TEST.AMP.DTYPE 'float16': autocast on the CPU supports"):
        build_model(tiny_cfg(opts=["TEST.AMP.ENABLED", True, "TEST.AMP.DTYPE", "float16"]))
    model = build_model(tiny_cfg())
    with pytest.raises(ValueError, match="SOLVER.AMP.DTYPE must be one of"):
        GuardedTrainLoop(
            model, iter([]), torch.optim.SGD(model.parameters(), lr=0.1), amp_dtype="fp8"
        )
