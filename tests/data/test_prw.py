"""PRW loader on tiny trees written in the original file formats."""

import functools
import logging
import os
import uuid

import numpy as np
import pytest
import scipy.io
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from personsearch.data.datasets.common import DatasetFormatError
from personsearch.data.datasets.prw import (
    load_prw,
    prw_box_to_xyxy,
    prw_raw_person_ids,
    register_prw,
)
from tests.common import warning_messages
from tests.data.fixtures import (
    PRW_QUERY_LINES,
    summarize,
    write_prw_annotation,
    write_prw_queries,
    write_prw_split,
    write_tiny_prw,
)

LOGGER = "personsearch.data.datasets"


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_prw(str(tmp_path / "PRW-v16.04.20"))


def _annotation(root, name):
    return os.path.join(root, "annotations", name + ".jpg.mat")


# --------------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------------
def test_train_records(tiny, caplog):
    root = tiny["root"]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        records = load_prw(root, "train")
    # frame_train.mat order; raw ids 1, 5, 932 -> 0, 1, 2; -2 -> -1; anno_file key read; the
    # negative x is clipped after the conversion (x2 = trunc(-3.5 + 20) = 16)
    assert summarize(records) == tiny["train"]["records"]
    for r in records:
        assert r["file_name"] == os.path.join(os.path.abspath(root), "frames", r["image_id"])
        assert "queries" not in r
        for a in r["annotations"]:
            assert a["bbox_mode"] == BoxMode.XYXY_ABS and a["category_id"] == 0
    assert prw_raw_person_ids(root, "train") == [1, 5, 932]
    warnings = warning_messages(caplog)
    assert any(
        "PRW train: 1 of 6 boxes were outside the image and clipped; 1 had zero" in m
        for m in warnings
    ), warnings


@pytest.mark.parametrize("line_ending", ["\r\n", "\n"])
def test_test_records_and_queries(tmp_path, line_ending, caplog):
    tiny = write_tiny_prw(str(tmp_path / "PRW"), line_ending=line_ending)
    with open(os.path.join(tiny["root"], "query_info.txt"), "rb") as f:
        assert f.read().count(b"\r\n") == (4 if line_ending == "\r\n" else 0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        records = load_prw(tiny["root"], "test")
    # raw ids 7, 605 (annotations) and 800 (query only) -> 0, 1, 2; query 0's negative x is
    # clipped to 0 and its coordinates truncated; the blank line does not count as a query
    assert summarize(records) == tiny["test"]["records"]
    assert [r["camera_id"] for r in records] == [3, 6, 1]
    assert prw_raw_person_ids(tiny["root"], "test") == [7, 605, 800]
    assert warning_messages(caplog) == []


def test_box_conversion_clips_after_converting():
    boxes = prw_box_to_xyxy(
        np.array([[-3.5, 2.0, 20.0, 30.0], [-1.703, 20.5756, 20.6436, 30.2289]])
    )
    # clipping x before converting would give x2 = 20 for the first box
    np.testing.assert_array_equal(boxes, [[0, 2, 16, 32], [0, 20, 18, 50]])


def test_box_new_takes_precedence(tiny):
    path = _annotation(tiny["root"], "c2s1_000200")
    scipy.io.savemat(
        path,
        {
            "anno_previous": np.array([[9.0, 1, 1, 5, 5]]),
            "box_new": np.array([[5.0, 1, 2, 3, 4]]),
            "anno_file": np.array([[8.0, 1, 1, 5, 5]]),
        },
    )
    record = load_prw(tiny["root"], "train")[0]
    assert [a["bbox"] for a in record["annotations"]] == [[1.0, 2.0, 4.0, 6.0]]
    assert prw_raw_person_ids(tiny["root"], "train") == [1, 5, 932]


def test_other_negative_ids_are_unlabeled_and_counted(tiny, caplog):
    write_prw_annotation(tiny["root"], "c2s1_000200", [[-1, 1, 1, 5, 5], [-7, 2, 2, 5, 5]])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        record = load_prw(tiny["root"], "train")[0]
    assert [a["person_id"] for a in record["annotations"]] == [-1, -1]
    assert prw_raw_person_ids(tiny["root"], "train") == [1, 932]
    assert any(
        "2 boxes have a negative person id other than -2" in m for m in warning_messages(caplog)
    )


def test_single_row_and_squeezed_annotations(tiny, monkeypatch):
    write_prw_annotation(tiny["root"], "c2s1_000200", [[5, 10, 10, 20, 30]])
    monkeypatch.setattr(scipy.io, "loadmat", functools.partial(scipy.io.loadmat, squeeze_me=True))
    record = load_prw(tiny["root"], "train")[0]
    assert [a["bbox"] for a in record["annotations"]] == [[10.0, 10.0, 30.0, 40.0]]
    assert summarize(load_prw(tiny["root"], "test")) == tiny["test"]["records"]


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def test_unknown_split_and_missing_root(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"'query'.*\['train', 'test'\]"):
        load_prw(tiny["root"], "query")
    with pytest.raises(FileNotFoundError, match=r"nowhere.*datasets/README\.md"):
        load_prw(str(tmp_path / "nowhere"), "train")


def test_missing_files(tiny):
    root = tiny["root"]
    os.remove(os.path.join(root, "query_info.txt"))
    assert len(load_prw(root, "train")) == 2  # train does not need the queries
    with pytest.raises(FileNotFoundError, match=r"query_info\.txt"):
        load_prw(root, "test")
    os.remove(_annotation(root, "c1s1_000151"))
    with pytest.raises(FileNotFoundError, match=r"c1s1_000151\.jpg\.mat"):
        load_prw(root, "train")
    os.remove(os.path.join(root, "frame_train.mat"))
    with pytest.raises(FileNotFoundError, match=r"frame_train\.mat"):
        load_prw(root, "train")


def test_missing_and_corrupt_image(tiny):
    image = os.path.join(tiny["root"], "frames", "c6s1_000010.jpg")
    with open(image, "wb") as f:
        f.write(b"\xff\xd8 broken")
    with pytest.raises(ValueError, match=r"c6s1_000010\.jpg"):
        load_prw(tiny["root"], "test")
    os.remove(image)
    with pytest.raises(FileNotFoundError, match=r"c6s1_000010\.jpg"):
        load_prw(tiny["root"], "test")


def test_corrupt_split_file(tiny):
    with open(os.path.join(tiny["root"], "frame_test.mat"), "wb") as f:
        f.write(os.urandom(300))
    with pytest.raises(DatasetFormatError, match=r"frame_test\.mat"):
        load_prw(tiny["root"], "test")


def test_wrong_split_key_and_content(tiny):
    path = os.path.join(tiny["root"], "frame_train.mat")
    scipy.io.savemat(path, {"img_index_test": np.array([["c1s1_000151"]], dtype=object)})
    with pytest.raises(DatasetFormatError, match=r"frame_train\.mat.*'img_index_train'"):
        load_prw(tiny["root"], "train")
    scipy.io.savemat(path, {"img_index_train": np.ones((2, 1))})
    with pytest.raises(DatasetFormatError, match=r"frame_train\.mat: img_index_train.*strings"):
        load_prw(tiny["root"], "train")
    write_prw_split(tiny["root"], "train", ["c2s1_000200", "x1s1_000151"])
    with pytest.raises(DatasetFormatError, match=r"frame_train\.mat.*x1s1_000151.*camera"):
        load_prw(tiny["root"], "train")
    write_prw_split(tiny["root"], "train", ["c2s1_000200", "c2s1_000200"])
    with pytest.raises(DatasetFormatError, match=r"frame_train\.mat.*c2s1_000200.*twice"):
        load_prw(tiny["root"], "train")


def test_annotation_without_known_key(tiny):
    path = _annotation(tiny["root"], "c2s1_000200")
    scipy.io.savemat(path, {"boxes": np.ones((1, 5))})
    with pytest.raises(DatasetFormatError, match=r"c2s1_000200\.jpg\.mat.*'box_new'.*\['boxes'\]"):
        load_prw(tiny["root"], "train")


@pytest.mark.parametrize("shape", [(2, 4), (3, 6), (1, 5, 2)])
def test_annotation_wrong_shape(tiny, shape):
    path = _annotation(tiny["root"], "c1s1_000151")
    scipy.io.savemat(path, {"anno_file": np.ones(shape)})
    with pytest.raises(DatasetFormatError, match=r"c1s1_000151\.jpg\.mat: anno_file.*N x 5"):
        load_prw(tiny["root"], "train")


def test_annotation_bad_values(tiny):
    path = _annotation(tiny["root"], "c1s1_000151")
    scipy.io.savemat(path, {"box_new": np.array([[1.5, 1, 1, 5, 5]])})
    with pytest.raises(DatasetFormatError, match=r"c1s1_000151\.jpg\.mat: box_new.*integers"):
        load_prw(tiny["root"], "train")
    scipy.io.savemat(path, {"box_new": np.array([[1, np.nan, 1, 5, 5]])})
    with pytest.raises(DatasetFormatError, match=r"c1s1_000151\.jpg\.mat: box_new.*non-finite"):
        load_prw(tiny["root"], "train")
    scipy.io.savemat(path, {"box_new": np.array(["1 2 3 4 5"])})
    with pytest.raises(DatasetFormatError, match=r"c1s1_000151\.jpg\.mat: box_new.*N x 5"):
        load_prw(tiny["root"], "train")


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ("7 5 6 10 c6s1_000010", "expected 6 fields, got 5"),
        ("7 5 6 10 12 c6s1_000010 extra", "expected 6 fields, got 7"),
        ("7 5 six 10 12 c6s1_000010", "could not convert"),
        ("-2 5 6 10 12 c6s1_000010", "not a labeled"),
        ("7.5 5 6 10 12 c6s1_000010", "not a labeled"),
        ("7 5 nan 10 12 c6s1_000010", "non-finite"),
    ],
)
def test_malformed_query_line(tiny, bad_line, reason):
    lines = PRW_QUERY_LINES[:2] + [bad_line] + PRW_QUERY_LINES[2:]
    write_prw_queries(tiny["root"], lines, "\r\n")
    with pytest.raises(DatasetFormatError, match=rf"query_info\.txt, line 3.*{reason}"):
        load_prw(tiny["root"], "test")


def test_query_image_outside_test_split(tiny):
    write_prw_queries(tiny["root"], PRW_QUERY_LINES + ["5 1 1 5 5 c2s1_000200"], "\n")
    with pytest.raises(DatasetFormatError, match=r"line 5.*'c2s1_000200\.jpg'.*test split"):
        load_prw(tiny["root"], "test")


def test_query_box_outside_image(tiny):
    write_prw_queries(tiny["root"], ["7 130 6 10 12 c6s1_000010"], "\n")
    with pytest.raises(DatasetFormatError, match=r"query_info\.txt, line 1.*c6s1_000010\.jpg"):
        load_prw(tiny["root"], "test")


def test_query_file_not_utf8(tiny):
    with open(os.path.join(tiny["root"], "query_info.txt"), "wb") as f:
        f.write(b"7 5 6 10 12 c6s1_\xff\xfe\n")
    with pytest.raises(DatasetFormatError, match=r"query_info\.txt.*UTF-8"):
        load_prw(tiny["root"], "test")


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------
def test_register_sets_raw_ids_on_load(tiny):
    name = f"prw_test_{uuid.uuid4().hex}"
    try:
        register_prw(name, tiny["root"], "train")
        meta = MetadataCatalog.get(name)
        assert (meta.protocol, meta.root, meta.split) == ("prw", tiny["root"], "train")
        assert meta.evaluator_type == "person_search" and meta.thing_classes == ["person"]
        assert not hasattr(meta, "raw_person_ids")  # records (and ids) are loaded lazily
        assert summarize(DatasetCatalog.get(name)) == tiny["train"]["records"]
        assert meta.raw_person_ids == [1, 5, 932]
        assert len(DatasetCatalog.get(name)) == 2  # loading twice is fine
        write_prw_annotation(tiny["root"], "c2s1_000200", [[6, 10, 10, 20, 30]])
        with pytest.raises(ValueError, match=f"{name}.*changed"):
            DatasetCatalog.get(name)
        with pytest.raises(ValueError, match=f"{name}.*already registered"):
            register_prw(name, tiny["root"], "train")
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    with pytest.raises(ValueError, match="valid splits"):
        register_prw(name, tiny["root"], "all")
