"""Bad inputs to the evaluator, the scoring and the results file: unknown or missing images,
wrong feature dimensions, missing/duplicate queries, NaN features, another dataset's results,
corrupt files, wrong format versions, empty galleries, test sets without queries."""

import copy
import os

import numpy as np
import pytest
import torch

from personsearch.evaluation import (
    PersonSearchEvaluator,
    SearchOptions,
    load_results,
    save_results,
    score_results,
    validate_results,
)
from personsearch.utils.serialization import UntrustedFileError
from tests.evaluation.toy import toy_model_io, toy_results, toy_split

from .helpers import assert_names, damage_file, warnings_of


@pytest.fixture
def toy(catalog):
    records, outputs = toy_split()
    catalog.register("rb_eval_toy", records, protocol="prw")
    return records, outputs


def _evaluate(records, outputs, edit_inputs=None, edit_outputs=None, process_twice=()):
    inputs, outs = toy_model_io(records, outputs)
    if edit_inputs:
        edit_inputs(inputs)
    if edit_outputs:
        edit_outputs(outs)
    evaluator = PersonSearchEvaluator("rb_eval_toy", distributed=False)
    evaluator.reset()
    evaluator.process(inputs, outs)
    for i in process_twice:
        evaluator.process(inputs[i : i + 1], outs[i : i + 1])
    return evaluator.evaluate()


# --------------------------------------------------------------------------------------------
# PersonSearchEvaluator
# --------------------------------------------------------------------------------------------
def _set_feats(i, value):
    def edit(outs):
        outs[i]["instances"].reid_feats = value

    return edit


@pytest.mark.parametrize(
    "edits, message",
    [
        ({"edit_inputs": lambda x: x[0].__setitem__("image_id", "zz.jpg")},
         r"1 gallery image id\(s\) are not in the dataset, e.g. 'zz.jpg'"),
        ({"edit_inputs": lambda x: x.pop(1), "edit_outputs": lambda o: o.pop(1)},
         r"1 image\(s\) of the dataset are missing from 'gallery', e.g. 'c1_b.jpg'"),
        ({"edit_outputs": _set_feats(1, torch.ones(1, 3) / 3**0.5)},
         r"gallery\['c1_b.jpg'\]\['feats'\] has feature dimension 3, but .* has 2"),
        ({"edit_outputs": _set_feats(2, torch.full((2, 2), float("nan")))},
         r"gallery\['c2_a.jpg'\]\['feats'\] has non-finite values"),
        ({"edit_outputs": lambda o: o[3].__setitem__("query_feats", torch.full((1, 2), np.inf))},
         "query_index 1 'feat' has non-finite values"),
        ({"edit_outputs": lambda o: o[0].__setitem__("query_feats", torch.ones(1, 5))},
         "query_index 0 'feat' has feature dimension 5"),
        ({"edit_inputs": lambda x: x[0].pop("queries"), "edit_outputs": lambda o: None},
         r"1 query index\(es\) of the dataset are missing, e.g. 0 \(on image 'c1_a.jpg'\)"),
        ({"process_twice": (3,)}, "query_index 1 appears more than once"),
        ({"edit_inputs": lambda x: x[3]["queries"][0].__setitem__("query_index", 7)},
         "query_index 7 is not a query of the dataset"),
    ],
)  # fmt: skip
def test_evaluator_rejects_results_that_do_not_fit_the_dataset(toy, edits, message):
    records, outputs = toy
    with pytest.raises(ValueError, match=message):
        _evaluate(records, outputs, **edits)


def test_evaluator_checks_model_outputs_per_image(toy):
    records, outputs = toy
    inputs, outs = toy_model_io(records, outputs)
    evaluator = PersonSearchEvaluator("rb_eval_toy", distributed=False)
    outs[0]["query_feats"] = torch.zeros(0, 2)
    with pytest.raises(ValueError, match="image 'c1_a.jpg' has 1 queries but the model returned 0"):
        evaluator.process(inputs, outs)
    outs[0]["query_feats"] = torch.zeros(1, 2)
    outs[2]["instances"].reid_feats = torch.zeros(2)
    with pytest.raises(ValueError, match=r"image 'c2_a.jpg' has 2 boxes but reid_feats of shape"):
        evaluator.process(inputs, outs)
    outs[2]["instances"].remove("reid_feats")
    with pytest.raises(KeyError, match="image 'c2_a.jpg' have no 'reid_feats'"):
        evaluator.process(inputs, outs)


def test_evaluator_without_predictions_warns(toy, caplog):
    evaluator = PersonSearchEvaluator("rb_eval_toy", distributed=False)
    evaluator.reset()
    assert evaluator.evaluate() == {}
    assert "no predictions were collected" in warnings_of(caplog)


def test_test_set_without_queries(catalog):
    records, outputs = toy_split()
    for r in records:
        r.pop("queries", None)
    catalog.register("rb_eval_toy", records, protocol="prw")
    with pytest.raises(ValueError, match=r"Dataset 'rb_eval_toy' has no queries .*training split"):
        _evaluate(records, outputs)


@pytest.mark.parametrize("empty", ["no_detections", "low_scores"])
def test_empty_galleries_score_zero_with_a_warning(toy, caplog, empty):
    records, outputs = toy
    results = toy_results(records, outputs)
    for det in results["gallery"].values():
        if empty == "no_detections":
            det.update(boxes=torch.zeros(0, 4), scores=torch.zeros(0), feats=torch.zeros(0, 2))
        else:
            det["scores"] = torch.full_like(det["scores"], 0.1)
    res = score_results(results, records, {"protocol": "prw"})
    assert res["search"] == {"mAP": 0.0, "top1": 0.0, "top5": 0.0, "top10": 0.0}
    assert "None of the 4 gallery images has a detection with score >= 0.5" in warnings_of(caplog)


def test_queries_without_a_gallery_match_are_counted(toy, caplog):
    records, outputs = toy
    res = score_results(
        toy_results(records, outputs),
        records,
        {"protocol": "prw"},
        SearchOptions(cross_camera=True),
    )
    assert res["info"]["num_queries_without_match"] == 1
    assert "1 of 2 queries have no gallery entry showing the query person" in warnings_of(caplog)


# --------------------------------------------------------------------------------------------
# score_results: protocol and options
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "metadata, options, error, message",
    [
        ({"protocol": "prw"}, {"subset": "resolution"}, ValueError,
         "Subset 'resolution' exists only for CUHK-SYSU"),
        ({"protocol": "coco"}, {}, ValueError, "Unknown person-search protocol 'coco'"),
        ({}, {}, ValueError, "Unknown person-search protocol None"),
        ({"protocol": "cuhk_sysu"}, {}, ValueError, "metadata has no 'root'"),
        ({"protocol": "cuhk_sysu", "root": "/nonexistent/cuhk"}, {}, FileNotFoundError,
         "/nonexistent/cuhk"),
        ({"protocol": "prw"}, {"subset": "lowres", "lowres_fraction": 0.0}, ValueError,
         r"lowres fraction must be in \(0, 1\], got 0.0"),
        ({"protocol": "prw"}, {"cbgm": True, "cbgm_k1": 0}, ValueError, "k1=0"),
    ],
)  # fmt: skip
def test_bad_protocol_or_options(toy, metadata, options, error, message):
    records, outputs = toy
    with pytest.raises(error, match=message):
        score_results(toy_results(records, outputs), records, metadata, SearchOptions(**options))


def test_cross_camera_without_camera_ids_names_an_image(toy):
    records, outputs = toy
    records = copy.deepcopy(records)
    del records[2]["camera_id"]
    with pytest.raises(ValueError, match=r"'camera_id'.*1 of 4 images have none, e.g. 'c2_a.jpg'"):
        score_results(
            toy_results(records, outputs),
            records,
            {"protocol": "prw"},
            SearchOptions(cross_camera=True),
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"subset": "bogus"}, "Unknown search subset 'bogus'"),
        ({"det_thresh": float("nan")}, "det_thresh must be a number, got NaN"),
        ({"detection_thresh": float("nan")}, "detection_thresh must be a number"),
    ],
)
def test_bad_search_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchOptions(**kwargs)


def test_results_of_another_dataset(toy):
    records, outputs = toy
    other = [dict(r, image_id="x_" + r["image_id"]) for r in records]
    with pytest.raises(ValueError, match="was the file produced on another dataset"):
        score_results(toy_results(records, outputs), other, {"protocol": "prw"})


# --------------------------------------------------------------------------------------------
# The results file
# --------------------------------------------------------------------------------------------
@pytest.fixture
def results_file(toy, tmp_path):
    records, outputs = toy
    path = str(tmp_path / "search_results.pth")
    save_results(path, toy_results(records, outputs))
    return path


def test_results_file_missing(tmp_path):
    path = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="Results file not found") as e:
        load_results(path)
    assert_names(str(e.value), [path])


@pytest.mark.parametrize(
    "damage, detail",
    [
        ({"keep_fraction": 0.5}, "RuntimeError"),
        ({"keep_fraction": 0.0}, "EOFError"),
        ({"replace_with": b"\x80\x02}q\x00(X\x03\x00"}, ""),
        ({"replace_with": os.urandom(64)}, ""),
    ],
)
def test_results_file_truncated_or_corrupt(results_file, damage, detail):
    damage_file(results_file, **damage)
    with pytest.raises(ValueError, match="is not a readable person-search results file") as e:
        load_results(results_file)
    assert_names(str(e.value), [results_file, "truncated, corrupt", detail])


@pytest.mark.parametrize(
    "content, message",
    [
        ([1, 2, 3], "it holds a list"),
        ({"model": {}, "iteration": 5}, r"it holds a dict with keys \['iteration', 'model'\]"),
        ({"format_version": 99}, "has format_version 99; this code reads version 1"),
        ({"format_version": "1"}, "has format_version '1'"),
        ({"format_version": True}, "has format_version True"),
        ({"format_version": torch.tensor([1, 1])}, r"format_version tensor\(\[1, 1\]\)"),
    ],
)
def test_results_file_of_the_wrong_kind(tmp_path, content, message):
    path = str(tmp_path / "r.pth")
    torch.save(content, path)
    with pytest.raises(ValueError, match=message) as e:
        load_results(path)
    assert_names(str(e.value), [path])


class _NotAllowed:
    pass


def test_results_file_with_arbitrary_objects_is_not_unpickled(tmp_path):
    path = str(tmp_path / "r.pth")
    torch.save({"format_version": 1, "gallery": _NotAllowed()}, path)
    with pytest.raises(UntrustedFileError, match="Refusing to load results file") as e:
        load_results(path)
    assert_names(str(e.value), [path, f"{__name__}._NotAllowed", "PERSONSEARCH_TRUSTED_FILES"])


def _edited(results, edit):
    r = copy.deepcopy(results)
    edit(r)
    return r


def _gallery(image_id, key, value):
    return lambda r: r["gallery"][image_id].__setitem__(key, value)


def _query(pos, key, value):
    return lambda r: r["queries"][pos].__setitem__(key, value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.__setitem__("gallery", [1]), "'gallery' must be a dict"),
        (lambda r: r.__setitem__("queries", {}), "'queries' must be a list"),
        (lambda r: r["queries"].__setitem__(0, 5), r"queries\[0\] must be a dict"),
        (_query(0, "query_index", None), r"queries\[0\]\['query_index'\] must be an integer"),
        (_query(0, "query_index", 0.5), r"\['query_index'\] must be an integer, got float 0.5"),
        (_query(1, "person_id", [5]), "query_index 1 'person_id' must be an integer"),
        (_query(0, "feat", torch.ones(2, dtype=torch.bfloat16)),
         "query_index 0 'feat' must be a dense real-valued tensor .*bfloat16"),
        (_query(0, "feat", torch.ones(2).to_sparse()), "layout torch.sparse_coo"),
        (_query(0, "feat", torch.zeros(0)), "query_index 0 'feat' has feature dimension 0"),
        (_query(0, "feat", "abc"), "query_index 0 'feat' is not numeric"),
        (_gallery("c1_b.jpg", "feats", torch.zeros(1, 0)), "feature dimension 0"),
        (_gallery("c1_b.jpg", "boxes", [[0, 0, "x", 1]]),
         r"gallery\['c1_b.jpg'\]\['boxes'\] is not numeric"),
        (_gallery("c1_b.jpg", "scores", torch.ones(1, dtype=torch.complex64)), "real-valued"),
    ],
)  # fmt: skip
def test_results_dict_errors_name_the_entry(toy, edit, message):
    records, outputs = toy
    with pytest.raises(ValueError, match=message):
        validate_results(_edited(toy_results(records, outputs), edit), records)


@pytest.mark.parametrize("results", [None, 5, "search_results.pth", [1, 2]])
def test_results_that_are_not_a_dict(toy, results):
    with pytest.raises(ValueError, match="results: expected a dict"):
        validate_results(results, toy[0])
