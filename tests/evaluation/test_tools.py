"""tools/evaluate_search.py and tools/benchmark.py search-eval, run in-process."""

import json
import os

import pytest

from personsearch.evaluation import save_results
from tests.common import load_tool

from .toy import register, toy_results, toy_split


@pytest.fixture(scope="module")
def evaluate_search():
    return load_tool("evaluate_search")


@pytest.fixture
def toy_file(tmp_path):
    records, outputs = toy_split()
    register("ps_cli_toy_prw", records, protocol="prw")
    path = str(tmp_path / "search_results.pth")
    save_results(path, toy_results(records, outputs))
    return path, records


def _metrics(path):
    with open(os.path.join(path, "metrics.json")) as f:
        return json.load(f)


def test_cli_rescoring(evaluate_search, toy_file, tmp_path):
    path, _ = toy_file
    out = str(tmp_path / "m")
    args = ["--results", path, "--dataset", "ps_cli_toy_prw", "--output", out]
    assert evaluate_search.main(args) == 0
    m = _metrics(out)
    assert m["search"] == pytest.approx({"mAP": 37.5, "top1": 0.0, "top5": 100.0, "top10": 100.0})
    assert m["info"]["num_queries"] == 2
    assert evaluate_search.main(args + ["--cross-camera"]) == 0
    m = _metrics(out)
    assert m["search"]["mAP"] == pytest.approx(100 / 3)
    assert m["info"]["num_queries_without_match"] == 1
    assert evaluate_search.main(args + ["--no-cws", "--cbgm"]) == 0
    assert _metrics(out)["info"]["cbgm"] is True


def test_cli_errors(evaluate_search, toy_file, capsys):
    path, records = toy_file
    other = [dict(r, image_id="other_" + r["image_id"]) for r in records]
    register("ps_cli_other", other, protocol="prw")
    assert evaluate_search.main(["--results", path, "--dataset", "ps_cli_other"]) == 2
    assert "not in the dataset" in capsys.readouterr().err
    assert evaluate_search.main(["--results", path, "--dataset", "ps_cli_nope"]) == 2
    assert "'ps_cli_nope' is not registered" in capsys.readouterr().err
    assert evaluate_search.main(["--results", path + ".x", "--dataset", "ps_cli_toy_prw"]) == 2
    assert "not found" in capsys.readouterr().err
    assert evaluate_search.main(["--results", path, "--dataset", "ps_cli_toy_prw", "--all"]) == 2
    assert "--all needs a CUHK-SYSU" in capsys.readouterr().err


def test_cli_all_gallery_sizes(evaluate_search, tmp_path, capsys):
    pytest.importorskip(
        "personsearch.data.datasets.cuhk_sysu", reason="the CUHK-SYSU loader is not written yet"
    )
    from personsearch.data.datasets.cuhk_sysu_writer import write_test_protocol_mat

    records, outputs = toy_split()
    root = str(tmp_path / "cuhk")
    query = ("c1_a.jpg", (0, 0, 20, 60))
    small = [("c1_b.jpg", (0, 0, 20, 60)), ("c2_a.jpg", None)]  # 0.9 T, 0.95 F, 0.6 F -> 1/2
    large = small + [("c2_b.jpg", None)]  # adds C 0.67 F, A 0 F -> still 1/2
    write_test_protocol_mat(root, 1, [{"query": query, "gallery": small[:1]}])  # -> 1
    write_test_protocol_mat(root, 2, [{"query": query, "gallery": small}])
    write_test_protocol_mat(root, 3, [{"query": query, "gallery": large}])
    register("ps_cli_toy_cuhk", records, protocol="cuhk_sysu", root=root)
    path = str(tmp_path / "r.pth")
    save_results(path, toy_results(records, outputs))
    out = str(tmp_path / "all")
    assert (
        evaluate_search.main(
            ["--results", path, "--dataset", "ps_cli_toy_cuhk", "--all", "--output", out]
        )
        == 0
    )
    rows = _metrics(out)["gallery_sizes"]
    assert [r["gallery_size"] for r in rows] == [1, 2, 3]
    assert [r["mAP"] for r in rows] == pytest.approx([100.0, 50.0, 50.0])
    assert os.path.getsize(os.path.join(out, "gallery_size.png")) > 1000
    assert "gallery" in capsys.readouterr().out


def test_benchmark_search_eval_small(capsys, tmp_path):
    bench = load_tool("benchmark")
    out = str(tmp_path / "timings.json")
    args = bench.build_parser().parse_args(
        ["search-eval", "--num-images", "40", "--num-queries", "10", "--gallery-size", "8",
         "--json", out]
    )  # fmt: skip
    timings = args.func(args)
    assert set(timings) >= {"search (all steps)", "search+cbgm (all steps)", "detection"}
    assert "metrics with CBGM" in capsys.readouterr().out
    with open(out) as f:
        saved = json.load(f)
    assert saved["timings_s"] == pytest.approx(timings) and saved["args"]["num_queries"] == 10


def test_cli_rescoring_on_a_json_dataset_registered_from_the_command_line(
    evaluate_search, tmp_path
):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from personsearch.data.datasets.json_format import load_person_search_json
    from personsearch.data.datasets.json_writer import save_person_search_json

    records, outputs = toy_split()
    json_file = str(tmp_path / "mine.json")
    save_person_search_json(records, json_file, image_root="/nonexistent")
    # the results refer to the JSON split's own person ids (remapped to 0..K-1 on loading)
    mine = load_person_search_json(json_file, "/nonexistent")
    path = str(tmp_path / "search_results.pth")
    save_results(path, toy_results(mine, outputs))
    out = str(tmp_path / "m")
    name = "ps_cli_json_mine"
    try:
        args = ["--results", path, "--dataset", name, "--output", out]
        assert (
            evaluate_search.main(args + ["--register-json", name, json_file, "/nonexistent"]) == 0
        )
    finally:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    # the same numbers as the hand-registered toy split under the every-other-image protocol
    assert _metrics(out)["search"] == pytest.approx(
        {"mAP": 37.5, "top1": 0.0, "top5": 100.0, "top10": 100.0}
    )
