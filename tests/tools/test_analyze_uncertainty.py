"""tools/analyze_uncertainty.py and its library (personsearch.evaluation.uncertainty_analysis):
the box jitter reaches its IoU, the statistics on hand-made rows, and the tool end to end on the
tiny synthetic set with a random-weight tiny UGAS model."""

import json
import os

import numpy as np
import pytest

from personsearch.evaluation.uncertainty_analysis import (
    box_iou,
    jitter_to_iou,
    summarize_uncertainty,
)
from tests.common import CONFIGS, load_tool, tiny_opts

TINY_UGAS = ["MODEL.UGAS.SFM.CONV_DIM", "8", "MODEL.UGAS.SFM.EMBED_DIM", "16",
             "MODEL.UGAS.SFM.POOLER_RESOLUTION", "7"]  # fmt: skip


@pytest.mark.parametrize("target", [0.9, 0.7, 0.5, 0.3])
def test_jitter_reaches_the_target_iou(target):
    rng = np.random.default_rng(0)
    box = np.array([20.0, 30.0, 60.0, 150.0])
    for _ in range(20):
        out, iou = jitter_to_iou(box, target, rng)
        assert iou == pytest.approx(target, abs=1e-3)
        assert box_iou(box, out) == pytest.approx(iou)
        assert np.allclose(out[2:] - out[:2], box[2:] - box[:2])  # a shift, same size


def test_jitter_stays_in_the_image_or_is_clipped():
    rng = np.random.default_rng(1)
    box = np.array([0.0, 0.0, 40.0, 100.0])  # in the corner: half the directions leave the image
    for _ in range(20):
        out, iou = jitter_to_iou(box, 0.5, rng, image_size=(120, 60))
        assert out.min() >= 0 and out[2] <= 60 and out[3] <= 120
        assert 0 < iou <= 1
    with pytest.raises(ValueError, match="target IoU"):
        jitter_to_iou(box, 1.5, rng)


def _rows():
    rows = []
    for p in range(10):
        base = {"image_id": "a", "person": p, "person_id": p, "height": 30.0 + 10 * p,
                "occluded": p < 3}  # fmt: skip
        rows.append(dict(base, variant="gt", iou=1.0, uncertainty=-1.0 - 0.1 * p))
        rows.append(dict(base, variant="iou0.5", iou=0.5, uncertainty=-0.5 - 0.1 * p))
    return rows


def test_summary_statistics():
    s = summarize_uncertainty(_rows())
    assert s["variants"]["gt"]["n"] == 10
    assert s["spearman_iou"]["rho"] < -0.5  # the jittered boxes are more uncertain
    assert s["spearman_height"]["rho"] == pytest.approx(-1.0)  # taller = more certain here
    assert s["paired"]["iou0.5"]["more_uncertain"] == 1.0
    assert s["paired"]["iou0.5"]["mean_difference"] == pytest.approx(0.5)
    assert s["occlusion"]["auc"] == 1.0  # the occluded (short, here) people are most uncertain
    assert s["spread"]["range"] == pytest.approx(0.9)


def test_tool_end_to_end(tiny_synthetic, tmp_path):
    tool = load_tool("analyze_uncertainty")
    out = str(tmp_path / "unc")
    cfg = os.path.join(CONFIGS, "synthetic", "UGAS_R10.yaml")
    result = tool.main(["--config-file", cfg, "--output", out, "--max-images", "2",
                        *tiny_opts(tiny_synthetic, tmp_path, *TINY_UGAS)])  # fmt: skip
    assert result["dataset"] == tiny_synthetic["test"]
    names = {r["variant"] for r in result["boxes"]}
    assert {"gt", "iou0.9", "iou0.7", "iou0.5"} <= names
    assert all(np.isfinite(r["uncertainty"]) for r in result["boxes"])
    for f in ("uncertainty.json", "uncertainty.md", "uncertainty.png"):
        assert os.path.getsize(os.path.join(out, f)) > 0
    with open(os.path.join(out, "uncertainty.json")) as f:
        assert (
            json.load(f)["summary"]["variants"]["gt"]["n"]
            == result["summary"]["variants"]["gt"]["n"]
        )


def test_tool_refuses_a_model_without_variance(tiny_synthetic, tmp_path):
    tool = load_tool("analyze_uncertainty")
    cfg = os.path.join(CONFIGS, "synthetic", "SeqNet_R10.yaml")
    with pytest.raises(ValueError, match="OUTPUT_VARIANCE"):
        tool.main(["--config-file", cfg, "--output", str(tmp_path / "x"), "--max-images", "1",
                   *tiny_opts(tiny_synthetic, tmp_path)])  # fmt: skip


def test_tool_usage_errors(tmp_path, capsys):
    tool = load_tool("analyze_uncertainty")
    cfg = os.path.join(CONFIGS, "synthetic", "UGAS_R10.yaml")
    with pytest.raises(SystemExit):
        tool.main(["--config-file", cfg, "--output", str(tmp_path), "--ious", "1.5"])
    assert "--ious must be in (0, 1]" in capsys.readouterr().err
