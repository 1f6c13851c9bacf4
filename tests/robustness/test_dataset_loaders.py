"""Bad inputs to the dataset loaders and their registration: CUHK-SYSU, PRW, JSON, synthetic.

Every failure must be a ``FileNotFoundError`` or a ``ValueError`` (``DatasetFormatError`` is one)
whose message names the offending file, record or key; every box that is clipped or dropped must
be counted in a logged warning.
"""

import copy
import json
import os
import shutil

import numpy as np
import pytest
import scipy.io

from personsearch.data.datasets import builtin
from personsearch.data.datasets.common import DatasetFormatError
from personsearch.data.datasets.cuhk_sysu import (
    load_cuhk_sysu,
    load_cuhk_sysu_protocol,
    register_cuhk_sysu,
)
from personsearch.data.datasets.json_format import (
    load_person_search_json,
    register_person_search_json,
)
from personsearch.data.datasets.prw import load_prw, register_prw
from personsearch.data.datasets.synthetic import (
    INFO_FILE,
    SyntheticDatasetMissingError,
    check_synthetic_dataset,
)
from synthetic_generator import ensure_synthetic_dataset
from tests.data.fixtures import write_jpeg, write_tiny_cuhk_sysu, write_tiny_prw

from .helpers import assert_names, damage_file, warnings_of


@pytest.fixture(scope="module")
def cuhk_tree(tmp_path_factory):
    return write_tiny_cuhk_sysu(str(tmp_path_factory.mktemp("cuhk") / "CUHK-SYSU"))["root"]


@pytest.fixture(scope="module")
def prw_tree(tmp_path_factory):
    return write_tiny_prw(str(tmp_path_factory.mktemp("prw") / "PRW"))["root"]


@pytest.fixture
def cuhk(cuhk_tree, tmp_path):
    """A private copy of the tiny CUHK-SYSU tree, free to damage."""
    return shutil.copytree(cuhk_tree, str(tmp_path / "CUHK-SYSU"))


@pytest.fixture
def prw(prw_tree, tmp_path):
    return shutil.copytree(prw_tree, str(tmp_path / "PRW"))


def _mat_struct(fields, rows):
    arr = np.empty((1, len(rows)), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        arr[0, i] = row
    return arr


# --------------------------------------------------------------------------------------------
# CUHK-SYSU
# --------------------------------------------------------------------------------------------
def test_cuhk_missing_root(tmp_path):
    root = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="CUHK-SYSU dataset root not found") as e:
        load_cuhk_sysu(root, "train")
    assert_names(str(e.value), [root, "DETECTRON2_DATASETS", "datasets/README.md"])


@pytest.mark.parametrize(
    "call", [load_cuhk_sysu, lambda root, split: register_cuhk_sysu("x", root, split)]
)
def test_cuhk_unknown_split(cuhk_tree, call):
    with pytest.raises(ValueError, match=r"Unknown CUHK-SYSU split 'val'.*\['train', 'test'\]"):
        call(cuhk_tree, "val")


@pytest.mark.parametrize(
    "rel, split",
    [
        ("annotation/Images.mat", "train"),
        ("annotation/pool.mat", "test"),
        ("annotation/test/train_test/Train.mat", "train"),
        ("Image/SSM", "test"),
    ],
)
def test_cuhk_missing_file(cuhk, rel, split):
    path = os.path.join(cuhk, rel)
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    with pytest.raises(FileNotFoundError, match="is missing") as e:
        load_cuhk_sysu(cuhk, split)
    assert_names(str(e.value), [path])


@pytest.mark.parametrize(
    "rel, damage",
    [
        ("annotation/Images.mat", {"keep_fraction": 0.5}),
        ("annotation/pool.mat", {"replace_with": b"garbage" * 20}),
        ("annotation/test/train_test/Train.mat", {"keep_fraction": 0.9}),
        ("annotation/Images.mat", {"replace_with": b""}),
    ],
)
def test_cuhk_corrupt_or_truncated_mat(cuhk, rel, damage):
    path = os.path.join(cuhk, rel)
    damage_file(path, **damage)
    with pytest.raises(DatasetFormatError) as e:
        load_cuhk_sysu(cuhk, "train")
    assert_names(str(e.value), [path])


def test_cuhk_wrong_variable_name(cuhk):
    path = os.path.join(cuhk, "annotation/pool.mat")
    scipy.io.savemat(path, {"gallery": np.zeros(3)})
    with pytest.raises(
        DatasetFormatError, match=r"variable named 'pool'.*holds \['gallery'\]"
    ) as e:
        load_cuhk_sysu(cuhk, "test")
    assert_names(str(e.value), [path])


def test_cuhk_missing_struct_field(cuhk):
    path = os.path.join(cuhk, "annotation/Images.mat")
    scipy.io.savemat(path, {"Img": _mat_struct(["imname"], [(np.array(["s1.jpg"]),)])})
    with pytest.raises(DatasetFormatError, match=r"Img: struct has no field 'box'") as e:
        load_cuhk_sysu(cuhk, "train")
    assert_names(str(e.value), [path])


def test_cuhk_box_of_wrong_shape_names_image_and_entry(cuhk):
    path = os.path.join(cuhk, "annotation/Images.mat")
    box = _mat_struct(["idlocate"], [(np.array([[1.0, 2.0, 3.0]]),)])
    scipy.io.savemat(path, {"Img": _mat_struct(["imname", "box"], [(np.array(["s1.jpg"]), box)])})
    with pytest.raises(DatasetFormatError, match=r"expected 4 numbers \[x y w h\]") as e:
        load_cuhk_sysu(cuhk, "train")
    assert_names(str(e.value), [path, "Img[0] (s1.jpg).box[0].idlocate"])


@pytest.mark.parametrize(
    "damage, error, message",
    [
        ("remove", FileNotFoundError, "Image file not found"),
        ("garbage", ValueError, "Cannot read image"),
        ("empty", ValueError, "Cannot read image"),
    ],
)
def test_cuhk_missing_or_corrupt_image(cuhk, damage, error, message):
    path = os.path.join(cuhk, "Image", "SSM", "s10.jpg")
    if damage == "remove":
        os.remove(path)
    else:
        damage_file(path, replace_with=b"not a jpeg" if damage == "garbage" else b"")
    with pytest.raises(error, match=message) as e:
        load_cuhk_sysu(cuhk, "train")
    assert_names(str(e.value), [path])


def test_cuhk_degenerate_and_outside_boxes_are_counted(cuhk_tree, caplog):
    records = load_cuhk_sysu(cuhk_tree, "train")
    logged = warnings_of(caplog)
    # s1.jpg's w=0 box dropped; s10.jpg's second box crosses the border and is clipped
    assert "CUHK-SYSU train: dropped 1 boxes" in logged and "w <= 0 or h <= 0" in logged
    assert "CUHK-SYSU train: 1 of 5 boxes were outside the image and clipped" in logged
    # Train.mat entries that cannot give a person id: one each, named
    assert "1 entries name an image outside the split" in logged and "s999.jpg" in logged
    assert "1 entries match no annotation box of their image" in logged
    assert sum(len(r["annotations"]) for r in records) == 5


def test_cuhk_test_split_without_protocol_files(cuhk):
    folder = os.path.join(cuhk, "annotation", "test", "train_test")
    for name in os.listdir(folder):
        if name.startswith("TestG"):
            os.remove(os.path.join(folder, name))
    with pytest.raises(FileNotFoundError, match=r"no protocol file TestG\{N\}.mat") as e:
        load_cuhk_sysu(cuhk, "test")
    assert_names(str(e.value), [folder])


def test_cuhk_unknown_gallery_size_lists_the_available_ones(cuhk_tree):
    with pytest.raises(FileNotFoundError, match=r"gallery size 77.*TestG77.mat") as e:
        load_cuhk_sysu_protocol(cuhk_tree, 77)
    assert "[50, 100]" in str(e.value)


def test_cuhk_unknown_subset(cuhk_tree):
    with pytest.raises(ValueError, match=r"subset 'bogus'.*\['resolution', 'occlusion'\]"):
        load_cuhk_sysu_protocol(cuhk_tree, 50, "bogus")


def test_cuhk_query_image_not_in_the_test_split(cuhk):
    from personsearch.data.datasets.cuhk_sysu_writer import write_test_protocol_mat

    write_test_protocol_mat(cuhk, 50, [{"query": ("s1.jpg", (2, 3, 10, 20)), "gallery": []}])
    with pytest.raises(DatasetFormatError, match=r"query image 's1.jpg' is not a test image") as e:
        load_cuhk_sysu(cuhk, "test")
    assert_names(str(e.value), ["TestG50.mat", "TestG50[0].Query.imname"])


# --------------------------------------------------------------------------------------------
# PRW
# --------------------------------------------------------------------------------------------
def test_prw_missing_root(tmp_path):
    root = str(tmp_path / "PRW")
    with pytest.raises(FileNotFoundError, match="PRW dataset root not found") as e:
        load_prw(root, "test")
    assert_names(str(e.value), [root])


@pytest.mark.parametrize("call", [load_prw, lambda root, split: register_prw("x", root, split)])
def test_prw_unknown_split(prw_tree, call):
    with pytest.raises(ValueError, match=r"Unknown PRW split 'trainval'"):
        call(prw_tree, "trainval")


@pytest.mark.parametrize(
    "rel, split, message",
    [
        ("query_info.txt", "test", "is missing"),
        ("frame_test.mat", "test", "is missing"),
        ("annotations/c6s1_000010.jpg.mat", "test", "Annotation file not found"),
    ],
)
def test_prw_missing_file(prw, rel, split, message):
    path = os.path.join(prw, rel)
    os.remove(path)
    with pytest.raises(FileNotFoundError, match=message) as e:
        load_prw(prw, split)
    assert_names(str(e.value), [path])


@pytest.mark.parametrize(
    "rel, content, message",
    [
        ("frame_train.mat", None, "corrupt or not a .mat file"),
        ("annotations/c2s1_000200.jpg.mat", {"box_new": np.zeros((2, 4))}, r"N x 5.*\(2, 4\)"),
        ("annotations/c2s1_000200.jpg.mat", {"boxes": np.zeros((2, 5))}, "'box_new' or"),
        ("annotations/c2s1_000200.jpg.mat", {"box_new": np.full((1, 5), np.nan)}, "non-finite"),
        ("annotations/c2s1_000200.jpg.mat", {"box_new": [[1.5, 0, 0, 5, 5]]}, "must be integers"),
        (
            "frame_train.mat",
            {"img_index_train": np.array(["c1s1_1", "c1s1_1"], dtype=object)},
            "twice",
        ),
    ],
)
def test_prw_malformed_mat(prw, rel, content, message):
    path = os.path.join(prw, rel)
    if content is None:
        damage_file(path, keep_fraction=0.4)
    else:
        scipy.io.savemat(path, content)
    with pytest.raises(DatasetFormatError, match=message) as e:
        load_prw(prw, "train")
    assert_names(str(e.value), [path])


@pytest.mark.parametrize(
    "line, message",
    [
        ("605 1 2 3", "expected 6 fields, got 4"),
        ("x 1 2 3 4 c3s2_044587", "malformed query"),
        ("-2 1 2 3 4 c3s2_044587", "not a labeled"),
        ("605 nan 2 3 4 c3s2_044587", "non-finite"),
        ("605 1 2 3 4 c9s9_000000", "query image 'c9s9_000000.jpg' is not in the test split"),
        ("605 500 500 10 10 c3s2_044587", "has no area inside image"),
    ],
)
def test_prw_bad_query_line_names_file_and_line(prw, line, message):
    path = os.path.join(prw, "query_info.txt")
    with open(path, "w") as f:
        f.write("7 5 6 10 12 c6s1_000010\n\n" + line + "\n")
    with pytest.raises(DatasetFormatError, match=message) as e:
        load_prw(prw, "test")
    assert_names(str(e.value), [path, "line 3"])


def test_prw_query_file_not_utf8(prw):
    path = os.path.join(prw, "query_info.txt")
    damage_file(path, replace_with=b"\xff\xfe\x00\x81")
    with pytest.raises(DatasetFormatError, match="as UTF-8 text") as e:
        load_prw(prw, "test")
    assert_names(str(e.value), [path])


def test_prw_corrupt_frame(prw):
    path = os.path.join(prw, "frames", "c1s1_000151.jpg")
    damage_file(path, replace_with=b"GIF89a broken")
    with pytest.raises(ValueError, match="Cannot read image") as e:
        load_prw(prw, "train")
    assert_names(str(e.value), [path])


def test_prw_clipped_dropped_and_odd_ids_are_counted(prw, caplog):
    from tests.data.fixtures import write_prw_annotation

    write_prw_annotation(prw, "c2s1_000200", [[5, 10, 10, 20, 30], [-7, 30, 5, 10, 10]])
    records = load_prw(prw, "train")
    logged = warnings_of(caplog)
    assert "PRW train: 1 boxes have a negative person id other than -2; treated as unlabeled" in (
        logged
    )
    assert (
        "PRW train: 1 of 6 boxes were outside the image and clipped; 1 had zero or negative "
        in (logged)
    )
    assert sum(len(r["annotations"]) for r in records) == 5


def test_prw_changed_files_between_loads_of_a_registered_split(prw, catalog):
    from detectron2.data import DatasetCatalog

    from tests.data.fixtures import write_prw_annotation

    name = catalog.track("rb_prw_changed")
    register_prw(name, prw, "train")
    DatasetCatalog.get(name)
    write_prw_annotation(prw, "c2s1_000200", [[77, 10, 10, 20, 30]])
    with pytest.raises(ValueError, match=r"person ids in .* changed") as e:
        DatasetCatalog.get(name)
    assert_names(str(e.value), [name, prw])


# --------------------------------------------------------------------------------------------
# JSON format
# --------------------------------------------------------------------------------------------
JSON_OK = {
    "images": [
        {"id": 1, "file_name": "a.jpg", "height": 60, "width": 80},
        {"id": 2, "file_name": "b.jpg"},  # size read from the header
    ],
    "annotations": [
        {"id": 10, "image_id": 1, "bbox": [1, 2, 10, 20], "person_id": 0},
        {"id": 11, "image_id": 2, "bbox": [5, 5, 10, 10], "person_id": -1},
    ],
    "queries": [{"image_id": 1, "bbox": [1, 2, 10, 20], "person_id": 0}],
}


@pytest.fixture
def json_root(tmp_path):
    write_jpeg(str(tmp_path / "img" / "a.jpg"), 60, 80)
    write_jpeg(str(tmp_path / "img" / "b.jpg"), 60, 80)
    return str(tmp_path / "img")


def _write_json(tmp_path, data=None, raw=None) -> str:
    path = str(tmp_path / "set.json")
    with open(path, "w" if raw is None or isinstance(raw, str) else "wb") as f:
        f.write(json.dumps(data) if raw is None else raw)
    return path


def _edit(fn):
    data = copy.deepcopy(JSON_OK)
    fn(data)
    return data


@pytest.mark.parametrize(
    "edit, where, message",
    [
        (lambda d: d.pop("images"), None, "missing top-level key 'images'"),
        (lambda d: d.__setitem__("annotations", {}), None, "'annotations' must be a list"),
        (lambda d: d["images"].append(3), "images[2]", "must be an object"),
        (lambda d: d["images"][1].pop("id"), "images[1]", "missing key 'id'"),
        (lambda d: d["images"][1].__setitem__("id", 1), "images[1] (id=1)", "duplicate image id"),
        (lambda d: d["images"][1].__setitem__("file_name", "a.jpg"), "images[1]", "duplicate"),
        (lambda d: d["images"][0].__setitem__("height", -60), "images[0] (id=1)", "positive"),
        (lambda d: d["images"][0].__setitem__("width", "80"), "images[0] (id=1)", "positive"),
        (lambda d: d["annotations"][1].__setitem__("image_id", 9), "annotations[1] (id=11)", "9"),
        (lambda d: d["annotations"][1].__setitem__("bbox", [1, 2, 3]), "annotations[1]", "4 fin"),
        (lambda d: d["annotations"][0].pop("bbox"), "annotations[0] (id=10)", "missing key 'bbox'"),
        (lambda d: d["annotations"][0].pop("person_id"), "annotations[0]", "'person_id'"),
        (lambda d: d["annotations"][0].__setitem__("person_id", 1.5), "annotations[0]", "integer"),
        (lambda d: d["annotations"][0].__setitem__("person_id", -3), "annotations[0]", ">= 0"),
        (lambda d: d["queries"][0].__setitem__("person_id", -1), "queries[0]", "labeled person"),
        (lambda d: d["queries"][0].__setitem__("bbox", [500, 500, 5, 5]), "queries[0]", "empty"),
        (lambda d: d["queries"][0].__setitem__("gallery_image_ids", [2, 77]), "queries[0]", "77"),
        (lambda d: d["queries"][0].__setitem__("gallery_image_ids", 2), "queries[0]", "a list"),
        (lambda d: d.__setitem__("categories", [{"id": "p"}]), "categories[0]", "integer"),
        (
            lambda d: d.update(categories=[{"id": 1}])
            or d["annotations"][0].update(category_id=[]),
            "annotations[0] (id=10)",
            "'category_id' [] is not listed in 'categories' (ids [1])",
        ),
        (lambda d: d["images"][1].__setitem__("file_name", "zz.jpg"), "images[1]", "zz.jpg"),
    ],
)
def test_json_bad_record_names_file_and_record(tmp_path, json_root, edit, where, message):
    path = _write_json(tmp_path, _edit(edit))
    with pytest.raises(DatasetFormatError) as e:
        load_person_search_json(path, json_root)
    assert_names(str(e.value), [path, message] + ([where] if where else []))


@pytest.mark.parametrize(
    "raw, message",
    [
        (json.dumps(JSON_OK)[:60], "not a valid JSON file"),
        ("", "not a valid JSON file"),
        (b"\xff\xfe\x00garbage", "not a valid JSON file"),
        ("[1, 2]", "the top level must be an object"),
        ('{"images": [{"id": 1, "file_name": "a.jpg", "bbox": NaN}', "not a valid JSON file"),
    ],
)
def test_json_corrupt_or_truncated_file(tmp_path, json_root, raw, message):
    path = _write_json(tmp_path, raw=raw)
    with pytest.raises(DatasetFormatError, match=message) as e:
        load_person_search_json(path, json_root)
    assert_names(str(e.value), [path])


def test_json_missing_file(tmp_path, json_root):
    path = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="JSON file not found") as e:
        load_person_search_json(path, json_root)
    assert_names(str(e.value), [path])


def test_json_corrupt_image_when_its_size_is_needed(tmp_path, json_root):
    damage_file(os.path.join(json_root, "b.jpg"), replace_with=b"\x89PNG broken")
    path = _write_json(tmp_path, JSON_OK)
    with pytest.raises(DatasetFormatError, match="Cannot read image") as e:
        load_person_search_json(path, json_root)
    assert_names(str(e.value), [path, "images[1] (id=2)", "b.jpg"])


def test_json_degenerate_and_outside_boxes_are_counted(tmp_path, json_root, caplog):
    def add(d):
        d["annotations"] += [
            {"image_id": 1, "bbox": [70, 50, 30, 30], "person_id": 1},  # clipped to the image
            {"image_id": 1, "bbox": [5, 5, 0, 10], "person_id": 2},  # zero width: dropped
            {"image_id": 1, "bbox": [500, 500, 10, 10], "person_id": -1},  # outside: dropped
        ]

    records = load_person_search_json(_write_json(tmp_path, _edit(add)), json_root)
    assert (
        "set.json annotations: 1 of 5 boxes were outside the image and clipped; 2 had zero or "
        "negative size and were dropped." in warnings_of(caplog)
    )
    assert sum(len(r["annotations"]) for r in records) == 3


# --------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------
def test_duplicate_registration_names_the_dataset(tmp_path, json_root, catalog):
    path = _write_json(tmp_path, JSON_OK)
    name = catalog.track("rb_dup_json")
    register_person_search_json(name, path, json_root)
    for again in (
        lambda: register_person_search_json(name, path, json_root),
        lambda: register_cuhk_sysu(name, str(tmp_path), "train"),
        lambda: register_prw(name, str(tmp_path), "test"),
        lambda: builtin.register_synthetic(name, str(tmp_path), "train"),
    ):
        with pytest.raises(ValueError, match=f"Dataset '{name}' is already registered"):
            again()


def test_builtin_names_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="'cuhk_sysu_train' is already registered"):
        register_cuhk_sysu("cuhk_sysu_train", "/x", "train")


def test_registered_split_with_missing_root_fails_on_use_naming_it(tmp_path, catalog):
    from detectron2.data import DatasetCatalog

    name = catalog.track("rb_cuhk_missing")
    root = str(tmp_path / "not-there")
    register_cuhk_sysu(name, root, "test")  # lazy: nothing is read yet
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get(name)
    assert_names(str(e.value), [root])


# --------------------------------------------------------------------------------------------
# Synthetic
# --------------------------------------------------------------------------------------------
def test_synthetic_unknown_split_fails_before_generating(tmp_path, catalog):
    root = str(tmp_path / "synthetic")
    with pytest.raises(ValueError, match=r"Unknown synthetic split 'val'"):
        builtin.register_synthetic(catalog.track("rb_syn_val"), root, "val")
    assert not os.path.exists(root)


@pytest.mark.parametrize(
    "params, error, message",
    [
        ({"num_imgs": 3}, TypeError, r"Unknown synthetic dataset parameter\(s\) \['num_imgs'\]"),
        ({"num_test_images": 1}, ValueError, ">= 3 test images"),
        ({"num_train_images": "ten"}, ValueError, "num_train_images must be a non-negative int"),
        ({"person_height": (50, 20)}, ValueError, r"person_height must be a range.*\[50, 20\]"),
        ({"person_height": 40}, ValueError, "person_height must be a range"),
        ({"image_width": ("a", "b")}, ValueError, "image_width must be a range"),
        ({"gallery_sizes": 50}, ValueError, "gallery_sizes must be a list"),
        ({"gallery_sizes": (500,)}, ValueError, "smaller than num_test_images"),
    ],
)
def test_synthetic_bad_parameters_name_the_parameter(tmp_path, params, error, message):
    root = str(tmp_path / "synthetic")
    with pytest.raises(error, match=message):
        ensure_synthetic_dataset(root, progress=False, **params)
    assert not os.path.exists(root)


def test_synthetic_root_that_is_a_file_is_left_alone(tmp_path):
    root = tmp_path / "synthetic"
    root.write_text("my notes")
    with pytest.raises(FileExistsError, match="is not a folder") as e:
        ensure_synthetic_dataset(str(root), progress=False)
    assert_names(str(e.value), [str(root)])
    assert root.read_text() == "my notes"
    assert sorted(os.listdir(tmp_path)) == [".synthetic.lock", "synthetic"]


def test_synthetic_root_with_other_files_is_left_alone(tmp_path):
    root = tmp_path / "synthetic"
    root.mkdir()
    (root / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match=f"not a synthetic dataset \\(no {INFO_FILE}\\)"):
        ensure_synthetic_dataset(str(root), progress=False)
    assert os.listdir(root) == ["keep.txt"]


# the registered synthetic splits only load: a missing or stale folder is an error that names it
# and the command that prepares it (python datasets/prepare_synthetic.py)
TINY_SYNTHETIC = dict(
    num_train_images=6, num_test_images=6, num_train_ids=4, num_test_ids=3, gallery_sizes=(4,)
)


def test_synthetic_split_with_a_missing_folder_names_it_and_the_command(tmp_path, catalog):
    from detectron2.data import DatasetCatalog

    root = str(tmp_path / "not-prepared")
    name = catalog.track("rb_syn_missing")
    builtin.register_synthetic(name, root, "test")
    with pytest.raises(SyntheticDatasetMissingError) as e:
        DatasetCatalog.get(name)
    assert isinstance(e.value, FileNotFoundError)
    assert_names(
        str(e.value), [root, "is missing", f"python datasets/prepare_synthetic.py --output {root}"]
    )
    assert not os.path.exists(root)  # nothing is generated


def test_synthetic_split_in_the_default_folder_names_the_plain_command(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    root = str(tmp_path / "synthetic")
    with pytest.raises(SyntheticDatasetMissingError) as e:
        check_synthetic_dataset(root)
    expected = "with:\n    python datasets/prepare_synthetic.py"
    assert f"{root} is missing" in str(e.value) and str(e.value).endswith(expected)


def test_synthetic_stale_or_foreign_folder_is_an_error_and_left_as_it_is(tmp_path):
    root = str(tmp_path / "synthetic")
    ensure_synthetic_dataset(root, progress=False, **TINY_SYNTHETIC)
    assert check_synthetic_dataset(root, **TINY_SYNTHETIC) == root
    before = sorted(os.listdir(root))
    # other parameters (the registered splits expect the default set)
    with pytest.raises(SyntheticDatasetMissingError, match="made with other generator parameters"):
        check_synthetic_dataset(root)
    # another generator version
    info_path = os.path.join(root, INFO_FILE)
    info = json.load(open(info_path))
    info["version"] = -1
    json.dump(info, open(info_path, "w"))
    with pytest.raises(SyntheticDatasetMissingError) as e:
        check_synthetic_dataset(root, **TINY_SYNTHETIC)
    assert_names(str(e.value), [root, "stale: made by generator version -1", "prepare_synthetic"])
    # not a synthetic set at all
    os.remove(info_path)
    with pytest.raises(SyntheticDatasetMissingError, match=f"no readable {INFO_FILE}"):
        check_synthetic_dataset(root, **TINY_SYNTHETIC)
    assert sorted(os.listdir(root)) == [n for n in before if n != INFO_FILE]
