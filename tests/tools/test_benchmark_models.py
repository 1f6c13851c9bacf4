"""tools/benchmark.py train / inference on the tiny model and synthetic set, run in-process."""

import json
import os

import pytest
import torch

from tests.common import CONFIGS, tiny_opts


def test_train_benchmark_times_the_requested_steps(run_benchmark, tiny_synthetic, tmp_path, capsys):
    out = str(tmp_path / "train.json")
    cfg = os.path.join(CONFIGS, "Base-PersonSearch.yaml")
    res = run_benchmark(
        ["train", "--config-file", cfg, "--iters", "3", "--warmup", "1", "--batches", "2",
         "--json", out, *tiny_opts(tiny_synthetic, tmp_path)],
    )  # fmt: skip
    assert res["timed"] == 3 and res["images_per_iter"] == 2
    assert 0 < res["seconds_per_iter_median"] < 60 and res["peak_memory_mb"] > 0
    saved = json.load(open(out))
    assert saved["seconds_per_iter_mean"] == pytest.approx(res["seconds_per_iter_mean"])
    assert "s/iter median" in capsys.readouterr().out


def test_inference_benchmark_loads_weights_and_times_images(
    run_benchmark, tiny_synthetic, tmp_path
):
    cfg = os.path.join(CONFIGS, "Base-PersonSearch.yaml")
    opts = tiny_opts(tiny_synthetic, tmp_path)
    # weights of the same architecture, saved as a checkpoint
    res = run_benchmark(["inference", "--config-file", cfg, "--images", "4", "--warmup", "1",
                         *opts])  # fmt: skip
    assert res["timed"] == 4 and res["dataset"] == tiny_synthetic["test"]
    assert 0 < res["seconds_per_image_median"] < 60
    # the predictor's inference fast path (TEST.OPTIMIZE, on by default)
    assert res["optimizations"]["folded_batchnorm"] > 0 and res["optimizations"]["channels_last"]

    from personsearch import get_person_search_cfg
    from personsearch.engine import PersonSearchTrainer

    model = PersonSearchTrainer.build_model(get_person_search_cfg(cfg, opts))
    weights = str(tmp_path / "w.pth")
    torch.save({"model": model.state_dict()}, weights)
    res = run_benchmark(["inference", "--config-file", cfg, "--images", "100", "--warmup", "1",
                         *opts, "MODEL.WEIGHTS", weights])  # fmt: skip
    assert res["timed"] == 5  # the 6 test images, less one warm-up


def test_model_benchmark_on_a_cuda_config_without_cuda(run_benchmark, tiny_synthetic, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    cfg = os.path.join(CONFIGS, "Base-PersonSearch.yaml")
    opts = tiny_opts(tiny_synthetic, tmp_path) + ["MODEL.DEVICE", "cuda"]
    with pytest.raises(SystemExit, match="add 'MODEL.DEVICE cpu'"):
        run_benchmark(["train", "--config-file", cfg, *opts])
