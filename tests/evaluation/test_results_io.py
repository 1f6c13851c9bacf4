import copy
import os

import numpy as np
import pytest
import torch

from personsearch.evaluation import (
    FORMAT_VERSION,
    build_results,
    load_results,
    save_results,
    validate_results,
)

from .toy import toy_results, toy_split


@pytest.fixture
def toy():
    records, outputs = toy_split()
    return records, toy_results(records, outputs)


def test_round_trip_with_weights_only(tmp_path, toy):
    records, results = toy
    results["config"] = "TEST:\n  SEARCH:\n    CWS: true\n"
    path = str(tmp_path / "out" / "search_results.pth")
    save_results(path, results)
    assert os.listdir(tmp_path / "out") == ["search_results.pth"]  # no temporary file left
    raw = torch.load(path, weights_only=True)  # plain types only
    assert raw["format_version"] == FORMAT_VERSION == 1
    loaded = load_results(path)
    assert loaded["dataset"] == "toy" and loaded["config"] == results["config"]
    assert set(loaded["gallery"]) == {r["image_id"] for r in records}
    det = loaded["gallery"]["c2_b.jpg"]
    assert det["boxes"].shape == (2, 4) and det["feats"].dtype == torch.float32
    torch.testing.assert_close(det["feats"], results["gallery"]["c2_b.jpg"]["feats"])
    assert [q["query_index"] for q in loaded["queries"]] == [0, 1]
    assert loaded["queries"][1]["bbox"] == [0.0, 0.0, 20.0, 60.0]
    assert validate_results(loaded, records) == 2


def test_build_results_accepts_empty_detections(toy):
    records, results = toy
    gallery = dict(results["gallery"])
    gallery["c1_b.jpg"] = {
        "boxes": np.zeros((0, 4)),
        "scores": np.zeros(0),
        "feats": np.zeros((0, 2)),
    }
    res = build_results("toy", gallery, results["queries"])
    assert res["gallery"]["c1_b.jpg"]["feats"].shape == (0, 2)
    assert validate_results(res, records) == 2
    gallery["c1_b.jpg"]["feats"] = np.zeros((0, 0))
    assert validate_results(build_results("toy", gallery, results["queries"]), records) == 2


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_results(str(tmp_path / "missing.pth"))
    torch.save({"format_version": 99}, tmp_path / "v99.pth")
    with pytest.raises(ValueError, match="format_version 99"):
        load_results(str(tmp_path / "v99.pth"))
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a person-search results file"):
        load_results(str(tmp_path / "list.pth"))


def _broken(results, edit):
    r = copy.deepcopy(results)
    edit(r)
    return r


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r["gallery"].pop("c1_b.jpg"), "missing from 'gallery', e.g. 'c1_b.jpg'"),
        (lambda r: r["gallery"].__setitem__("zz.jpg", r["gallery"]["c1_b.jpg"]), "'zz.jpg'"),
        (
            lambda r: r["gallery"]["c2_a.jpg"].__setitem__("feats", torch.zeros(2, 3)),
            r"gallery\['c2_a.jpg'\]\['feats'\] has feature dimension 3",
        ),
        (
            lambda r: r["gallery"]["c2_a.jpg"].__setitem__("boxes", torch.zeros(2, 5)),
            r"gallery\['c2_a.jpg'\]\['boxes'\] has shape",
        ),
        (
            lambda r: r["gallery"]["c2_a.jpg"].__setitem__("scores", torch.zeros(3)),
            r"gallery\['c2_a.jpg'\]\['scores'\] has shape",
        ),
        (
            lambda r: r["gallery"]["c2_a.jpg"]["scores"].__setitem__(0, float("nan")),
            r"gallery\['c2_a.jpg'\]\['scores'\] has non-finite",
        ),
        (lambda r: r["gallery"]["c2_a.jpg"].pop("feats"), r"gallery\['c2_a.jpg'\] has no 'feats'"),
        (lambda r: r["queries"].pop(1), r"missing, e.g. 1 \(on image 'c2_b.jpg'\)"),
        (lambda r: r["queries"].append(r["queries"][0]), "query_index 0 appears more than once"),
        (lambda r: r["queries"][0].__setitem__("query_index", 5), "query_index 5 is not a query"),
        (
            lambda r: r["queries"][0].__setitem__("image_id", "c2_b.jpg"),
            "query_index 0 is on image",
        ),
        (
            lambda r: r["queries"][1].__setitem__("feat", torch.ones(3)),
            "query_index 1 'feat' has feature dimension 3",
        ),
        (
            lambda r: r["queries"][1]["feat"].__setitem__(0, float("inf")),
            "query_index 1 'feat' has non-finite",
        ),
        (lambda r: r["queries"][1].__setitem__("bbox", [1, 2]), "query_index 1 'bbox'"),
        (
            lambda r: r["queries"][1].__setitem__("bbox", [0, 0, 40, 120]),
            r"query_index 1 'bbox' \[0.0, 0.0, 40.0, 120.0\] differs",
        ),
        (lambda r: r["queries"][1].__setitem__("person_id", 9), "query_index 1 has person_id 9"),
        (lambda r: r.pop("queries"), "missing top-level key 'queries'"),
    ],
)
def test_validation_errors_name_the_culprit(toy, edit, message):
    records, results = toy
    with pytest.raises(ValueError, match=message):
        validate_results(_broken(results, edit), records)


def test_optional_query_contexts_round_trip_and_validation(tmp_path, toy):
    records, results = toy
    queries = copy.deepcopy(results["queries"])
    queries[0]["context_feats"] = torch.stack([queries[0]["feat"], torch.tensor([0.0, 1.0])])
    res = build_results("toy", results["gallery"], queries)
    path = str(tmp_path / "r.pth")
    save_results(path, res)
    loaded = load_results(path)
    assert loaded["queries"][0]["context_feats"].shape == (2, 2)
    assert "context_feats" not in loaded["queries"][1]  # optional per query
    assert validate_results(loaded, records) == 2
    bad = copy.deepcopy(loaded)
    bad["queries"][0]["context_feats"] = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"query_index 0 'context_feats' has shape .*\(K, 2\)"):
        validate_results(bad, records)
    bad["queries"][0]["context_feats"] = torch.full((1, 2), float("nan"))
    with pytest.raises(ValueError, match="context_feats' has non-finite"):
        validate_results(bad, records)
