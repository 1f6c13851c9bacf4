"""Tests of the person-search JSON format: loading, saving, registration and every format error."""

import copy
import json
import logging
import os
import uuid

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personsearch.data.datasets.common import DatasetFormatError
from personsearch.data.datasets.json_format import (
    load_person_search_json,
    register_person_search_json,
)
from personsearch.data.datasets.json_writer import save_person_search_json
from tests.common import rounded_records

# (file_name, height, width); the second image's size is left out of the JSON on purpose
IMAGES = [("cam1/a.jpg", 48, 64), ("cam2/b.jpg", 60, 80), ("cam1/c.jpg", 48, 64)]


def tiny_json() -> dict:
    """A valid file: 3 images, 4 boxes (raw person ids 40, -1, 7, 40), 3 queries."""
    return {
        "info": {"description": "tiny"},
        "categories": [{"id": 1, "name": "person"}],
        "images": [
            {"id": 1, "file_name": "cam1/a.jpg", "height": 48, "width": 64, "camera_id": 1},
            {"id": 2, "file_name": "cam2/b.jpg", "camera_id": 2},
            {"id": 3, "file_name": "cam1/c.jpg", "height": 48, "width": 64, "camera_id": 1},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "bbox": [2, 3, 10, 20], "person_id": 40, "category_id": 1},
            {"id": 11, "image_id": 1, "bbox": [20, 5, 8, 30], "person_id": -1},
            {"id": 12, "image_id": 2, "bbox": [5, 5, 10, 40], "person_id": 7},
            {"id": 13, "image_id": 2, "bbox": [30.5, 10, 12, 45], "person_id": 40},
        ],
        "queries": [
            {"image_id": 1, "bbox": [2, 3, 10, 20], "person_id": 40, "gallery_image_ids": [2, 3]},
            {"image_id": 2, "bbox": [5, 5, 10, 40], "person_id": 7},
            {"image_id": 2, "bbox": [30.5, 10, 12, 45], "person_id": 99},
        ],
    }


@pytest.fixture
def image_root(tmp_path):
    root = tmp_path / "images"
    for name, h, w in IMAGES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((h, w, 3), 128, dtype=np.uint8))
    return str(root)


def write_json(tmp_path, data, name="data.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


@pytest.fixture
def registered_names():
    names = []
    yield names
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_load_records(tmp_path, image_root):
    json_file = write_json(tmp_path, tiny_json())
    records = load_person_search_json(json_file, image_root)
    assert [r["image_id"] for r in records] == ["cam1/a.jpg", "cam2/b.jpg", "cam1/c.jpg"]
    a, b, c = records
    assert a["file_name"] == os.path.join(image_root, "cam1/a.jpg")
    assert (a["height"], a["width"]) == (48, 64)
    assert (b["height"], b["width"]) == (60, 80)  # read from the image header
    assert [r["camera_id"] for r in records] == [1, 2, 1]
    assert a["annotations"][0] == {
        "bbox": [2.0, 3.0, 12.0, 23.0],
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": 0,
        "person_id": 1,
    }
    # raw ids 7 -> 0, 40 -> 1 (sorted); -1 stays unlabeled
    assert [x["person_id"] for x in a["annotations"]] == [1, -1]
    assert [x["person_id"] for x in b["annotations"]] == [0, 1]
    assert b["annotations"][1]["bbox"] == [30.5, 10.0, 42.5, 55.0]
    assert c["annotations"] == [] and "queries" not in c
    # queries: positions in the list; the query-only id 99 follows the annotation ids
    assert a["queries"] == [
        {
            "bbox": [2.0, 3.0, 12.0, 23.0],
            "person_id": 1,
            "query_index": 0,
            "gallery_image_ids": ["cam2/b.jpg", "cam1/c.jpg"],
        }
    ]
    assert b["queries"] == [
        {"bbox": [5.0, 5.0, 15.0, 45.0], "person_id": 0, "query_index": 1},
        {"bbox": [30.5, 10.0, 42.5, 55.0], "person_id": 2, "query_index": 2},
    ]


def test_minimal_file_without_optional_keys(tmp_path, image_root):
    data = {
        "images": [{"id": "x", "file_name": "cam1/a.jpg", "height": 48, "width": 64}],
        "annotations": [{"image_id": "x", "bbox": [0, 0, 5, 5], "person_id": 3}],
    }
    (record,) = load_person_search_json(write_json(tmp_path, data), image_root)
    assert record["annotations"][0]["person_id"] == 0
    assert "queries" not in record and "camera_id" not in record


def test_ids_of_dropped_boxes_leave_no_gap(tmp_path, image_root):
    data = tiny_json()
    data["queries"] = []
    data["annotations"][2]["bbox"] = [5, 5, 0, 40]  # raw id 7's only box: dropped
    records = load_person_search_json(write_json(tmp_path, data), image_root)
    assert [a["person_id"] for r in records for a in r["annotations"]] == [0, -1, 0]


def test_repeated_gallery_entries_are_kept_and_logged(tmp_path, image_root, caplog):
    data = tiny_json()
    data["queries"][0]["gallery_image_ids"] = [2, 3, 2]
    with caplog.at_level(logging.WARNING):
        records = load_person_search_json(write_json(tmp_path, data), image_root)
    assert records[0]["queries"][0]["gallery_image_ids"] == ["cam2/b.jpg", "cam1/c.jpg"] + [
        "cam2/b.jpg"
    ]
    assert "1 queries list an image more than once" in caplog.text


def test_boxes_clipped_and_dropped_are_counted(tmp_path, image_root, caplog):
    data = tiny_json()
    data["annotations"][0]["bbox"] = [-5, 3, 10, 100]  # clipped to [0, 3, 5, 48]
    data["annotations"].append({"image_id": 3, "bbox": [70, 3, 10, 10], "person_id": 1})  # outside
    with caplog.at_level(logging.WARNING):
        records = load_person_search_json(write_json(tmp_path, data), image_root)
    assert records[0]["annotations"][0]["bbox"] == [0.0, 3.0, 5.0, 48.0]
    assert records[2]["annotations"] == []
    assert "1 of 5 boxes were outside the image and clipped; 1 had zero" in caplog.text


# every bad input: (mutation, substrings the message must contain besides the file name)
def _set(path, value):
    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return data

    return mutate


_DELETE = object()

BAD_INPUTS = {
    "top level list": (lambda d: [d], ["top level must be an object"]),
    "missing images": (_set(["images"], _DELETE), ["missing top-level key 'images'"]),
    "missing annotations": (_set(["annotations"], _DELETE), ["'annotations'"]),
    "images not list": (_set(["images"], {"id": 1}), ["'images' must be a list"]),
    "image not object": (_set(["images", 1], 5), ["images[1]", "must be an object"]),
    "image without id": (_set(["images", 0, "id"], _DELETE), ["images[0]", "missing key 'id'"]),
    "duplicate image id": (
        _set(["images", 2, "id"], 1),
        ["images[2] (id=1)", "duplicate image id"],
    ),
    "duplicate file name": (
        _set(["images", 2, "file_name"], "cam1/a.jpg"),
        ["images[2] (id=3)", "duplicate file_name"],
    ),
    "missing file name": (_set(["images", 0, "file_name"], _DELETE), ["images[0] (id=1)"]),
    "zero height": (_set(["images", 0, "height"], 0), ["images[0] (id=1)", "'height'"]),
    "float width": (_set(["images", 0, "width"], 64.5), ["images[0] (id=1)", "'width'"]),
    "camera id string": (_set(["images", 0, "camera_id"], "c1"), ["images[0]", "camera_id"]),
    "unknown image id": (
        _set(["annotations", 1, "image_id"], 42),
        ["annotations[1] (id=11)", "42 is not the id of any image"],
    ),
    "annotation without image id": (
        _set(["annotations", 1, "image_id"], _DELETE),
        ["annotations[1] (id=11)", "'image_id'"],
    ),
    "bbox 3 numbers": (
        _set(["annotations", 2, "bbox"], [1, 2, 3]),
        ["annotations[2] (id=12)", "4 finite numbers"],
    ),
    "bbox strings": (
        _set(["annotations", 2, "bbox"], ["1", 2, 3, 4]),
        ["annotations[2] (id=12)", "bbox"],
    ),
    "bbox missing": (_set(["annotations", 0, "bbox"], _DELETE), ["annotations[0] (id=10)"]),
    "person id float": (
        _set(["annotations", 3, "person_id"], 40.5),
        ["annotations[3] (id=13)", "'person_id' must be an integer"],
    ),
    "person id string": (
        _set(["annotations", 3, "person_id"], "40"),
        ["annotations[3] (id=13)", "must be an integer"],
    ),
    "person id bool": (_set(["annotations", 3, "person_id"], True), ["annotations[3] (id=13)"]),
    "person id -2": (_set(["annotations", 3, "person_id"], -2), ["annotations[3]", "-1"]),
    "person id missing": (
        _set(["annotations", 3, "person_id"], _DELETE),
        ["annotations[3] (id=13)", "missing key 'person_id'"],
    ),
    "unknown category": (
        _set(["annotations", 0, "category_id"], 5),
        ["annotations[0] (id=10)", "category_id"],
    ),
    "query unknown image": (
        _set(["queries", 1, "image_id"], 9),
        ["queries[1]", "9 is not the id of any image"],
    ),
    "query bad bbox": (_set(["queries", 0, "bbox"], [1, 2]), ["queries[0]", "bbox"]),
    "query unlabeled": (_set(["queries", 1, "person_id"], -1), ["queries[1]", "labeled"]),
    "query non-integer pid": (_set(["queries", 1, "person_id"], 7.5), ["queries[1]", "integer"]),
    "gallery unknown id": (
        _set(["queries", 0, "gallery_image_ids"], [2, 8]),
        ["queries[0]", "gallery_image_ids[1] = 8"],
    ),
    "gallery not list": (_set(["queries", 0, "gallery_image_ids"], 2), ["queries[0]", "list"]),
    "empty query box": (
        _set(["queries", 0, "bbox"], [100, 100, 5, 5]),
        ["queries[0]", "empty once clipped"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_file_and_record(tmp_path, image_root, case):
    mutate, expected = BAD_INPUTS[case]
    json_file = write_json(tmp_path, mutate(tiny_json()))
    with pytest.raises(DatasetFormatError) as info:
        load_person_search_json(json_file, image_root)
    message = str(info.value)
    assert json_file in message
    for part in expected:
        assert part in message


def test_not_json(tmp_path, image_root):
    json_file = write_json(tmp_path, '{"images": [}')
    with pytest.raises(DatasetFormatError, match="not a valid JSON file") as info:
        load_person_search_json(json_file, image_root)
    assert json_file in str(info.value)


def test_missing_json_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_person_search_json(str(tmp_path / "nope.json"), str(tmp_path))


def test_missing_image_when_size_needed(tmp_path, image_root):
    os.remove(os.path.join(image_root, "cam2/b.jpg"))
    json_file = write_json(tmp_path, tiny_json())
    with pytest.raises(DatasetFormatError) as info:
        load_person_search_json(json_file, image_root)
    message = str(info.value)
    assert json_file in message and "images[1] (id=2)" in message and "b.jpg" in message


def test_unreadable_image_when_size_needed(tmp_path, image_root):
    with open(os.path.join(image_root, "cam2/b.jpg"), "w") as f:
        f.write("not an image")
    json_file = write_json(tmp_path, tiny_json())
    with pytest.raises(DatasetFormatError, match=r"images\[1\] \(id=2\)"):
        load_person_search_json(json_file, image_root)


def test_sizes_given_need_no_image_files(tmp_path):
    data = tiny_json()
    data["images"][1].update(height=60, width=80)
    records = load_person_search_json(write_json(tmp_path, data), str(tmp_path / "absent"))
    assert len(records) == 3


def test_round_trip(tmp_path, image_root):
    records = load_person_search_json(write_json(tmp_path, tiny_json()), image_root)
    out = str(tmp_path / "out" / "saved.json")
    save_person_search_json(records, out, image_root=image_root, info={"source_dataset": "tiny"})
    saved = json.loads(open(out).read())
    assert [im["file_name"] for im in saved["images"]] == ["cam1/a.jpg", "cam2/b.jpg", "cam1/c.jpg"]
    assert saved["info"]["source_dataset"] == "tiny"
    assert saved["queries"][0]["gallery_image_ids"] == [2, 3]
    assert rounded_records(load_person_search_json(out, image_root)) == rounded_records(records)


def test_save_without_image_root_keeps_paths(tmp_path, image_root):
    records = load_person_search_json(write_json(tmp_path, tiny_json()), image_root)
    out = str(tmp_path / "abs.json")
    save_person_search_json(records, out)
    reloaded = load_person_search_json(out, "/unused")
    assert [r["file_name"] for r in reloaded] == [r["file_name"] for r in records]


def test_save_rejects_inconsistent_records(tmp_path, image_root):
    records = load_person_search_json(write_json(tmp_path, tiny_json()), image_root)
    bad = copy.deepcopy(records)
    bad[0]["queries"][0]["gallery_image_ids"] = ["unknown.jpg"]
    with pytest.raises(ValueError, match="unknown.jpg"):
        save_person_search_json(bad, str(tmp_path / "x.json"))
    bad = copy.deepcopy(records)
    bad[1]["queries"][0]["query_index"] = 0
    with pytest.raises(ValueError, match="query_index"):
        save_person_search_json(bad, str(tmp_path / "x.json"))
    bad = copy.deepcopy(records)
    bad[2]["image_id"] = bad[0]["image_id"]
    with pytest.raises(ValueError, match="duplicate image_id"):
        save_person_search_json(bad, str(tmp_path / "x.json"))


_box = st.tuples(
    st.floats(0, 90, allow_nan=False),
    st.floats(0, 60, allow_nan=False),
    st.floats(1, 10, allow_nan=False),
    st.floats(1, 10, allow_nan=False),
).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])
_pid = st.integers(-1, 30)


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    # a loaded CI machine must not turn slow example generation into a failure
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.lists(st.lists(st.tuples(_box, _pid), max_size=4), min_size=1, max_size=4))
def test_round_trip_property(tmp_path, data):
    """Any records with contiguous ids survive save -> load, boxes within 1e-6."""
    raw = sorted({pid for boxes in data for _, pid in boxes if pid >= 0})
    remap = {pid: i for i, pid in enumerate(raw)}
    records = []
    for i, boxes in enumerate(data):
        anns = [
            {
                "bbox": box,
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": 0,
                "person_id": remap.get(pid, -1),
            }
            for box, pid in boxes
        ]
        records.append(
            {"file_name": f"/r/{i}.jpg", "image_id": f"{i}.jpg", "height": 100, "width": 120}
        )
        records[-1]["annotations"] = anns
    out = str(tmp_path / f"{uuid.uuid4().hex}.json")
    save_person_search_json(records, out, image_root="/r")
    reloaded = load_person_search_json(out, "/r")
    assert len(reloaded) == len(records)
    for a, b in zip(records, reloaded):
        assert a["image_id"] == b["image_id"] and a["file_name"] == b["file_name"]
        assert [x["person_id"] for x in a["annotations"]] == [
            x["person_id"] for x in b["annotations"]
        ]
        np.testing.assert_allclose(
            [x["bbox"] for x in a["annotations"]] or np.zeros((0, 4)),
            [x["bbox"] for x in b["annotations"]] or np.zeros((0, 4)),
            atol=1e-6,
        )


def test_register(tmp_path, image_root, registered_names):
    json_file = write_json(tmp_path, tiny_json())
    name = f"test_json_{uuid.uuid4().hex[:8]}"
    register_person_search_json(name, json_file, image_root)
    registered_names.append(name)
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == ["person"]
    assert meta.evaluator_type == "person_search"
    assert meta.protocol == "json"
    assert meta.json_file == json_file and meta.image_root == image_root
    records = DatasetCatalog.get(name)
    assert len(records) == 3 and records[1]["queries"][1]["person_id"] == 2

    with pytest.raises(ValueError, match=f"{name}.*already registered"):
        register_person_search_json(name, json_file, image_root)


def test_register_is_lazy_and_binds_arguments(tmp_path, image_root, registered_names):
    """Two registrations in a loop must not share the last loop variable."""
    names = []
    for n in range(2):
        data = tiny_json()
        data["images"] = data["images"][: n + 1]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] <= n + 1]
        data.pop("queries")
        json_file = write_json(tmp_path, data, name=f"d{n}.json")
        name = f"test_json_{uuid.uuid4().hex[:8]}"
        register_person_search_json(name, json_file, image_root)
        registered_names.append(name)
        names.append(name)
    assert [len(DatasetCatalog.get(n)) for n in names] == [1, 2]
