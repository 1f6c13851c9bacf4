"""Bad inputs to PersonSearchDatasetMapper: unreadable images (fail vs skip), size mismatches,
records that are not person-search records."""

import copy
import os

import numpy as np
import pytest
from detectron2.data import transforms as T
from detectron2.data.detection_utils import SizeMismatchError
from detectron2.structures import BoxMode
from PIL import Image

from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from tests.common import tiny_cfg

from .helpers import assert_names, damage_file, warnings_of


def _mapper(is_train, **kw):
    return PersonSearchDatasetMapper(
        is_train, augmentations=[T.ResizeShortestEdge(64, 128)], image_format="RGB", **kw
    )


@pytest.fixture
def record(tmp_path):
    path = str(tmp_path / "scene.jpg")
    rng = np.random.default_rng(0)  # noisy content: a large file whose header survives truncation
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path, quality=95)
    return {
        "file_name": path,
        "image_id": "scene.jpg",
        "height": 120,
        "width": 160,
        "annotations": [
            {"bbox": [10, 10, 40, 100], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0,
             "person_id": 2},
        ],
        "queries": [{"bbox": [10.0, 10.0, 40.0, 100.0], "person_id": 2, "query_index": 0}],
    }  # fmt: skip


@pytest.mark.parametrize("damage", ["missing", "garbage", "empty", "truncated"])
@pytest.mark.parametrize("is_train, policy", [(True, "fail"), (False, "fail"), (False, "skip")])
def test_unreadable_image_fails_naming_the_file(record, damage, is_train, policy):
    path = record["file_name"]
    if damage == "missing":
        os.remove(path)
    elif damage == "truncated":  # the header survives: only decoding the pixels fails
        damage_file(path, keep_fraction=0.6)
    else:
        damage_file(path, replace_with=b"" if damage == "empty" else b"\x00garbage" * 10)
    with pytest.raises(OSError, match="Cannot read image") as e:
        _mapper(is_train, on_corrupt_image=policy)(record)
    assert_names(str(e.value), [path])
    if not is_train or policy == "fail":
        assert "DATALOADER.ON_CORRUPT_IMAGE skip" in str(e.value)


def test_skip_policy_drops_logs_counts_and_caps(record, tmp_path, caplog):
    mapper = _mapper(True, on_corrupt_image="skip", max_corrupt_images=2)
    bad = []
    for i in range(3):
        r = copy.deepcopy(record)
        r["file_name"] = str(tmp_path / f"bad{i}.jpg")
        with open(r["file_name"], "wb") as f:
            f.write(b"not an image")
        bad.append(r)
    assert mapper(bad[0]) is None
    assert mapper(bad[0]) is None  # the same file again is not counted twice
    assert mapper(bad[1]) is None
    logged = warnings_of(caplog)
    assert f"Skipping unreadable training image '{bad[0]['file_name']}' (1 so far)" in logged
    assert f"'{bad[1]['file_name']}' (2 so far)" in logged
    assert mapper(record) is not None  # readable images still map
    with pytest.raises(RuntimeError, match=r"3 training images could not be read") as e:
        mapper(bad[2])
    assert_names(str(e.value), ["DATALOADER.MAX_CORRUPT_IMAGES=2", bad[2]["file_name"]])


@pytest.mark.parametrize("is_train", [True, False])
def test_image_size_different_from_the_record(record, is_train):
    wrong = dict(record, height=240, width=320)
    with pytest.raises(SizeMismatchError, match="Mismatched image shape") as e:
        _mapper(is_train)(wrong)
    assert_names(str(e.value), [record["file_name"], "(160, 120)", "(320, 240)"])
    assert isinstance(e.value, ValueError)


def test_annotation_without_person_id(record):
    plain = copy.deepcopy(record)
    plain["annotations"].append({"bbox": [50, 10, 80, 90], "bbox_mode": BoxMode.XYXY_ABS})
    with pytest.raises(KeyError, match=r"annotations\[1\] has no 'person_id'") as e:
        _mapper(True)(plain)
    assert_names(str(e.value), ["'scene.jpg'", "-1 = unlabeled"])


def test_unknown_corrupt_image_policy_names_the_key():
    with pytest.raises(ValueError, match="DATALOADER.ON_CORRUPT_IMAGE must be 'fail' or 'skip'"):
        PersonSearchDatasetMapper(tiny_cfg(opts=["DATALOADER.ON_CORRUPT_IMAGE", "ignore"]), True)
