"""Tests of tools/convert_to_json.py, tools/visualize_data.py and tools/analyze_dataset.py, run
through their ``main(argv)`` on a tiny dataset written in a temporary folder."""

import json
import os
import sys
import types
import uuid

import cv2
import matplotlib
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from personsearch.data.datasets.json_format import (
    load_person_search_json,
    register_person_search_json,
)
from personsearch.data.statistics import compute_dataset_statistics, height_bin_index
from personsearch.utils.visualizer import (
    UNLABELED_COLOR,
    draw_record,
    identity_color,
    make_grid,
)
from personsearch.visualization.dataset_plots import analyze
from tests.common import load_tool, rounded_records

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def tools():
    return types.SimpleNamespace(
        convert=load_tool("convert_to_json"),
        visualize=load_tool("visualize_data"),
        analyze=load_tool("analyze_dataset"),
    )


# train: 4 images 200x450 (w x h), the last one empty; box heights 50, 70, 30 | 150, 250 | 420, 99
TRAIN = {
    "images": [
        {"id": i, "file_name": f"train/t{i}.jpg", "height": 450, "width": 200} for i in range(1, 5)
    ],
    "annotations": [
        {"image_id": 1, "bbox": [0, 0, 10, 50], "person_id": 5},
        {"image_id": 1, "bbox": [20, 0, 10, 70], "person_id": 6},
        {"image_id": 1, "bbox": [40, 0, 10, 30], "person_id": -1},
        {"image_id": 2, "bbox": [0, 10, 20, 150], "person_id": 5},
        {"image_id": 2, "bbox": [50, 10, 30, 250], "person_id": -1},
        {"image_id": 3, "bbox": [0, 0, 40, 420], "person_id": 6},
        {"image_id": 3, "bbox": [100, 20, 20, 99], "person_id": 7},
    ],
}
# test: 2 images 400x300; heights 100, 200, 59 | 120; two queries of person 1
TEST = {
    "images": [
        {"id": 1, "file_name": "test/g1.jpg", "height": 300, "width": 400},
        {"id": 2, "file_name": "test/g2.jpg", "height": 300, "width": 400},
    ],
    "annotations": [
        {"image_id": 1, "bbox": [10, 10, 30, 100], "person_id": 1},
        {"image_id": 1, "bbox": [100, 50, 60, 200], "person_id": 2},
        {"image_id": 1, "bbox": [200, 0, 20, 59], "person_id": -1},
        {"image_id": 2, "bbox": [50, 20, 40, 120], "person_id": 1},
    ],
    "queries": [
        {"image_id": 1, "bbox": [10, 10, 30, 100], "person_id": 1, "gallery_image_ids": [2]},
        {"image_id": 2, "bbox": [50, 20, 40, 120], "person_id": 1},
    ],
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Registers the tiny train and test splits; yields (root, train name, test name)."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for data in (TRAIN, TEST):
        for im in data["images"]:
            path = root / im["file_name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (im["height"], im["width"], 3), dtype=np.uint8)
            cv2.imwrite(str(path), pixels)
    (root / "train.json").write_text(json.dumps(TRAIN))
    (root / "test.json").write_text(json.dumps(TEST))
    suffix = uuid.uuid4().hex[:8]
    names = (f"tiny_train_{suffix}", f"tiny_test_{suffix}")
    register_person_search_json(names[0], str(root / "train.json"), str(root))
    register_person_search_json(names[1], str(root / "test.json"), str(root))
    yield str(root), names[0], names[1]
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
EXPECTED_TRAIN = {
    "num_images": 4,
    "num_images_without_boxes": 1,
    "num_boxes": 7,
    "num_labeled_boxes": 5,
    "num_unlabeled_boxes": 2,
    "num_identities": 3,
    "appearances_per_identity": {"min": 1, "mean": 5 / 3, "max": 2},
    "boxes_per_image": {"min": 0, "mean": 1.75, "max": 3},
    "num_queries": 0,
    "num_images_with_queries": 0,
    "num_query_identities": 0,
    "num_queries_with_gallery": 0,
    "gallery_size": None,
    "num_cameras": None,
    "image_height": {"min": 450, "mean": 450.0, "max": 450},
    "image_width": {"min": 200, "mean": 200.0, "max": 200},
    "num_distinct_image_sizes": 1,
    "most_common_image_sizes": [["200x450", 4]],
    "query_height": None,
}
TRAIN_HEIGHTS = [50, 70, 30, 150, 250, 420, 99]
TEST_HEIGHTS = [100, 200, 59, 120]


def _height_stats(heights):
    h = np.array(heights, dtype=float)
    bins = dict(zip(["[0,60)", "[60,100)", "[100,200)", "[200,400)", ">=400"], [0] * 5))
    for b in height_bin_index(h):
        bins[list(bins)[b]] += 1
    return {
        "min": int(h.min()),
        "mean": float(h.mean()),
        "max": int(h.max()),
        "percentiles": {f"p{p}": float(np.percentile(h, p)) for p in (5, 25, 50, 75, 95)},
        "bins": bins,
        "bin_fractions": {k: v / len(h) for k, v in bins.items()},
    }


def assert_close(actual, expected):
    """Nested dicts/lists equal, floats within 1e-9, same keys, ints and None exact."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (actual, expected)
        for key in expected:
            assert_close(actual[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_close(a, e)
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-9)
    else:
        assert actual == expected and type(actual) is type(expected), (actual, expected)


def test_height_bins():
    assert height_bin_index([0, 59.9, 60, 99, 100, 199, 200, 399.5, 400, 2000]).tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
    ]


def test_statistics_exact(tiny):
    _, train, test = tiny
    stats = compute_dataset_statistics(DatasetCatalog.get(train))
    for key, value in EXPECTED_TRAIN.items():
        assert_close(stats[key], value)
    assert stats["box_height"]["bins"] == {
        "[0,60)": 2,
        "[60,100)": 2,
        "[100,200)": 1,
        "[200,400)": 1,
        ">=400": 1,
    }
    assert_close(stats["box_height"], _height_stats(TRAIN_HEIGHTS))

    stats = compute_dataset_statistics(DatasetCatalog.get(test))
    assert stats["num_images"] == 2 and stats["num_boxes"] == 4
    assert (stats["num_labeled_boxes"], stats["num_unlabeled_boxes"]) == (3, 1)
    assert stats["num_identities"] == 2
    assert stats["appearances_per_identity"] == {"min": 1, "mean": 1.5, "max": 2}
    assert stats["boxes_per_image"] == {"min": 1, "mean": 2.0, "max": 3}
    assert (stats["num_queries"], stats["num_images_with_queries"]) == (2, 2)
    assert stats["num_query_identities"] == 1
    assert stats["num_queries_with_gallery"] == 1
    assert stats["gallery_size"] == {"min": 1, "mean": 1.0, "max": 1}
    assert_close(stats["box_height"], _height_stats(TEST_HEIGHTS))
    assert_close(stats["query_height"], _height_stats([100, 120]))
    assert stats["box_height"]["bins"]["[100,200)"] == 2


# ---------------------------------------------------------------------------------------------
# convert_to_json
# ---------------------------------------------------------------------------------------------
def test_convert_round_trip(tools, tiny, tmp_path, capsys):
    root, _, test = tiny
    out = str(tmp_path / "converted.json")
    assert tools.convert.main(["--dataset", test, "--output", out]) == out
    printed = capsys.readouterr().out
    assert out in printed and f"Image root: {root}" in printed
    saved = json.loads(open(out).read())
    assert saved["info"]["source_dataset"] == test
    assert [im["file_name"] for im in saved["images"]] == ["test/g1.jpg", "test/g2.jpg"]
    reloaded = load_person_search_json(out, root)
    assert rounded_records(reloaded) == rounded_records(DatasetCatalog.get(test))
    assert reloaded[0]["queries"][0]["gallery_image_ids"] == ["test/g2.jpg"]


def test_convert_with_explicit_image_root(tools, tiny, tmp_path):
    root, train, _ = tiny
    out = str(tmp_path / "train.json")
    tools.convert.main(["--dataset", train, "--output", out, "--image-root", root + "/train"])
    reloaded = load_person_search_json(out, root + "/train")
    assert reloaded[0]["image_id"] == "t1.jpg"
    assert [a["person_id"] for a in reloaded[0]["annotations"]] == [0, 1, -1]


def test_convert_cuhk_sysu_galleries(tools, tiny, tmp_path, monkeypatch):
    """Splits with protocol "cuhk_sysu" get the TestG{N} galleries of load_cuhk_sysu_protocol."""
    root, _, test = tiny
    name = f"tiny_cuhk_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(
        name, lambda: load_person_search_json(os.path.join(root, "test.json"), root)
    )
    MetadataCatalog.get(name).set(evaluator_type="person_search", protocol="cuhk_sysu", root=root)
    calls = []

    def load_cuhk_sysu_protocol(protocol_root, gallery_size=100, subset=None):
        calls.append((protocol_root, gallery_size))
        return [
            {
                "query": {"image_id": "test/g1.jpg", "bbox": [10, 10, 40, 110]},
                "gallery": [{"image_id": "test/g2.jpg", "bbox": [50, 20, 90, 140]}],
            },
            {
                "query": {"image_id": "test/g2.jpg", "bbox": [50, 20, 90, 140]},
                "gallery": [{"image_id": "test/g1.jpg", "bbox": None}],
            },
        ]

    fake = types.ModuleType("personsearch.data.datasets.cuhk_sysu")
    fake.load_cuhk_sysu_protocol = load_cuhk_sysu_protocol
    monkeypatch.setitem(sys.modules, "personsearch.data.datasets.cuhk_sysu", fake)
    try:
        out = str(tmp_path / "cuhk.json")
        tools.convert.main(["--dataset", name, "--output", out, "--gallery-size", "50"])
        assert calls == [(root, 50)]
        saved = json.loads(open(out).read())
        assert [q["gallery_image_ids"] for q in saved["queries"]] == [[2], [1]]
        reloaded = load_person_search_json(out, root)
        assert reloaded[1]["queries"][0]["gallery_image_ids"] == ["test/g1.jpg"]

        # --gallery-size 0: no per-query galleries, the protocol file is not read
        tools.convert.main(["--dataset", name, "--output", out, "--gallery-size", "0"])
        assert len(calls) == 1
        saved = json.loads(open(out).read())
        assert [q.get("gallery_image_ids") for q in saved["queries"]] == [[2], None]

        # a protocol that does not match the split's queries is an error
        calls.clear()
        fake.load_cuhk_sysu_protocol = lambda r, g=100, subset=None: load_cuhk_sysu_protocol(r)[:1]
        with pytest.raises(ValueError, match="query indices"):
            tools.convert.main(["--dataset", name, "--output", out])
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_convert_real_cuhk_sysu_split(tools, tmp_path):
    """The CUHK-SYSU loader and protocol reader on a tiny tree in the original format."""
    cuhk_sysu = pytest.importorskip("personsearch.data.datasets.cuhk_sysu")
    fixtures = pytest.importorskip("tests.data.fixtures")
    expected = fixtures.write_tiny_cuhk_sysu(str(tmp_path / "CUHK-SYSU"))
    name = f"tiny_cuhk_sysu_test_{uuid.uuid4().hex[:8]}"
    cuhk_sysu.register_cuhk_sysu(name, expected["root"], "test")
    try:
        out = str(tmp_path / "cuhk_test_g50.json")
        tools.convert.main(["--dataset", name, "--output", out, "--gallery-size", "50"])
        reloaded = load_person_search_json(out, os.path.join(expected["root"], "Image", "SSM"))
        assert fixtures.summarize(reloaded) == fixtures.summarize(DatasetCatalog.get(name))
        galleries = {
            q["query_index"]: q["gallery_image_ids"] for r in reloaded for q in r.get("queries", [])
        }
        assert galleries == {
            i: [g["image_id"] for g in entry["gallery"]]
            for i, entry in enumerate(expected["protocols"][50])
        }
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_unregistered_dataset_is_a_usage_error(tools, tmp_path, capsys):
    for tool, extra in (
        (tools.convert, ["--output", str(tmp_path / "x.json")]),
        (tools.visualize, []),
        (tools.analyze, []),
    ):
        with pytest.raises(SystemExit) as info:
            tool.main(["--dataset", "no_such_split_xyz"] + extra)
        assert info.value.code == 2
        assert "no_such_split_xyz" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# visualize_data
# ---------------------------------------------------------------------------------------------
def test_visualize(tools, tiny, tmp_path, capsys):
    _, train, test = tiny
    out = str(tmp_path / "vis")
    paths = tools.visualize.main(
        ["--dataset", train, "--num-images", "2", "--output", out, "--seed", "3"]
    )
    assert len(paths) == 3 and paths[-1] == os.path.join(out, f"{train}_grid.png")
    printed = capsys.readouterr().out.split()
    assert printed == paths
    for path in paths:
        assert path.endswith(".png") and cv2.imread(path) is not None
    assert cv2.imread(paths[0]).shape == (450, 200, 3)  # per-image PNGs keep the original size
    # same seed, same sample
    again = tools.visualize.main(
        ["--dataset", train, "--num-images", "2", "--output", out, "--seed", "3"]
    )
    assert again == paths

    paths = tools.visualize.main(
        ["--dataset", test, "--image-ids", "test/g2.jpg", "--output", out, "--no-grid"]
    )
    assert paths == [os.path.join(out, test, "test__g2.png")]
    paths = tools.visualize.main(["--dataset", test, "--queries-only", "--output", out])
    assert len(paths) == 3
    with pytest.raises(SystemExit, match="nope.jpg"):
        tools.visualize.main(["--dataset", test, "--image-ids", "nope.jpg", "--output", out])


def test_draw_record_colours():
    image = np.zeros((100, 120, 3), dtype=np.uint8)
    record = {
        "annotations": [
            {"bbox": [10, 10, 50, 90], "person_id": 3},
            {"bbox": [60, 10, 100, 90], "person_id": -1},
        ],
        "queries": [],
    }
    draw_record(image, record, show_ids=False)
    assert tuple(image[50, 10]) == identity_color(3)
    assert tuple(image[50, 60]) == UNLABELED_COLOR
    assert identity_color(3) != identity_color(4)
    assert make_grid([image, image, image]).shape == (2 * 360 + 12, 2 * 480 + 12, 3)


# ---------------------------------------------------------------------------------------------
# analyze_dataset
# ---------------------------------------------------------------------------------------------
def test_analyze(tools, tiny, tmp_path, capsys):
    _, train, test = tiny
    out = str(tmp_path / "analysis")
    stats = tools.analyze.main(["--dataset", train, test, "--output", out])
    printed = capsys.readouterr().out
    assert f"| statistic | {train} | {test} |" in printed
    assert "| images | 4 | 2 |" in printed
    assert "| identities | 3 | 2 |" in printed
    assert "| box height [0,60) | 2 (28.6%) | 1 (25.0%) |" in printed
    assert "| appearances / identity (min/mean/max) | 1 / 1.67 / 2 | 1 / 1.50 / 2 |" in printed
    # one of the two queries gives its own gallery list
    assert "| evaluation protocol | - | json: per-query gallery lists |" in printed
    with open(os.path.join(out, "statistics.json")) as f:
        saved = json.load(f)
    assert list(saved) == [train, test]
    assert saved == json.loads(json.dumps(stats))
    assert saved[train]["num_boxes"] == 7 and saved[test]["num_queries"] == 2
    assert_close(saved[train]["box_height"], _height_stats(TRAIN_HEIGHTS))
    for name in ("box_heights", "boxes_per_image", "appearances_per_identity"):
        path = os.path.join(out, name + ".png")
        assert path in printed and cv2.imread(path) is not None
    assert open(os.path.join(out, "statistics.md")).read().startswith("| statistic |")


def test_analyze_names_the_benchmark_protocols(tmp_path):
    from personsearch.data.datasets.cuhk_sysu import register_cuhk_sysu
    from personsearch.data.datasets.prw import register_prw
    from tests.data.fixtures import write_tiny_cuhk_sysu, write_tiny_prw

    cuhk = write_tiny_cuhk_sysu(str(tmp_path / "CUHK-SYSU"), gallery_sizes=(50,))["root"]
    prw = write_tiny_prw(str(tmp_path / "PRW"))["root"]
    names = {"cuhk": f"tiny_cuhk_protocol_{uuid.uuid4().hex[:8]}",
             "prw": f"tiny_prw_protocol_{uuid.uuid4().hex[:8]}"}  # fmt: skip
    register_cuhk_sysu(names["cuhk"], cuhk, "test")
    register_prw(names["prw"], prw, "test")
    try:
        stats, _ = analyze(list(names.values()), str(tmp_path / "out"))
        assert stats[names["cuhk"]]["protocol"] == "cuhk_sysu: TestG50"
        assert stats[names["prw"]]["protocol"] == "prw: every other test frame"
    finally:
        for name in names.values():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
