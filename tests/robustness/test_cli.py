"""Bad command-line input to the tools: evaluate_search, convert_to_json, visualize_data,
analyze_dataset (run in-process through their ``main``)."""

import json
import os

import pytest
import torch

from personsearch.data.datasets.cuhk_sysu_writer import write_test_protocol_mat
from personsearch.evaluation import save_results
from tests.common import load_tool
from tests.data.fixtures import write_jpeg, write_tiny_cuhk_sysu
from tests.evaluation.toy import toy_results, toy_split

from .helpers import assert_names, damage_file, error_line, warnings_of


# --------------------------------------------------------------------------------------------
# tools/evaluate_search.py: errors print "error: ..." and exit with status 2
# --------------------------------------------------------------------------------------------
@pytest.fixture
def toy_files(tmp_path, catalog):
    """A PRW-style and a CUHK-SYSU-style (TestG2.mat only) registration of the toy split, and
    its results file."""
    records, outputs = toy_split()
    catalog.register("rb_cli_prw", records, protocol="prw")
    root = str(tmp_path / "cuhk")
    query = ("c1_a.jpg", (0, 0, 20, 60))
    write_test_protocol_mat(root, 2, [{"query": query, "gallery": [("c1_b.jpg", (0, 0, 20, 60))]}])
    catalog.register("rb_cli_cuhk", records, protocol="cuhk_sysu", root=root)
    path = str(tmp_path / "search_results.pth")
    save_results(path, toy_results(records, outputs))
    return path, records, root


def _evaluate(argv, capsys):
    """Exit status and the ``error: ...`` line of tools/evaluate_search.py."""
    code = load_tool("evaluate_search").main(argv)
    return code, error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "extra, dataset, message",
    [
        (["--gallery-size", "77"], "rb_cli_cuhk", "gallery size 77 not found"),
        (["--subset", "resolution"], "rb_cli_prw", "Subset 'resolution' exists only for CUHK"),
        (["--lowres-fraction", "0", "--subset", "lowres"], "rb_cli_prw", "lowres fraction"),
        (["--cbgm", "--cbgm-k2", "0"], "rb_cli_prw", "CBGM needs k1 >= 1 and k2 >= 1"),
        (["--det-thresh", "nan"], "rb_cli_prw", "det_thresh must be a number, got NaN"),
        (["--all"], "rb_cli_prw", "--all needs a CUHK-SYSU-style dataset"),
    ],
)
def test_evaluate_search_bad_options(toy_files, capsys, extra, dataset, message):
    path, _, root = toy_files
    code, err = _evaluate(["--results", path, "--dataset", dataset] + extra, capsys)
    assert code == 2 and err.startswith("error: ")
    assert message in err
    if "77" in extra:
        assert_names(err, ["TestG77.mat", "[2]", root])


def test_evaluate_search_missing_results_file(tmp_path, capsys, toy_files):
    path = str(tmp_path / "nope" / "search_results.pth")
    code, err = _evaluate(["--results", path, "--dataset", "rb_cli_prw"], capsys)
    assert code == 2 and "Results file not found" in err and path in err


def test_evaluate_search_truncated_results_file(toy_files, capsys):
    path = toy_files[0]
    damage_file(path, keep_fraction=0.7)
    code, err = _evaluate(["--results", path, "--dataset", "rb_cli_prw"], capsys)
    assert code == 2 and "is not a readable person-search results file" in err and path in err


def test_evaluate_search_a_checkpoint_instead_of_results(tmp_path, capsys, toy_files):
    path = str(tmp_path / "model_final.pth")
    torch.save({"model": {}, "iteration": 9}, path)
    code, err = _evaluate(["--results", path, "--dataset", "rb_cli_prw"], capsys)
    assert code == 2 and "not a person-search results file" in err
    assert_names(err, [path, "['iteration', 'model']"])


def test_evaluate_search_unknown_dataset_lists_the_person_search_splits(toy_files, capsys):
    code, err = _evaluate(["--results", toy_files[0], "--dataset", "cuhk_sysu_tset"], capsys)
    assert code == 2 and "Dataset 'cuhk_sysu_tset' is not registered" in err
    assert "cuhk_sysu_test" in err and "coco_2017_train" not in err


def test_evaluate_search_unknown_subset_is_a_usage_error(toy_files, capsys):
    with pytest.raises(SystemExit) as e:
        load_tool("evaluate_search").main(
            ["--results", toy_files[0], "--dataset", "rb_cli_prw", "--subset", "bogus"]
        )
    assert e.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


def test_evaluate_search_cross_camera_without_camera_ids(toy_files, capsys, catalog):
    path, records, _ = toy_files
    catalog.register("rb_cli_nocam", [{**r, "camera_id": None} for r in records], protocol="prw")
    code, err = _evaluate(
        ["--results", path, "--dataset", "rb_cli_nocam", "--cross-camera"], capsys
    )
    assert code == 2 and "Cross-camera search needs a 'camera_id'" in err
    assert "4 of 4 images have none, e.g. 'c1_a.jpg'" in err


def test_evaluate_search_results_of_another_dataset(toy_files, capsys, catalog, caplog):
    path, records, _ = toy_files
    other = [dict(r, image_id="o_" + r["image_id"]) for r in records]
    catalog.register("rb_cli_other", other, protocol="prw")
    code, err = _evaluate(["--results", path, "--dataset", "rb_cli_other"], capsys)
    assert code == 2 and "4 gallery image id(s) are not in the dataset, e.g. 'c1_a.jpg'" in err
    assert "was produced on 'toy'; scoring it as 'rb_cli_other'" in warnings_of(caplog)


def test_evaluate_search_unwritable_output(toy_files, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = str(blocker / "metrics")
    code, err = _evaluate(
        ["--results", toy_files[0], "--dataset", "rb_cli_prw", "--output", out], capsys
    )
    assert code == 2 and str(blocker) in err


# --------------------------------------------------------------------------------------------
# tools/convert_to_json.py, visualize_data.py, analyze_dataset.py
# --------------------------------------------------------------------------------------------
@pytest.fixture
def json_set(tmp_path):
    """A valid person-search JSON file and its image folder."""
    root = str(tmp_path / "images")
    for name in ("a.jpg", "b.jpg"):
        write_jpeg(os.path.join(root, name), 60, 80)
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": 60, "width": 80},
            {"id": 2, "file_name": "b.jpg", "height": 60, "width": 80},
        ],
        "annotations": [{"image_id": 1, "bbox": [1, 2, 10, 20], "person_id": 3}],
    }
    path = str(tmp_path / "set.json")
    with open(path, "w") as f:
        json.dump(data, f)
    return path, root


def _blocked_dir(tmp_path) -> str:
    """An output folder that cannot be created: its parent is a file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    return str(blocker / "out")


TOOLS = ["convert_to_json", "visualize_data", "analyze_dataset"]


def _args(tool, dataset, output):
    return [
        "--dataset",
        dataset,
        "--output",
        output + (".json" if tool == "convert_to_json" else ""),
    ]


@pytest.mark.parametrize("tool", TOOLS)
def test_unknown_dataset_lists_the_person_search_splits(tool, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        load_tool(tool).main(_args(tool, "prw_tset", str(tmp_path / "o")))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "prw_tset" in err and "not registered" in err
    assert "prw_test" in err and "coco_2017_train" not in err


@pytest.mark.parametrize("tool", TOOLS)
def test_unwritable_output_names_the_path(tool, tmp_path, json_set, catalog):
    path, root = json_set
    name = catalog.track(f"rb_cli_{tool}")
    out = _blocked_dir(tmp_path)
    with pytest.raises(OSError) as e:
        load_tool(tool).main(["--register-json", name, path, root] + _args(tool, name, out))
    assert str(tmp_path / "blocker") in str(e.value)


@pytest.mark.parametrize("tool", TOOLS)
def test_register_json_with_a_missing_file(tool, tmp_path, catalog):
    name = catalog.track(f"rb_cli_missing_{tool}")
    missing = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="JSON file not found") as e:
        load_tool(tool).main(
            ["--register-json", name, missing, str(tmp_path)]
            + _args(tool, name, str(tmp_path / "o"))
        )
    assert missing in str(e.value)


@pytest.mark.parametrize("tool", TOOLS)
def test_register_json_under_a_taken_name(tool, tmp_path, json_set):
    path, root = json_set
    with pytest.raises(ValueError, match="Dataset 'prw_test' is already registered"):
        load_tool(tool).main(
            ["--register-json", "prw_test", path, root]
            + _args(tool, "prw_test", str(tmp_path / "o"))
        )


def test_convert_unknown_gallery_size_of_a_cuhk_split(tmp_path, catalog):
    from personsearch.data.datasets.cuhk_sysu import register_cuhk_sysu

    root = write_tiny_cuhk_sysu(str(tmp_path / "CUHK-SYSU"))["root"]
    name = catalog.track("rb_cli_cuhk_test")
    register_cuhk_sysu(name, root, "test")
    with pytest.raises(FileNotFoundError, match=r"gallery size 77 not found") as e:
        load_tool("convert_to_json").main(
            ["--dataset", name, "--output", str(tmp_path / "o.json"), "--gallery-size", "77"]
        )
    assert "[50, 100]" in str(e.value)


def test_convert_empty_dataset(tmp_path, catalog):
    catalog.register("rb_cli_empty", [])
    with pytest.raises(SystemExit, match="'rb_cli_empty' has no images"):
        load_tool("convert_to_json").main(
            ["--dataset", "rb_cli_empty", "--output", str(tmp_path / "o.json")]
        )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--image-ids", "a.jpg", "zz.jpg"], "image ids not in the dataset: ['zz.jpg']"),
        (["--queries-only"], "no image of the dataset holds a query"),
    ],
)
def test_visualize_bad_selection(tmp_path, json_set, catalog, extra, message):
    path, root = json_set
    name = catalog.track("rb_cli_vis_sel")
    with pytest.raises(SystemExit) as e:
        load_tool("visualize_data").main(
            ["--register-json", name, path, root, "--dataset", name, "--output", str(tmp_path)]
            + extra
        )
    assert str(e.value) == f"{name}: {message}"


def test_visualize_bad_number_of_images(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        load_tool("visualize_data").main(["--dataset", "prw_test", "--num-images", "0"])
    assert e.value.code == 2 and "--num-images must be >= 1" in capsys.readouterr().err


def test_visualize_image_deleted_after_loading(tmp_path, json_set, catalog):
    path, root = json_set
    name = catalog.track("rb_cli_vis_gone")
    os.remove(os.path.join(root, "b.jpg"))  # sizes are in the JSON: loading does not need it
    with pytest.raises(FileNotFoundError, match="Image file not found") as e:
        load_tool("visualize_data").main(
            ["--register-json", name, path, root, "--dataset", name, "--output", str(tmp_path)]
        )
    assert os.path.join(root, "b.jpg") in str(e.value)


def test_analyze_dataset_named_twice(capsys):
    with pytest.raises(SystemExit) as e:
        load_tool("analyze_dataset").main(["--dataset", "prw_test", "prw_test"])
    assert e.value.code == 2 and "a dataset is named twice" in capsys.readouterr().err
