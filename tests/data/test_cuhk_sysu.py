"""CUHK-SYSU loader on tiny trees written in the original MATLAB layouts."""

import functools
import logging
import os
import uuid

import numpy as np
import pytest
import scipy.io
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from personsearch.data.datasets import cuhk_sysu_writer as cw
from personsearch.data.datasets.common import DatasetFormatError
from personsearch.data.datasets.cuhk_sysu import (
    available_gallery_sizes,
    load_cuhk_sysu,
    load_cuhk_sysu_protocol,
    register_cuhk_sysu,
)
from tests.common import warning_messages
from tests.data.fixtures import CUHK_PROTOCOLS, summarize, write_jpeg, write_tiny_cuhk_sysu

LOGGER = "personsearch.data.datasets"


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_cuhk_sysu(str(tmp_path / "CUHK-SYSU"))


def _images_mat(root):
    return os.path.join(root, "annotation", "Images.mat")


def _train_mat(root):
    return os.path.join(root, cw.TEST_DIR, "Train.mat")


def _testg_mat(root, n):
    return os.path.join(root, cw.TEST_DIR, f"TestG{n}.mat")


# --------------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------------
def test_train_records(tiny, caplog):
    root = tiny["root"]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        records = load_cuhk_sysu(root, "train")
    # train = Images.mat minus pool, sorted by name as strings: s1, s10, s2
    assert summarize(records) == tiny["train"]["records"]
    for r in records:
        assert r["file_name"] == os.path.join(os.path.abspath(root), "Image", "SSM", r["image_id"])
        assert "queries" not in r and "camera_id" not in r
        for a in r["annotations"]:
            assert a["bbox_mode"] == BoxMode.XYXY_ABS and a["category_id"] == 0
            assert all(isinstance(v, float) for v in a["bbox"])
    warnings = warning_messages(caplog)
    assert any("dropped 1 boxes" in m and "Images.mat" in m for m in warnings), warnings
    assert any("1 of 5 boxes were outside the image and clipped" in m for m in warnings), warnings
    # the two Train.mat entries of identity 2 that cannot be tied to a box are reported
    assert any("1 entries name an image outside" in m and "s999.jpg" in m for m in warnings)
    assert any("1 entries match no annotation box" in m and "Train{2}" in m for m in warnings)


def test_test_records_and_queries(tiny, caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        records = load_cuhk_sysu(tiny["root"], "test")
    # pool order (s5, s3, s4, s6) is kept; s5's second box is labeled only in TestG100, which the
    # test split does not use, so it stays -1
    assert summarize(records) == tiny["test"]["records"]
    assert [r["image_id"] for r in records] == ["s5.jpg", "s3.jpg", "s4.jpg", "s6.jpg"]
    warnings = warning_messages(caplog)
    assert any("CUHK-SYSU test: dropped 1 boxes" in m for m in warnings), warnings
    assert not any("match no annotation box" in m for m in warnings), warnings


def test_test_pids_from_smallest_protocol_without_testg50(tmp_path):
    tiny = write_tiny_cuhk_sysu(str(tmp_path / "C"), gallery_sizes=(100,), subsets=False)
    records = {r["image_id"]: r for r in load_cuhk_sysu(tiny["root"], "test")}
    # TestG100 also lists s5's second box as a positive of query 1
    assert [a["person_id"] for a in records["s5.jpg"]["annotations"]] == [0, 1]
    assert [a["person_id"] for a in records["s3.jpg"]["annotations"]] == [0, 1]


def test_test_split_needs_a_protocol_file(tmp_path):
    root = write_tiny_cuhk_sysu(str(tmp_path / "C"), gallery_sizes=(), subsets=False)["root"]
    assert len(load_cuhk_sysu(root, "train")) == 3
    with pytest.raises(FileNotFoundError, match=r"TestG\{N\}\.mat"):
        load_cuhk_sysu(root, "test")


def test_mismatched_gallery_entry_is_logged(tiny, caplog):
    queries = [dict(q) for q in CUHK_PROTOCOLS[50]]
    queries[1]["gallery"] = [("s4.jpg", (0, 0, 11, 20)), ("s7.jpg", (1, 1, 2, 2))]
    cw.write_test_protocol_mat(tiny["root"], 50, queries)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        records = {r["image_id"]: r for r in load_cuhk_sysu(tiny["root"], "test")}
    assert [a["person_id"] for a in records["s4.jpg"]["annotations"]] == [-1]
    warnings = warning_messages(caplog)
    assert any(
        "1 entries match no annotation box" in m and "TestG50[1].Gallery[0]" in m for m in warnings
    )
    assert any("1 entries name an image outside" in m and "s7.jpg" in m for m in warnings)


def test_query_image_outside_pool(tiny):
    queries = [dict(q) for q in CUHK_PROTOCOLS[50]]
    queries[0]["query"] = ("s1.jpg", (2, 3, 10, 20))  # a train image
    cw.write_test_protocol_mat(tiny["root"], 50, queries)
    with pytest.raises(DatasetFormatError, match=r"TestG50\.mat.*TestG50\[0\].*s1\.jpg"):
        load_cuhk_sysu(tiny["root"], "test")


def test_query_box_outside_image(tiny):
    queries = [dict(q) for q in CUHK_PROTOCOLS[50]]
    queries[1]["query"] = ("s3.jpg", (200, 20, 10, 10))
    cw.write_test_protocol_mat(tiny["root"], 50, queries)
    with pytest.raises(DatasetFormatError, match=r"TestG50\[1\]\.Query\.idlocate.*s3\.jpg"):
        load_cuhk_sysu(tiny["root"], "test")


def test_squeezed_mat_files_give_the_same_records(tiny, monkeypatch):
    # squeeze_me turns 1x1 structs into 0-d arrays and 1x4 boxes into (4,): the parser copes
    monkeypatch.setattr(scipy.io, "loadmat", functools.partial(scipy.io.loadmat, squeeze_me=True))
    for split in ("train", "test"):
        assert summarize(load_cuhk_sysu(tiny["root"], split)) == tiny[split]["records"]
    assert load_cuhk_sysu_protocol(tiny["root"], 50) == tiny["protocols"][50]


def test_single_image_single_box_files(tmp_path):
    root = str(tmp_path / "C")
    write_jpeg(os.path.join(root, "Image", "SSM", "a.jpg"), 40, 50)
    write_jpeg(os.path.join(root, "Image", "SSM", "b.jpg"), 40, 50)
    cw.write_images_mat(root, [("a.jpg", [(1, 2, 3, 4)]), ("b.jpg", [(5, 6, 7, 8)])])
    cw.write_pool_mat(root, ["b.jpg"])
    cw.write_train_mat(root, [("p", [("a.jpg", (1, 2, 3, 4))])])
    cw.write_test_protocol_mat(root, 50, [{"query": ("b.jpg", (5, 6, 7, 8)), "gallery": []}])
    (train,) = load_cuhk_sysu(root, "train")
    assert train["annotations"][0]["bbox"] == [1.0, 2.0, 4.0, 6.0]
    assert train["annotations"][0]["person_id"] == 0
    (test,) = load_cuhk_sysu(root, "test")
    assert test["queries"] == [{"bbox": [5.0, 6.0, 12.0, 14.0], "person_id": 0, "query_index": 0}]
    assert load_cuhk_sysu_protocol(root, 50) == [
        {"query": {"image_id": "b.jpg", "bbox": [5.0, 6.0, 12.0, 14.0]}, "gallery": []}
    ]


# --------------------------------------------------------------------------------------------
# protocol files
# --------------------------------------------------------------------------------------------
def test_protocol_lists_keep_order_duplicates_and_empty_entries(tiny):
    root = tiny["root"]
    assert available_gallery_sizes(root) == [50, 100]
    g50 = load_cuhk_sysu_protocol(root, 50)
    assert g50 == tiny["protocols"][50]
    assert [g["image_id"] for g in g50[0]["gallery"]] == ["s3.jpg", "s4.jpg", "s6.jpg", "s4.jpg"]
    assert [g["bbox"] for g in g50[0]["gallery"]] == [[5.0, 5.0, 20.0, 35.0], None, None, None]
    assert load_cuhk_sysu_protocol(root) == tiny["protocols"][100]  # default gallery size 100
    assert load_cuhk_sysu_protocol(root, subset="resolution") == tiny["subsets"]["resolution"]
    assert load_cuhk_sysu_protocol(root, 4000, subset="Occlusion") == tiny["subsets"]["occlusion"]


def test_protocol_zero_by_zero_empty_idlocate(tiny):
    gallery = np.empty((1, 2), dtype=[("imname", object), ("idlocate", object), ("ishard", object)])
    gallery[0, 0] = (np.array(["s3.jpg"]), np.array([[5.0, 5.0, 15.0, 30.0]]), np.zeros((1, 1)))
    gallery[0, 1] = (np.array(["s6.jpg"]), np.zeros((0, 0)), np.zeros((1, 1)))
    query = np.empty((1, 1), dtype=[("imname", object), ("idlocate", object)])
    query[0, 0] = (np.array(["s5.jpg"]), np.array([[10.0, 10.0, 15.0, 30.0]]))
    item = np.empty((1, 1), dtype=[("Query", object), ("Gallery", object)])
    item[0, 0] = (query, gallery)
    scipy.io.savemat(_testg_mat(tiny["root"], 500), {"TestG500": item})
    assert load_cuhk_sysu_protocol(tiny["root"], 500) == [
        {
            "query": {"image_id": "s5.jpg", "bbox": [10.0, 10.0, 25.0, 40.0]},
            "gallery": [
                {"image_id": "s3.jpg", "bbox": [5.0, 5.0, 20.0, 35.0]},
                {"image_id": "s6.jpg", "bbox": None},
            ],
        }
    ]


def test_protocol_missing_file_lists_available_sizes(tiny):
    with pytest.raises(FileNotFoundError, match=r"TestG2000\.mat.*\[50, 100\]"):
        load_cuhk_sysu_protocol(tiny["root"], 2000)
    with pytest.raises(ValueError, match="resolution"):
        load_cuhk_sysu_protocol(tiny["root"], subset="blur")
    os.remove(os.path.join(tiny["root"], cw.SUBSET_DIR, "Occlusion.mat"))
    with pytest.raises(FileNotFoundError, match=r"Occlusion\.mat"):
        load_cuhk_sysu_protocol(tiny["root"], subset="occlusion")


def test_available_gallery_sizes_without_folder(tmp_path):
    assert available_gallery_sizes(str(tmp_path)) == []


def test_protocol_query_without_box(tiny):
    queries = [dict(q) for q in CUHK_PROTOCOLS[50]]
    queries[1]["query"] = ("s3.jpg", None)
    cw.write_test_protocol_mat(tiny["root"], 50, queries)
    with pytest.raises(DatasetFormatError, match=r"TestG50\.mat: TestG50\[1\]\.Query\.idlocate"):
        load_cuhk_sysu_protocol(tiny["root"], 50)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def test_unknown_split(tiny):
    with pytest.raises(ValueError, match=r"'val'.*\['train', 'test'\]"):
        load_cuhk_sysu(tiny["root"], "val")


def test_missing_root(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"nowhere.*datasets/README\.md"):
        load_cuhk_sysu(missing, "train")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_cuhk_sysu_protocol(missing, 50)


def test_missing_train_mat(tiny):
    os.remove(_train_mat(tiny["root"]))
    with pytest.raises(FileNotFoundError, match=r"Train\.mat"):
        load_cuhk_sysu(tiny["root"], "train")
    assert len(load_cuhk_sysu(tiny["root"], "test")) == 4  # the test split does not need it


def test_corrupt_mat_file(tiny):
    with open(_images_mat(tiny["root"]), "wb") as f:
        f.write(b"this is not a MATLAB file" * 20)
    with pytest.raises(DatasetFormatError, match=r"Images\.mat"):
        load_cuhk_sysu(tiny["root"], "train")


def test_truncated_mat_file(tiny):
    path = _train_mat(tiny["root"])
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DatasetFormatError, match=r"Train\.mat"):
        load_cuhk_sysu(tiny["root"], "train")


def test_wrong_variable_name(tiny):
    scipy.io.savemat(os.path.join(tiny["root"], "annotation", "pool.mat"), {"gallery": np.ones(3)})
    with pytest.raises(DatasetFormatError, match=r"pool\.mat.*'pool'.*\['gallery'\]"):
        load_cuhk_sysu(tiny["root"], "test")


def test_wrong_struct_field(tiny):
    img = np.empty((1, 1), dtype=[("name", object), ("box", object)])
    img[0, 0] = (np.array(["s1.jpg"]), np.zeros((1, 0)))
    scipy.io.savemat(_images_mat(tiny["root"]), {"Img": img})
    with pytest.raises(DatasetFormatError, match=r"Images\.mat: Img: struct has no field 'imname'"):
        load_cuhk_sysu(tiny["root"], "train")


def _edit_mat(path, key, edit):
    """Load a .mat variable, let ``edit`` change it in place, save it back."""
    value = scipy.io.loadmat(path)[key]
    edit(value)
    scipy.io.savemat(path, {key: value})


def test_wrong_box_shape(tiny):
    def edit(img):
        img[0, 2]["box"][0, 0]["idlocate"] = np.array([[4.0, 4.0, 8.0]])  # s2.jpg: 3 numbers

    _edit_mat(_images_mat(tiny["root"]), "Img", edit)
    with pytest.raises(
        DatasetFormatError, match=r"Images\.mat: Img\[2\] \(s2\.jpg\)\.box\[0\]\.idlocate"
    ):
        load_cuhk_sysu(tiny["root"], "train")


def test_string_where_a_box_belongs(tiny):
    def edit(train):
        train[0, 0][0, 0]["scene"][0, 0]["idlocate"] = np.array(["oops"])

    _edit_mat(_train_mat(tiny["root"]), "Train", edit)
    with pytest.raises(DatasetFormatError, match=r"Train\.mat: Train\{0\}\.scene\[0\]\.idlocate"):
        load_cuhk_sysu(tiny["root"], "train")


def test_pool_names_checked(tiny):
    cw.write_pool_mat(tiny["root"], ["s5.jpg", "s3.jpg", "s5.jpg"])
    with pytest.raises(DatasetFormatError, match=r"pool\.mat.*s5\.jpg.*twice"):
        load_cuhk_sysu(tiny["root"], "test")
    cw.write_pool_mat(tiny["root"], ["s5.jpg", "s77.jpg"])
    with pytest.raises(DatasetFormatError, match=r"pool\.mat.*s77\.jpg.*Images\.mat"):
        load_cuhk_sysu(tiny["root"], "train")


def test_missing_and_corrupt_image(tiny):
    image = os.path.join(tiny["root"], "Image", "SSM", "s10.jpg")
    with open(image, "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(ValueError, match=r"s10\.jpg"):
        load_cuhk_sysu(tiny["root"], "train")
    os.remove(image)
    with pytest.raises(FileNotFoundError, match=r"s10\.jpg"):
        load_cuhk_sysu(tiny["root"], "train")


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------
def test_register(tiny):
    name = f"cuhk_test_{uuid.uuid4().hex}"
    try:
        register_cuhk_sysu(name, tiny["root"], "test")
        assert summarize(DatasetCatalog.get(name)) == tiny["test"]["records"]
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["person"]
        assert meta.evaluator_type == "person_search"
        assert (meta.protocol, meta.root, meta.split) == ("cuhk_sysu", tiny["root"], "test")
        with pytest.raises(ValueError, match=f"{name}.*already registered"):
            register_cuhk_sysu(name, tiny["root"], "train")
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    with pytest.raises(ValueError, match="valid splits"):
        register_cuhk_sysu(name, tiny["root"], "gallery")
    assert name not in DatasetCatalog.list()


def test_register_with_conflicting_metadata(tiny):
    name = f"cuhk_test_{uuid.uuid4().hex}"
    MetadataCatalog.get(name).set(protocol="prw")
    try:
        with pytest.raises(ValueError, match=f"{name}.*different metadata"):
            register_cuhk_sysu(name, tiny["root"], "train")
        assert name not in DatasetCatalog.list()
    finally:
        MetadataCatalog.remove(name)
