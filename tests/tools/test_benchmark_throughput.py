"""tools/benchmark.py throughput (the GPU script's sweep) on tiny models on the CPU: rows per
model x precision x layout x batch, FLOPs and MFU, ratios, profile, outputs, time budget, errors."""

import json
import os

import pytest

from tests.common import CONFIGS, TINY_MODEL_OPTS

NAE = os.path.join(CONFIGS, "synthetic", "NAE_R10.yaml")
NAEP = os.path.join(CONFIGS, "synthetic", "NAE+_R10.yaml")
TINY = [str(tuple(v)) if isinstance(v, (list, tuple)) else str(v) for v in TINY_MODEL_OPTS]
TOPK = 50


def test_throughput_sweep_writes_rows_ratios_and_profile(run_benchmark, tmp_path):
    out = run_benchmark(
        ["throughput", "--models", NAEP, f"plain:{NAE}", "--size", "96x128", "--batch", "1", "2",
         "--precision", "float32", "--channels-last", "on", "off", "--runs", "1", "--warmup", "0",
         "--profile", NAEP, "--pairs", f"{NAEP}=plain:{NAE}", "--threads", "1",
         "--out", str(tmp_path), *TINY],
    )  # fmt: skip
    rows = out["rows"]
    variants = {(r["model"], r["variant"], r["batch"]) for r in rows}
    for model in ("synthetic/NAE+_R10.yaml", "plain detector of synthetic/NAE_R10.yaml"):
        assert (model, "today", 1) in variants  # the unoptimised batch-1 path
        for layout in ("on", "off"):
            for batch in (1, 2):
                assert (model, f"folded, channels_last {layout}", batch) in variants
    for r in rows:
        assert "error" not in r and r["detections_per_image"] == TOPK
        assert r["images_per_s"] == pytest.approx(1000.0 / r["ms_per_image"])
        assert r["gflop_per_image"] > 0.01 and 0 < r["mfu"] < 1.5
    ratios = json.load(open(tmp_path / "throughput.json"))["ratios"]
    assert len(ratios) == 5 and all(r["ratio"] > 0 for r in ratios)
    md = open(tmp_path / "throughput.md").read()
    assert md == out["markdown"]
    assert "| synthetic/NAE+_R10.yaml | float32 | folded, channels_last on | 2 |" in md
    assert "synthetic/NAE+_R10.yaml / plain detector of synthetic/NAE_R10.yaml" in md
    assert "Profile of synthetic/NAE+_R10.yaml, batch 1, float32, unoptimised" in md


def test_throughput_stops_at_the_budget_and_keeps_what_it_measured(run_benchmark, tmp_path):
    out = run_benchmark(["throughput", "--models", NAE, NAEP, "--size", "96x128", "--batch", "1",
                         "--precision", "float32", "--channels-last", "on", "--runs", "1",
                         "--warmup", "0", "--budget", "0", "--out", str(tmp_path),
                         *TINY])  # fmt: skip
    # nothing starts after the budget; the outputs are still written (the device's rates)
    assert out["rows"] == []
    saved = json.load(open(tmp_path / "throughput.json"))
    assert saved["extras"]["skipped_after_budget"] and saved["peaks"]["float32"]["flops_per_s"] > 0
    assert "ended the run early" in open(tmp_path / "throughput.md").read()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--models", "nope.yaml"], "config file not found: 'nope.yaml'"),
        (["--models", NAE, "--batch", "0"], "--batch values must be >= 1"),
        (["--models", NAE, "--batch", "x"], "bad --batch value 'x'"),
        (["--models", NAE, "--precision", "float8"], "bad --precision value 'float8'"),
        (["--models", NAE, "--size", "10x10"], "both sides must be at least 32 pixels"),
        (["--models", NAE, "MODEL.DEVICE"], "config overrides come in KEY VALUE pairs"),
        (["--models", NAE, "--runs", "0"], "--runs must be >= 1"),
    ],
    ids=["missing config", "zero batch", "bad batch", "bad precision", "tiny size",
         "odd overrides", "zero runs"],
)  # fmt: skip
def test_throughput_errors_name_the_input(run_benchmark, argv, message):
    with pytest.raises(SystemExit) as info:
        run_benchmark(["throughput", *argv])
    assert message in str(info.value) and str(info.value).startswith("benchmark throughput: ")
