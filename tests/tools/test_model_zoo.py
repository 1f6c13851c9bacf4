"""tools/model_zoo.py end to end on a tiny dataset (runs, skipping finished ones, tables, plot), and
the run-level functions of its library, benchmarks.zoo.runs (training minutes, plan files, a plan
run in parallel within a deadline)."""

import json
import os
import threading
import time
import types

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from benchmarks.zoo import runs as zoo_runs
from tests.common import TINY_MODEL_OPTS, load_tool


def test_runs_seeds_scores_every_protocol_and_resumes(tiny_synthetic, tmp_path):
    from personsearch.data.datasets.json_writer import save_person_search_json

    flags, names = [], {}
    for split in ("train", "test"):
        records = DatasetCatalog.get(tiny_synthetic[split])
        root = os.path.dirname(records[0]["file_name"])
        path = str(tmp_path / f"{split}.json")
        save_person_search_json(records, path, image_root=root)
        names[split] = f"tiny_json_zoo_{split}"
        flags += ["--register-json", names[split], path, root]
    opts = [str(v) for v in TINY_MODEL_OPTS] + [
        "MODEL.OIM.NUM_PIDS", "4",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
        "DATASETS.TRAIN", f"('{names['train']}',)",
        "DATASETS.TEST", f"('{names['test']}',)",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()",
        "SOLVER.WARMUP_ITERS", "1", "SOLVER.CHECKPOINT_PERIOD", "100",
    ]  # fmt: skip
    out = tmp_path / "zoo"
    doc = tmp_path / "ZOO.md"
    doc.write_text(
        "intro\n<!-- model-zoo:synthetic:begin -->\nold\n<!-- model-zoo:synthetic:end -->\nend\n"
    )
    argv = ["--configs", "synthetic/NAE_R10.yaml", "--seeds", "0", "1", "--output", str(out),
            "--dataset", names["test"], "--lowres-fraction", "0.5", "--update", str(doc),
            *flags, *opts]  # fmt: skip
    tool = load_tool("model_zoo")
    try:
        assert tool.main(argv) == 0
        runs = [out / "synthetic" / "NAE_R10" / f"seed{s}" for s in (0, 1)]
        results = [json.load(open(r / "result.json")) for r in runs]
        for r, seed in zip(results, (0, 1)):
            assert r["seed"] == seed and r["config"] == "synthetic/NAE_R10.yaml"
            for key in ("mAP", "top1", "det_AP", "lowres_mAP", "nocws_mAP", "cbgm_mAP", "gt_mAP"):
                assert 0.0 <= r[key] <= 100.0, key
        md = (out / "model_zoo.md").read_text()
        assert "| NAE_R10 | `synthetic/NAE_R10.yaml` | 2/2 |" in md and " ± " in md
        assert md.splitlines()[-1].endswith("| cpu |")  # the device column
        assert (out / "ablation.png").stat().st_size > 0
        text = doc.read_text()
        assert text.startswith("intro\n") and text.endswith("end\n") and "old" not in text
        assert "NAE_R10" in text
        # a second call trains nothing: finished runs are skipped
        stamps = [os.path.getmtime(r / "model_final.pth") for r in runs]
        _unregister(names)  # the tool registers them again
        assert tool.main(argv) == 0
        assert stamps == [os.path.getmtime(r / "model_final.pth") for r in runs]
    finally:
        _unregister(names)


def _unregister(names):
    for name in names.values():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def test_training_minutes_of_a_resumed_run_count_every_iteration(tmp_path):
    total = "[t] Total training time: {} (0:00:01 on hooks)\n"
    log = "[t] Starting training from iteration 0\n" + total.format("0:02:30")
    (tmp_path / "log.txt").write_text(log)
    assert abs(zoo_runs.training_minutes(str(tmp_path)) - 2.5) < 1e-9
    # interrupted after iteration 59 (no total logged), resumed from the checkpoint at 40: the last
    # part's total covers 60 of 100 iterations, so the time is estimated from metrics.json
    log += "[t] Starting training from iteration 40\n" + total.format("0:01:00")
    (tmp_path / "log.txt").write_text(log)
    rows = [{"iteration": i, "time": 3.0} for i in range(19, 100, 20)]
    (tmp_path / "metrics.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert abs(zoo_runs.training_minutes(str(tmp_path)) - 100 * 3.0 / 60) < 1e-9


def test_plan_file_order_comments_and_errors(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text("# priority order\nb.yaml 3\n\na.yaml 0  # first seed\n")
    assert zoo_runs.read_plan(str(plan)) == [("b.yaml", 3), ("a.yaml", 0)]
    plan.write_text("a.yaml zero\n")
    with pytest.raises(ValueError, match="plan.txt:1: expected 'CONFIG SEED'"):
        zoo_runs.read_plan(str(plan))
    plan.write_text("# nothing\n")
    with pytest.raises(ValueError, match="lists no runs"):
        zoo_runs.read_plan(str(plan))


def test_parallel_runs_deadline_and_failures(tmp_path, monkeypatch):
    """--jobs runs in parallel; --deadline starts no run expected to end late (median duration
    of the finished ones); a failed run is reported without stopping the others."""
    running, peak, lock = [0], [0], threading.Lock()

    def fake_run(args, config, seed):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        if config == "bad.yaml":
            raise RuntimeError("boom")
        return {"mAP": float(seed), "device": "cpu"}

    monkeypatch.setattr(zoo_runs, "run_one", fake_run)
    args = types.SimpleNamespace(jobs=2, deadline=0.0, output=str(tmp_path))
    plan = [("a.yaml", 0), ("bad.yaml", 0), ("a.yaml", 1), ("a.yaml", 2)]
    out = zoo_runs.run_plan(args, plan)
    assert peak[0] == 2
    assert out == [{"mAP": 0.0, "device": "cpu"}, {}, {"mAP": 1.0, "device": "cpu"},
                   {"mAP": 2.0, "device": "cpu"}]  # fmt: skip
    assert args.failures == ["bad.yaml seed 0"]
    # 0.5 s budget, runs of 0.3 s: the first two start, the next would end at ~0.6 s
    args = types.SimpleNamespace(jobs=2, deadline=0.5 / 60, output=str(tmp_path))
    out = zoo_runs.run_plan(args, [("a.yaml", s) for s in range(4)])
    assert [bool(r) for r in out] == [True, True, False, False]
