"""The CUDA code paths (run where a GPU is available, skipped elsewhere): a training step on the
GPU, float16 AMP with its GradScaler (checkpointed weights-only), bfloat16 inference, and the
predictor on the GPU against the same weights on the CPU. Tiny models: seconds on any GPU."""

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from personsearch.checkpoint import PersonSearchCheckpointer
from personsearch.engine.predictor import PersonSearchPredictor
from personsearch.engine.train_loop import GuardedTrainLoop
from personsearch.utils.serialization import check_saved_types, load_torch_file, unsafe_globals
from tests.common import random_input, tiny_cfg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = ["MODEL.DEVICE", "cuda"]
UGAS_TINY = ["MODEL.UGAS.SFM.CONV_DIM", 8, "MODEL.UGAS.SFM.EMBED_DIM", 16]


def _train(model, amp_dtype="", steps=3):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = [[random_input(seed=i), random_input(seed=i + 10)] for i in range(steps)]
    loop = GuardedTrainLoop(model, iter(data), optimizer, amp_dtype=amp_dtype)
    with EventStorage(0) as storage:
        loop.storage = storage
        for i in range(steps):
            loop.iter = i
            loop.run_step()
        losses = {k: v.latest() for k, v in storage.histories().items() if "loss" in k}
    return loop, optimizer, losses


@pytest.mark.parametrize("config", ["synthetic/SeqNet_R10.yaml", "synthetic/UGAS_R10.yaml"])
def test_training_steps_on_the_gpu(config):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(config, CUDA + UGAS_TINY))
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    before = [p.detach().clone() for p in model.parameters()]
    loop, optimizer, losses = _train(model)
    assert losses and all(np.isfinite(v) for v in losses.values())
    assert loop.num_skipped == 0
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert changed > len(before) // 2  # the optimizer stepped
    assert model.roi_heads.reid_loss.lut.is_cuda


def test_float16_amp_with_grad_scaler_and_weights_only_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_cfg("synthetic/SeqNet_R10.yaml", CUDA + ["SOLVER.AMP.ENABLED", True])
    model = build_model(cfg)
    loop, optimizer, losses = _train(model, amp_dtype="float16", steps=4)
    assert isinstance(loop.grad_scaler, torch.amp.GradScaler)
    assert loop.grad_scaler.get_scale() > 0
    assert all(np.isfinite(v) for v in losses.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # the scaler's state is saved with the trainer's and loads weights-only
    state = loop.state_dict()
    assert "grad_scaler" in state
    check_saved_types(state)
    ckpt = PersonSearchCheckpointer(model, str(tmp_path))
    ckpt.save("model_amp", trainer=state)
    path = str(tmp_path / "model_amp.pth")
    assert unsafe_globals(path) == []
    loaded = load_torch_file(path)
    assert loaded["trainer"]["grad_scaler"]["scale"] == pytest.approx(loop.grad_scaler.get_scale())
    fresh = GuardedTrainLoop(model, iter([]), optimizer, amp_dtype="float16")
    fresh.load_state_dict(loaded["trainer"])
    assert fresh.grad_scaler.get_scale() == loop.grad_scaler.get_scale()


def test_bfloat16_inference_on_the_gpu_returns_float32():
    torch.manual_seed(0)
    opts = CUDA + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
    model = build_model(tiny_cfg("synthetic/SeqNet_R10.yaml", opts + ["TEST.AMP.ENABLED", True]))
    model.eval()
    with torch.no_grad():
        out = model([random_input(seed=3)])[0]
    inst = out["instances"]
    assert len(inst) > 0 and inst.reid_feats.is_cuda
    assert inst.reid_feats.dtype == inst.scores.dtype == torch.float32


@pytest.fixture
def no_tf32():
    """Full float32 on the GPU (cuDNN uses TF32 for convolutions by default), so that GPU and CPU
    results can be compared closely."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_predictor_on_the_gpu_matches_the_cpu(tmp_path, no_tf32):
    torch.manual_seed(0)
    opts = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
    cpu_cfg = tiny_cfg(opts=opts)
    weights = str(tmp_path / "random.pth")
    torch.save({"model": build_model(cpu_cfg).state_dict()}, weights)
    cpu_cfg.MODEL.WEIGHTS = weights
    gpu_cfg = cpu_cfg.clone()
    gpu_cfg.MODEL.DEVICE = "cuda"
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    box = [[20.0, 10.0, 60.0, 100.0]]
    on_cpu = PersonSearchPredictor(cpu_cfg)(image, query_boxes=box)
    gpu = PersonSearchPredictor(gpu_cfg)
    assert next(gpu.model.parameters()).is_cuda
    on_gpu = gpu(image, query_boxes=box)
    assert on_gpu["query_feats"].device.type == "cpu"  # outputs come back to the CPU
    torch.testing.assert_close(on_gpu["query_feats"], on_cpu["query_feats"], atol=1e-3, rtol=0)
    torch.testing.assert_close(gpu.embed(image, box), on_cpu["query_feats"], atol=1e-3, rtol=0)
    # detections: near-equal scores may swap places or NMS decisions, so compare as sets
    a, b = on_cpu["instances"].pred_boxes.tensor, on_gpu["instances"].pred_boxes.tensor
    assert len(a) > 0 and len(b) > 0
    nearest = torch.cdist(a, b, p=float("inf")).min(dim=1).values
    assert (nearest < 1.0).float().mean() >= 0.9, nearest
