"""tools/gpu_bench.sh: its command line reaches the throughput sweep (a CPU run with a zero time
budget: the device rates, outputs and the plan's flags, no model timed) and a missing package is
a clear error."""

import json
import os
import subprocess
import sys

from tests.common import REPO

SCRIPT = os.path.join(REPO, "tools", "gpu_bench.sh")


def _run(tmp_path, **env):
    full = dict(os.environ, PY=sys.executable, OUT=str(tmp_path / "out"), **env)
    return subprocess.run(["bash", SCRIPT], env=full, capture_output=True, text=True, timeout=600)


def test_cpu_run_with_no_budget_writes_the_outputs(tmp_path):
    proc = _run(tmp_path, DEVICE="cpu", SIZE="64x96", MODELS="synthetic", BATCHES="1 2",
                BUDGET="0")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    saved = json.load(open(tmp_path / "out" / "throughput.json"))
    settings = saved["settings"]
    assert settings["batches"] == [1, 2] and settings["precisions"] == ["bfloat16", "float32"]
    assert settings["layouts"] == ["on", "off"] and settings["compile_batch"] == 16
    assert [os.path.basename(m) for m in settings["models"]] == [
        "UGAS_R10.yaml",
        "SeqNet_R10.yaml",
        "NAE_R10.yaml",
        "NAE+_R10.yaml",
        "NAE_R10.yaml",
    ]
    assert len(settings["pairs"]) == 4 and saved["extras"]["skipped_after_budget"]
    assert set(saved["peaks"]) == {"bfloat16", "float32"}
    assert "ended the run early" in open(tmp_path / "out" / "throughput.md").read()
    assert "torch " in open(tmp_path / "out" / "log.txt").read()
    check = json.load(open(tmp_path / "out" / "predictor_check.json"))
    assert check["device"] == "cpu" and check["float32"]["outputs_on_cpu"]


def test_a_missing_package_is_named(tmp_path):
    fake = tmp_path / "fake"
    (fake / "detectron2").mkdir(parents=True)
    (fake / "detectron2" / "__init__.py").write_text(
        "raise ImportError('no detectron2 here', name='detectron2')\n"
    )
    proc = _run(tmp_path, PYTHONPATH=str(fake))
    assert proc.returncode != 0
    assert "gpu_bench: cannot import 'detectron2'; run 'bash tools/gpu_bench.sh --prepare'" in (
        proc.stdout + proc.stderr
    )


def test_predictor_device_check_on_the_cpu():
    from benchmarks.device_check import BATCH_ATOL, check

    result = check("cpu", size=(128, 192), images=2)
    for precision in ("float32", "bfloat16"):
        r = result[precision]
        assert r["outputs_on_cpu"] and r["detections"] == r["detections_cpu"]
        assert r["optimizations"]["folded_batchnorm"] > 0
    assert result["float32"]["batch_vs_single_query"] <= BATCH_ATOL
    assert result["float32"]["device_vs_cpu_query"] == 0.0  # the same device here
