"""tools/benchmark.py optimize-check (output differences of TEST.OPTIMIZE) and flops on tiny
models."""

import json
import os

import pytest

from tests.common import CONFIGS, TINY_MODEL_OPTS

NAE = os.path.join(CONFIGS, "synthetic", "NAE_R10.yaml")
NAEP = os.path.join(CONFIGS, "synthetic", "NAE+_R10.yaml")
UGAS = os.path.join(CONFIGS, "synthetic", "UGAS_R10.yaml")
TINY = [str(tuple(v)) if isinstance(v, (list, tuple)) else str(v) for v in TINY_MODEL_OPTS]


def test_optimize_check_reports_small_differences_of_the_same_detections(run_benchmark, tmp_path):
    js = str(tmp_path / "check.json")
    out = run_benchmark(["optimize-check", "--config", NAEP, "--size", "96x128", "--threads",
                         "1", "--json", js, *TINY])  # fmt: skip
    assert out["optimizations"]["folded_batchnorm"] > 10 and out["optimizations"]["channels_last"]
    assert out["detections"][0] == out["detections"][1] == 50 and out["unmatched"] == 0
    assert 0 < out["query_embedding"] < 1e-4 and out["score"] < 1e-4 and out["box_px"] < 1e-2
    assert json.load(open(js))["detections"] == [50, 50]


def test_flops_per_image_by_operator(run_benchmark):
    out = run_benchmark(["flops", "--configs", NAE, UGAS, "--plain", "--size", "96x128",
                         "--threads", "1", *TINY])  # fmt: skip
    plain, nae, ugas = (out[k]["gflop_per_item"] for k in ("plain detector", NAE, UGAS))
    # same backbone and RPN; SeqNet-based UGAS runs res5 twice and SFM's convolutions
    assert 0 < plain <= nae < ugas
    assert out[NAE]["gflop_by_op"]["convolution"] > 0.9 * nae


@pytest.mark.parametrize(
    "argv, message",
    [
        (["optimize-check", "--config", "nope.yaml"], "config file not found: 'nope.yaml'"),
        (["optimize-check", "--config", f"{NAE}=missing.pth"], "weights file not found"),
        (["optimize-check", "--config", NAE, "--fast", "MODEL.DEVICE"],
         "--fast takes KEY=VALUE, got 'MODEL.DEVICE'"),
        (["optimize-check", "--config", NAE, "MODEL.DEVICE"],
         "config overrides come in KEY VALUE pairs"),
        (["optimize-check", "--config", NAE, "MODEL.NOPE", "1"], "Non-existent key: MODEL.NOPE"),
        (["flops", "--configs", "nope.yaml"], "config file not found: 'nope.yaml'"),
        (["flops", "--configs", NAE, "--size", "9x9"], "both sides must be at least 32 pixels"),
    ],
    ids=["missing config", "missing weights", "fast without =", "odd overrides", "unknown key",
         "flops config",
         "flops size"],
)  # fmt: skip
def test_errors_name_the_input(run_benchmark, argv, message):
    with pytest.raises(SystemExit) as info:
        run_benchmark(argv)
    assert message in str(info.value) and str(info.value).startswith("benchmark ")
