"""GuardedTrainLoop: non-finite losses/gradients stop training, or are skipped when allowed."""

import itertools
import logging

import pytest
import torch
from detectron2.utils.events import EventStorage
from torch import nn

from personsearch.engine.train_loop import GuardedTrainLoop
from personsearch.solver.build import build_optimizer
from tests.common import tiny_cfg


class ToyModel(nn.Module):
    """Returns two losses; ``bad`` maps an iteration to ("loss" | "grad", value) to inject."""

    def __init__(self, bad):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))
        self.bad = bad
        self.calls = 0

    def forward(self, data):
        kind, value = self.bad.get(self.calls, (None, None))
        self.calls += 1
        loss_a = (self.w**2).sum()
        loss_b = self.w.sum() * 0.1
        if kind == "loss":
            loss_b = loss_b * value
        if kind == "grad":  # finite loss, non-finite gradient (sqrt at 0 has infinite slope)
            loss_a = loss_a + torch.sqrt(self.w[0] * 0.0)
        return {"loss_a": loss_a, "loss_b": loss_b}


def run(model, iters, max_skips=0):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = GuardedTrainLoop(model, itertools.repeat([{}]), opt, max_skips=max_skips)
    with EventStorage(0) as storage:
        loop.storage = storage
        for it in range(iters):
            loop.iter = it
            storage.iter = it
            loop.run_step()
    return loop


def test_nan_loss_stops_with_iteration_and_loss_name():
    with pytest.raises(FloatingPointError, match=r"loss at iteration 2: loss_b.*MAX_SKIPS=0"):
        run(ToyModel({2: ("loss", float("nan"))}), 5)


def test_non_finite_gradient_stops_naming_the_parameter():
    with pytest.raises(FloatingPointError, match=r"gradient at iteration 1: w\b"):
        run(ToyModel({1: ("grad", None)}), 3)


def test_skip_leaves_weights_untouched_and_counts(caplog):
    model = ToyModel({1: ("loss", float("inf"))})
    reference = ToyModel({})
    with caplog.at_level(logging.WARNING):
        loop = run(model, 3, max_skips=1)
    # iteration 1 made no update: the guarded model is one step behind a clean run of 3 steps
    run(reference, 2)
    torch.testing.assert_close(model.w.detach(), reference.w.detach())
    assert loop.num_skipped == 1
    assert "Step skipped (1/1)" in caplog.text and "iteration 1" in caplog.text
    assert loop.state_dict()["num_nonfinite_skipped"] == 1


def test_skips_beyond_the_cap_stop():
    bad = {1: ("loss", float("nan")), 3: ("grad", None)}
    with pytest.raises(FloatingPointError, match="iteration 3"):
        run(ToyModel(bad), 5, max_skips=1)


def test_full_model_gradient_clipping_clips_the_total_norm():
    cfg = tiny_cfg(opts=["SOLVER.CLIP_GRADIENTS.CLIP_VALUE", 1.0, "SOLVER.BASE_LR", 1.0,
                         "SOLVER.MOMENTUM", 0.0, "SOLVER.WEIGHT_DECAY", 0.0,
                         "SOLVER.WEIGHT_DECAY_NORM", 0.0])  # fmt: skip
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    opt = build_optimizer(cfg, model)
    assert "FullModelGradientClipping" in type(opt).__name__
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)  # total norm 3 * sqrt(6) > 1
    opt.step()
    step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters())])
    # one global scale: the update has total norm 1 and keeps the gradient direction
    assert step.norm().item() == pytest.approx(1.0, rel=1e-4)
    torch.testing.assert_close(step, torch.full_like(step, step[0].item()))
