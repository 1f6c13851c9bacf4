"""The application helpers behind tools/search.py's arguments: image sources of a folder or of a
registered split's records, and the queries of a split."""

import pytest

from personsearch.apps.search import (
    QuerySpec,
    dataset_query_specs,
    folder_image_source,
    records_image_source,
)


def test_folder_image_source(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.jpg", "sub/a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    root, images, skipped, source, cameras = folder_image_source(str(tmp_path), camera="cam1")
    assert root == str(tmp_path) and images == ["b.jpg", "sub/a.png"] and skipped == ["notes.txt"]
    assert source == {"kind": "images", "root": root, "camera": "cam1", "label": "cam1"}
    assert cameras == {}
    assert folder_image_source(str(tmp_path), exclude=[str(tmp_path / "sub")])[1] == ["b.jpg"]


def test_records_image_source(tmp_path):
    records = [
        {"file_name": str(tmp_path / "c1" / "x.jpg"), "camera_id": 1},
        {"file_name": str(tmp_path / "c2" / "y.jpg")},
    ]
    root, images, skipped, source, cameras = records_image_source(records, "split")
    assert root == str(tmp_path) and images == ["c1/x.jpg", "c2/y.jpg"] and skipped == []
    assert source == {"kind": "images", "root": root, "dataset": "split"}
    assert cameras == {"c1/x.jpg": "1"}
    with pytest.raises(ValueError, match="dataset 'empty' has no images"):
        records_image_source([], "empty")


def test_dataset_query_specs():
    records = [
        {"file_name": "a.jpg", "queries": [{"query_index": 3, "bbox": [1, 2, 3, 4]}]},
        {"file_name": "b.jpg"},
        {"file_name": "c.jpg", "queries": [{"query_index": 5, "bbox": [5, 6, 7, 8]}]},
    ]
    specs = dataset_query_specs("s", records, [5, 3])
    assert specs == [
        QuerySpec("c.jpg", [5, 6, 7, 8], "s_q5"),
        QuerySpec("a.jpg", [1, 2, 3, 4], "s_q3"),
    ]
    with pytest.raises(ValueError, match=r"s has no query 4 \(query indices 3\.\.5\)"):
        dataset_query_specs("s", records, [4])
    with pytest.raises(ValueError, match=r"query indices none"):
        dataset_query_specs("s", records[1:2], [0])
