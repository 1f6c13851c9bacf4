import json
import os

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg

from personsearch.config import add_personsearch_config
from personsearch.evaluation import (
    RESULTS_FILENAME,
    PersonSearchEvaluator,
    SearchOptions,
    load_results,
    score_results,
)
from tests.common import run_distributed

from .test_scoring import DET_AP
from .toy import register, toy_model_io, toy_split

PRW_EXPECTED = {"mAP": 37.5, "top1": 0.0, "top5": 100.0, "top10": 100.0}


def _run(name, records, outputs, batches=2, **kw):
    ev = PersonSearchEvaluator(name, **kw)
    ev.reset()
    inputs, outs = toy_model_io(records, outputs)
    step = max(1, len(inputs) // batches)
    for i in range(0, len(inputs), step):
        ev.process(inputs[i : i + step], outs[i : i + step])
    return ev.evaluate()


def test_prw_style_end_to_end(tmp_path):
    records, outputs = toy_split()
    register("ps_eval_toy_prw", records, protocol="prw")
    res = _run("ps_eval_toy_prw", records, outputs, distributed=False, output_dir=str(tmp_path))
    assert list(res) == ["search", "detection"]
    assert res["search"] == pytest.approx(PRW_EXPECTED)
    assert res["detection"] == pytest.approx({"AP": DET_AP, "recall": 100.0})
    assert all(type(v) is float for d in res.values() for v in d.values())
    # the saved file re-scores to the same numbers through the offline code path
    saved = load_results(str(tmp_path / RESULTS_FILENAME))
    assert saved["dataset"] == "ps_eval_toy_prw"
    again = score_results(saved, records, {"protocol": "prw"})
    assert again["search"] == pytest.approx(res["search"])


def test_json_style_end_to_end_with_cfg(tmp_path):
    records, outputs = toy_split(gallery_lists=True)
    register("ps_eval_toy_json", records, protocol="json")
    cfg = add_personsearch_config(get_cfg())
    cfg.TEST.SEARCH.SAVE_RESULTS = False
    res = _run(
        "ps_eval_toy_json", records, outputs, cfg=cfg, distributed=False, output_dir=str(tmp_path)
    )
    q0 = 2 / 3 * 2 / 3 + 1 / 3 * 3 / 4  # see test_scoring.test_json_protocol_with_gallery_lists
    assert res["search"]["mAP"] == pytest.approx(100 * (q0 + 0.25) / 2)
    assert not os.path.exists(tmp_path / RESULTS_FILENAME)
    assert "SAVE_RESULTS: false" in PersonSearchEvaluator("ps_eval_toy_json", cfg=cfg)._config_str


def test_cross_camera_from_cfg():
    records, outputs = toy_split()
    register("ps_eval_toy_prw", records, protocol="prw")
    cfg = add_personsearch_config(get_cfg())
    cfg.TEST.SEARCH.CROSS_CAMERA = True
    res = _run("ps_eval_toy_prw", records, outputs, cfg=cfg, distributed=False)
    assert res["search"]["mAP"] == pytest.approx(100 / 3)


def test_process_checks_model_outputs():
    records, outputs = toy_split()
    register("ps_eval_toy_prw", records, protocol="prw")
    ev = PersonSearchEvaluator("ps_eval_toy_prw", distributed=False)
    inputs, outs = toy_model_io(records, outputs)
    bad = dict(outs[0], query_feats=torch.zeros(0, 2))
    with pytest.raises(ValueError, match="1 queries but the model returned 0"):
        ev.process(inputs[:1], [bad])
    inst = outs[0]["instances"]
    inst.remove("reid_feats")
    with pytest.raises(KeyError, match="reid_feats"):
        ev.process(inputs[:1], outs[:1])
    assert PersonSearchEvaluator("ps_eval_toy_prw", distributed=False).evaluate() == {}


def test_missing_image_is_reported():
    records, outputs = toy_split()
    register("ps_eval_toy_prw", records, protocol="prw")
    ev = PersonSearchEvaluator("ps_eval_toy_prw", distributed=False)
    inputs, outs = toy_model_io(records, outputs)
    ev.process(inputs[:3], outs[:3])
    with pytest.raises(ValueError, match="missing from 'gallery', e.g. 'c2_b.jpg'"):
        ev.evaluate()


def _distributed_worker(out_dir):
    from detectron2.utils import comm

    records, outputs = toy_split()
    register("ps_eval_toy_dist", records, protocol="prw")
    ev = PersonSearchEvaluator("ps_eval_toy_dist", output_dir=out_dir)
    ev.reset()
    rank = comm.get_rank()
    ids = [r["image_id"] for r in records][rank::2]  # rank 0: c1_a, c2_a; rank 1: c1_b, c2_b
    inputs, outs = toy_model_io(records, outputs, ids)
    for inp, out in zip(inputs, outs):
        ev.process([inp], [out])
    res = ev.evaluate()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)


@pytest.mark.skipif(
    torch.cuda.is_available() and torch.cuda.device_count() < 2,
    reason="detectron2.launch with 2 processes needs 2 GPUs when CUDA is available",
)
def test_distributed_gather_equals_single_process(tmp_path):
    run_distributed(_distributed_worker, 2, str(tmp_path))
    with open(tmp_path / "rank0.json") as f:
        rank0 = json.load(f)
    with open(tmp_path / "rank1.json") as f:
        assert json.load(f) == {}
    records, outputs = toy_split()
    register("ps_eval_toy_prw", records, protocol="prw")
    single = _run("ps_eval_toy_prw", records, outputs, distributed=False)
    assert rank0["search"] == pytest.approx(single["search"])
    assert rank0["detection"] == pytest.approx(single["detection"])
    assert rank0["search"] == pytest.approx(PRW_EXPECTED)
    saved = load_results(str(tmp_path / RESULTS_FILENAME))
    assert sorted(saved["gallery"]) == sorted(r["image_id"] for r in records)
    assert [q["query_index"] for q in saved["queries"]] == [0, 1]


def _cuhk_loader_available():
    try:
        from personsearch.data.datasets.cuhk_sysu import load_cuhk_sysu_protocol  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    not _cuhk_loader_available(),
    reason="personsearch.data.datasets.cuhk_sysu.load_cuhk_sysu_protocol is not written yet",
)
def test_cuhk_style_end_to_end_with_protocol_files(tmp_path):
    from personsearch.data.datasets.cuhk_sysu_writer import (
        write_subset_mat,
        write_test_protocol_mat,
    )

    records, outputs = toy_split()
    for r in records:
        r.pop("camera_id")
    # protocol boxes are x y w h; A = [0, 0, 20, 60] -> (0, 0, 20, 60)
    query = ("c1_a.jpg", (0, 0, 20, 60))
    gallery = [("c1_b.jpg", (0, 0, 20, 60)), ("c2_a.jpg", (100, 0, 30, 90))]
    protocol = [{"query": query, "idname": "p7", "gallery": gallery + [("c2_b.jpg", None)]}]
    for size in (50, 100):
        write_test_protocol_mat(str(tmp_path), size, protocol)
    write_subset_mat(str(tmp_path), "Resolution", protocol)
    register("ps_eval_toy_cuhk", records, protocol="cuhk_sysu", root=str(tmp_path))
    res = _run("ps_eval_toy_cuhk", records, outputs, distributed=False)
    # query 0 only; entries c1_b (T 0.9), c2_a (B T 0.6, A F 0.95), c2_b (C F 0.67, A F 0)
    # -> 0.95 F, 0.9 T, 0.67 F, 0.6 T, 0 F: AP (1/2 + 2/4) / 2
    assert res["search"]["mAP"] == pytest.approx(50.0)
    opts = SearchOptions(subset="resolution")
    saved_like = score_results(
        _results_from(records, outputs),
        records,
        {"protocol": "cuhk_sysu", "root": str(tmp_path)},
        opts,
    )
    assert saved_like["search"]["mAP"] == pytest.approx(50.0)
    assert np.isfinite(res["detection"]["AP"])


def _results_from(records, outputs):
    from .toy import toy_results

    return toy_results(records, outputs)


def test_image_without_detections_is_valid_and_wrong_feature_shape_is_named():
    from detectron2.structures import Boxes, Instances

    records, outputs = toy_split()
    register("ps_eval_toy_prw", records, protocol="prw")
    ev = PersonSearchEvaluator("ps_eval_toy_prw", distributed=False)
    r = next(r for r in records if not r.get("queries"))
    empty = Instances((r["height"], r["width"]))
    empty.pred_boxes = Boxes(torch.zeros(0, 4))
    empty.scores = torch.zeros(0)
    empty.pred_classes = torch.zeros(0, dtype=torch.int64)
    empty.reid_feats = torch.zeros(0, 2)  # what the model returns when nothing is detected
    inp = {k: r[k] for k in ("file_name", "image_id", "height", "width")}
    ev.process([inp], [{"instances": empty, "query_feats": torch.zeros(0, 2)}])
    assert ev._gallery[r["image_id"]]["feats"].shape == (0, 2)
    bad = Instances((r["height"], r["width"]))
    bad.pred_boxes = Boxes(torch.zeros(2, 4))
    bad.scores = torch.zeros(2)
    bad.reid_feats = torch.zeros(2)  # one number per box instead of a (2, D) matrix
    with pytest.raises(ValueError, match=r"2 boxes but reid_feats of shape \(2,\)"):
        ev.process([inp], [{"instances": bad, "query_feats": torch.zeros(0, 2)}])
