"""tools/benchmark.py compare on tiny models (96x128 images, one timed run), the plain detector's
RoI head, forced mode and the command-line errors. The --official path needs the external code
and is not run here; only its errors are."""

import json
import os

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock

from benchmarks.forcing import batchnorm_layers, calibrate_batchnorm
from benchmarks.inputs import BenchmarkInputs, parse_size
from benchmarks.models import plain_detector_cfg
from personsearch.modeling import build_res5_stage
from tests.common import CONFIGS, TINY_MODEL_OPTS, tiny_cfg

NAE = os.path.join(CONFIGS, "synthetic", "NAE_R10.yaml")
SEQNET = os.path.join(CONFIGS, "synthetic", "SeqNet_R10.yaml")
TINY = [str(tuple(v)) if isinstance(v, (list, tuple)) else str(v) for v in TINY_MODEL_OPTS]
TOPK = 50  # MODEL.RPN.POST_NMS_TOPK_TEST of TINY_MODEL_OPTS
# a tiny bottleneck ResNet-50 layout (3-4-6-3 bottleneck blocks, narrow)
TINY_BOTTLENECK = ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.WIDTH_PER_GROUP", "4",
                   "MODEL.RESNETS.RES2_OUT_CHANNELS", "16"]  # fmt: skip
FAST = ["--size", "96x128", "--runs", "1", "--warmup", "0", "--train-batch", "1",
        "--calib-images", "1", "--threads", "1"]  # fmt: skip


def _rows(out):
    return {(r["model"], r["precision"]): r for r in out["rows"]}


def _by_batch(out):
    return {(r["model"], r["batch"]): r for r in out["rows"]}


def test_compare_two_tiny_configs_in_process(run_benchmark, tmp_path, capsys):
    js, md = str(tmp_path / "c.json"), str(tmp_path / "c.md")
    out = run_benchmark(
        ["compare", "--configs", NAE, SEQNET, *FAST, "--no-subprocess", "--json", js, "--md", md,
         *TINY],
    )  # fmt: skip
    saved = json.load(open(js))
    assert saved["system"]["torch"] == torch.__version__ and saved["system"]["device"] == "cpu"
    assert saved["system"]["device_name"] and saved["system"]["torch_threads"] >= 1
    rows = {r["model"]: r for r in saved["rows"]}
    assert set(rows) == {"plain Faster R-CNN C4", "synthetic/NAE_R10.yaml",
                         "synthetic/SeqNet_R10.yaml"}  # fmt: skip
    plain = rows["plain Faster R-CNN C4"]
    assert plain["kind"] == "plain" and plain["query"] is None
    assert plain["inference_ratio"] == pytest.approx(1.0)
    assert plain["train_ratio"] == pytest.approx(1.0)
    for name, r in rows.items():
        assert r["errors"] == {} and r["mode"] == "forced" and r["size"] == "96x128"
        assert r["bn_calibrated"] > 0
        inf = r["inference"]
        # forced mode: every model, the plain detector included, detects the full top-k
        assert inf["proposals_per_image"] == TOPK
        assert inf["detections_per_image"] == inf["expected_detections"] == TOPK
        assert inf["ms_median"] > 0 and inf["peak_memory_mb"] > 0 and inf["runs"] == 1
        assert r["train"]["s_median"] > 0 and r["train"]["images_per_iter"] == 1
        assert r["train"]["rois_per_image"] > 0 and r["train"]["nonfinite_skips"] == 0
        if r["kind"] == "ours":
            assert r["plain"] == "plain Faster R-CNN C4"
            assert r["inference_ratio"] > 0 and r["train_ratio"] > 0
            assert r["query"]["ms_median"] > 0 and r["query"]["queries"] == 1
    # SeqNet's second stage embeds every first-stage box: twice the RoIs of NAE
    assert rows["synthetic/NAE_R10.yaml"]["inference"]["rois_per_image"] == TOPK
    assert rows["synthetic/SeqNet_R10.yaml"]["inference"]["rois_per_image"] == 2 * TOPK
    table = open(md).read()
    assert (
        table == out["markdown"]
        and "| plain Faster R-CNN C4 | 96x128 | float32 | 1 | forced |" in table
    )
    assert "× plain" in table and "mode `forced`" in table
    assert "| synthetic/SeqNet_R10.yaml |" in capsys.readouterr().out


def test_batches_give_images_per_second_flops_and_utilisation(run_benchmark):
    out = run_benchmark(["compare", "--configs", NAE, *FAST, "--no-subprocess", "--measure",
                         "inference", "query", "--batch", "1", "2", *TINY])  # fmt: skip
    rows = _by_batch(out)
    assert set(rows) == {(n, b) for n in ("plain Faster R-CNN C4", "synthetic/NAE_R10.yaml")
                         for b in (1, 2)}  # fmt: skip
    peak = out["peaks"]["float32"]
    assert peak["source"] == "measured" and peak["flops_per_s"] > 1e8
    for (name, batch), r in rows.items():
        inf = r["inference"]
        assert r["errors"] == {} and inf["batch"] == batch
        # per image: counts of one image, time of a call divided by its images
        assert inf["proposals_per_image"] == TOPK and inf["detections_per_image"] == TOPK
        assert inf["images_per_s"] == pytest.approx(1000.0 / inf["ms_median"])
        assert inf["gflop_per_item"] > 0.01 and 0 < inf["mfu"] < 1.5
        assert inf["cpu_ms_median"] > 0
        assert inf["optimizations"]["folded_batchnorm"] > 0
        assert r["inference_ratio"] > 0  # against the plain detector of the same batch
        assert (r["query"] is not None) == (name != "plain Faster R-CNN C4" and batch == 1)
    # a batch of 2 does the same work per image: same FLOPs per image
    for name in ("plain Faster R-CNN C4", "synthetic/NAE_R10.yaml"):
        one, two = rows[(name, 1)]["inference"], rows[(name, 2)]["inference"]
        assert two["gflop_per_item"] == pytest.approx(one["gflop_per_item"], rel=1e-6)
    assert rows[("plain Faster R-CNN C4", 2)]["inference_ratio"] == pytest.approx(1.0)
    assert "| synthetic/NAE_R10.yaml | 96x128 | float32 | 2 | forced |" in out["markdown"]
    assert "MFU: model FLOPs per image" in out["markdown"]


def test_no_optimize_runs_the_model_as_built(run_benchmark):
    out = run_benchmark(["compare", "--configs", NAE, *FAST, "--no-subprocess", "--measure",
                         "inference", "--no-optimize", "--no-flops", *TINY])  # fmt: skip
    for r in out["rows"]:
        opt = r["inference"]["optimizations"]
        assert opt == {"folded_batchnorm": 0, "channels_last": False, "compiled": []}
        assert r["inference"]["mfu"] is None and r["inference"]["gflop_per_item"] is None
    assert out["peaks"] == {} and "MFU: model FLOPs" not in out["markdown"]


def test_interleaved_runs_alternate_persistent_workers(run_benchmark):
    out = run_benchmark(["compare", "--configs", NAE, *FAST, "--runs", "2", "--measure",
                         "inference", "query", "train", "--interleave", *TINY])  # fmt: skip
    rows = _rows(out)
    for (name, _), r in rows.items():
        assert r["errors"] == {}
        assert r["inference"]["interleaved"] and r["inference"]["runs"] == 2
        assert r["inference"]["detections_per_image"] == TOPK
        assert r["inference"]["peak_memory_mb"] > 100  # its own process
        assert r["train"]["s_median"] > 0 and not r["train"]["interleaved"]  # one after another
    assert rows[("synthetic/NAE_R10.yaml", "float32")]["query"]["interleaved"]
    assert "interleaved (the models of a size/precision/batch" in out["markdown"]


def test_an_interleaved_worker_that_fails_is_an_error_row_and_the_others_go_on():
    from benchmarks.interleave import run_interleaved
    from benchmarks.jobs import Job

    inputs = BenchmarkInputs(96, 128, calib_images=1)
    good = Job(kind="plain", name="plain", measure="inference", inputs=vars(inputs).copy(),
               runs=1, warmup=0, config_file=NAE, opts=TINY, threads=1)  # fmt: skip
    bad = Job(kind="ours", name="bad", measure="inference", inputs=vars(inputs).copy(), runs=1,
              warmup=0, config_file=NAE, opts=TINY + ["MODEL.NOPE", "1"], threads=1)  # fmt: skip
    results = run_interleaved([bad, good], runs=2)
    assert "Non-existent key: MODEL.NOPE" in results[0]["error"]
    assert results[1]["error"] is None and len(results[1]["seconds"]) == 2
    assert results[1]["detections_per_image"] == TOPK


def test_compare_in_subprocesses(run_benchmark):
    out = run_benchmark(["compare", "--configs", NAE, *FAST, "--measure", "inference", *TINY])
    rows = _rows(out)
    assert set(rows) == {
        ("plain Faster R-CNN C4", "float32"),
        ("synthetic/NAE_R10.yaml", "float32"),
    }
    for r in rows.values():
        assert r["errors"] == {} and r["train"] is None and r["query"] is None
        assert r["inference"]["detections_per_image"] == TOPK
        assert r["inference"]["peak_memory_mb"] > 100  # a whole process with torch
        assert r["inference_ratio"] > 0
    assert "fresh process per measurement" in out["markdown"]
    assert {e["result"]["threads"] for e in out["measurements"]} == {1}


def test_amp_adds_mixed_precision_rows(run_benchmark):
    out = run_benchmark(["compare", "--configs", SEQNET, *FAST, "--no-subprocess", "--amp",
                         "bfloat16", *TINY])  # fmt: skip
    rows = _rows(out)
    assert set(rows) == {(n, p) for n in ("plain Faster R-CNN C4", "synthetic/SeqNet_R10.yaml")
                         for p in ("float32", "bfloat16")}  # fmt: skip
    for (name, precision), r in rows.items():
        assert r["errors"] == {} and r["inference"]["detections_per_image"] == TOPK
        assert r["inference_ratio"] > 0 and r["train_ratio"] > 0
    # each precision is compared with the plain detector in the same precision
    assert rows[("plain Faster R-CNN C4", "bfloat16")]["inference_ratio"] == pytest.approx(1.0)
    assert "| synthetic/SeqNet_R10.yaml | 96x128 | bfloat16 | 1 | forced |" in out["markdown"]


def test_dry_run_groups_plain_detectors_and_moves_overrides(run_benchmark, capsys):
    # overrides right after --configs are recognised as overrides, not configs
    out = run_benchmark(["compare", "--dry-run", "--size", "96x128", "--configs", NAE, SEQNET,
                         *TINY])  # fmt: skip
    planned = out["planned"]
    # one plain detector for both (same backbone and RPN): inference + train; 3 per config
    assert len(planned) == 2 + 2 * 3
    assert {e["plain"] for e in planned} == {"plain Faster R-CNN C4"}
    assert "[8/8]" in capsys.readouterr().out
    bottleneck = os.path.join(CONFIGS, "Base-NAE.yaml")
    out = run_benchmark(["compare", "--dry-run", "--size", "96x128", "--measure", "inference",
                         "--configs", NAE, bottleneck, *TINY, *TINY_BOTTLENECK])  # fmt: skip
    # the same overrides apply to both configs; the synthetic config adds its own anchors and
    # widths, so the two need different plain detectors
    plains = {e["plain"] for e in out["planned"]}
    assert len(plains) == 2 and all(p.startswith("plain Faster R-CNN C4 (") for p in plains)


@pytest.mark.parametrize(
    "opts, block, blocks",
    [([], BasicBlock, 1), (TINY_BOTTLENECK, BottleneckBlock, 3)],
    ids=["basic-block R10", "bottleneck R50 layout"],
)
def test_plain_res5_roi_heads_builds_res5_like_the_person_search_heads(opts, block, blocks):
    cfg = plain_detector_cfg(tiny_cfg("Base-NAE.yaml", opts))
    assert cfg.MODEL.ROI_HEADS.NAME == "PlainRes5ROIHeads"
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    heads = model.roi_heads
    assert type(heads).__name__ == "PlainRes5ROIHeads" and not hasattr(heads, "embed_boxes")
    assert [type(b) for b in heads.res5] == [block] * blocks
    reference = build_res5_stage(cfg)
    assert [p.shape for p in heads.res5.parameters()] == [p.shape for p in reference.parameters()]
    assert heads.box_predictor.cls_score.in_features == 8 * cfg.MODEL.RESNETS.RES2_OUT_CHANNELS
    # forced: BatchNorm calibrated on the image, then the full top-k comes out
    inputs = BenchmarkInputs(96, 128)
    batch = [{"image": inputs.gallery_image(), "height": 96, "width": 128}]
    stats = calibrate_batchnorm(model, [lambda: model.inference(batch)])
    assert stats["calibrated"] == len(batchnorm_layers(model)) > 0
    with torch.no_grad():
        out = model.inference(batch)
    assert len(out[0]["instances"]) == TOPK


def test_batchnorm_calibration_restores_momentum_and_eval_mode():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, momentum=0.3))
    model.eval()
    x = [torch.randn(2, 3, 8, 8) * 5 + 3 for _ in range(2)]
    stats = calibrate_batchnorm(model, [lambda t=t: model(t) for t in x])
    bn = model[1]
    assert stats == {"calibrated": 1, "frozen": 0}
    assert bn.momentum == 0.3 and not bn.training and int(bn.num_batches_tracked) == 2
    with torch.no_grad():
        y = [model[0](t) for t in x]
    mean = torch.stack([t.mean(dim=(0, 2, 3)) for t in y]).mean(0)  # cumulative average
    assert torch.allclose(bn.running_mean, mean, atol=1e-5)


def test_parse_size():
    assert parse_size("900x1500") == (900, 1500) and parse_size("384X512") == (384, 512)
    for bad in ("900", "900x", "ax12", "16x16", "900x1500x3"):
        with pytest.raises(ValueError, match="--size"):
            parse_size(bad)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--configs", "nope.yaml"], "config file not found: 'nope.yaml'"),
        (["--configs", "model.pkl"], "bad --configs value 'model.pkl'"),
        (["--configs", f"{NAE}=missing.pth"], "weights file not found: 'missing.pth'"),
        (["--configs", NAE, "--size", "900"], "bad --size value '900'"),
        (["--configs", NAE, "--size", "8x8"], "both sides must be at least 32 pixels"),
        (["--configs", NAE, "--runs", "0"], "--runs must be >= 1"),
        (["--configs", NAE, "--batch", "0"], "--batch values must be >= 1, got [0]"),
        (["--configs", NAE, "--batch", "x"], "bad --batch value 'x'"),
        (["--configs", NAE, "--interleave", "--no-subprocess"],
         "--interleave runs every model in its own process; drop --no-subprocess"),
        (["--configs", NAE, "--official-weights", "seqnet=w.pth"],
         "--official-weights seqnet=...: no --official seqnet=PATH to load them into"),
        (["--configs", NAE, "--official-weights", "oim=w.pth"],
         "bad --official-weights value 'oim=w.pth'"),
        (["--configs", NAE, "--peak-tflops", "-1"], "--peak-tflops must be > 0, got -1.0"),
        (["--configs", NAE, "--measure", "speed"], "bad --measure value 'speed'"),
        (["--configs", NAE, "MODEL.NOPE", "1"], "NAE_R10.yaml: Non-existent key: MODEL.NOPE"),
        (["--configs", NAE, "MODEL.DEVICE"], "config overrides come in KEY VALUE pairs"),
        (["--configs", NAE, "--runs", "2", "MODEL.DEVICE", "cpu", "--warmup", "0"],
         "flags must come before the KEY VALUE config overrides; got ['--warmup'] after them"),
        (["--configs", NAE, "--official", "seqnet=/no/such/SeqNet"],
         "--official seqnet: directory not found: '/no/such/SeqNet' (the root of a clone of "
         "https://github.com/serend1p1ty/SeqNet)"),
        (["--configs", NAE, "--official", f"nae={CONFIGS}"],
         "is not the root of https://github.com/DeanChan/NAE4PS: "
         "lib/model/faster_rcnn_norm_aware.py, configs/res50_faster_rcnn.py not found there"),
        (["--configs", NAE, "--official", "oim=/x"], "bad --official value 'oim=/x'"),
        (["--configs", NAE, os.path.join(CONFIGS, "Base-NAE.yaml")],
         "every config must run on the same device; got MODEL.DEVICE ['cpu', 'cuda']"),
    ],
    ids=["missing config", "not yaml", "missing weights", "size without width", "tiny size",
         "zero runs", "zero batch", "batch not a number", "interleave in-process",
         "official weights without official", "official weights of unknown code", "negative peak",
         "unknown measurement", "unknown key", "odd overrides", "late flag",
         "missing official", "not a clone", "unknown official", "two devices"],
)  # fmt: skip
def test_compare_errors_before_measuring(run_benchmark, argv, message):
    with pytest.raises(SystemExit) as info:
        run_benchmark(["compare", "--dry-run", *argv])
    assert message in str(info.value)
    assert str(info.value).startswith("benchmark compare: ")


def test_compare_on_a_cuda_config_without_cuda(run_benchmark):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    with pytest.raises(SystemExit, match="CUDA is not available; add 'MODEL.DEVICE cpu'"):
        run_benchmark(["compare", "--configs", NAE, *FAST, "--no-subprocess", "--measure",
                       "inference", *TINY, "MODEL.DEVICE", "cuda"])  # fmt: skip


def test_a_failing_measurement_is_reported_and_the_run_goes_on(
    run_benchmark, tmp_path, monkeypatch
):
    from benchmarks import measure

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setitem(measure.MEASUREMENTS, "query", broken)
    md, js = str(tmp_path / "out" / "c.md"), str(tmp_path / "out" / "c.json")
    with pytest.raises(SystemExit, match="1 of 3 measurements failed"):
        run_benchmark(["compare", "--configs", NAE, *FAST, "--no-subprocess", "--measure",
                       "inference", "query", "--md", md, "--json", js, *TINY])  # fmt: skip
    # the outputs are written, with the error in the row
    assert "**error** query: RuntimeError: out of memory (simulated)" in open(md).read()
    rows = {r["model"]: r for r in json.load(open(js))["rows"]}
    nae = rows["synthetic/NAE_R10.yaml"]
    assert nae["errors"] == {"query": "RuntimeError: out of memory (simulated)"}
    assert nae["inference"]["detections_per_image"] == TOPK


def test_trained_weights_are_loaded_and_not_recalibrated(run_benchmark, tmp_path):
    from personsearch import get_person_search_cfg

    torch.manual_seed(0)
    model = build_model(get_person_search_cfg(NAE, TINY))
    weights = str(tmp_path / "trained.pth")
    torch.save({"model": model.state_dict()}, weights)
    out = run_benchmark(["compare", "--configs", f"{NAE}={weights}", *FAST, "--no-subprocess",
                         "--measure", "inference", *TINY])  # fmt: skip
    rows = {r["model"]: r for r in out["rows"]}
    ours = rows["synthetic/NAE_R10.yaml (trained.pth)"]
    assert ours["errors"] == {} and ours["mode"] == "forced+weights"
    assert ours["bn_calibrated"] == 0  # trained statistics are kept
    assert ours["inference"]["proposals_per_image"] == TOPK
    assert rows["plain Faster R-CNN C4"]["mode"] == "forced"  # no weights exist for it
    assert "mode `forced+weights`" in out["markdown"]


def test_a_worker_that_dies_without_a_result_is_an_error_row():
    from benchmarks.jobs import Job, run_job_in_subprocess

    job = Job(kind="ours", name="x", measure="inference", inputs={"height": 96, "width": 128})
    result = run_job_in_subprocess(job, python="/bin/false")
    assert result["error"] == "worker exited with status 1 without a result"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--official", "seqnet=/no/such/SeqNet"], "--official seqnet: directory not found"),
        (["--official", "oim=/x"], "unknown implementation 'oim'"),
        (["--official", "seqnet=/x", "--size", "8x8"], "both sides must be at least 32 pixels"),
        (["--official", "seqnet=/x", "--calib-images", "0"], "--calib-images must be >= 1"),
    ],
    ids=["missing clone", "unknown code", "tiny size", "no calibration image"],
)
def test_official_weights_errors_name_the_input(run_benchmark, tmp_path, argv, message):
    with pytest.raises(SystemExit) as info:
        run_benchmark(["official-weights", *argv, "--out", str(tmp_path)])
    assert message in str(info.value)
    assert str(info.value).startswith("benchmark official-weights: ")
    assert not os.listdir(tmp_path)  # nothing written
