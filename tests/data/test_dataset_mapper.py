"""PersonSearchDatasetMapper: person ids and query boxes follow the boxes through augmentation."""

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from tests.common import tiny_cfg


@pytest.fixture
def record(tmp_path):
    path = tmp_path / "scene.jpg"
    cv2.imwrite(str(path), np.full((100, 200, 3), 127, np.uint8))

    def ann(box, pid):
        return {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "person_id": pid}

    return {
        "file_name": str(path),
        "image_id": "scene.jpg",
        "height": 100,
        "width": 200,
        "annotations": [
            ann([10, 10, 30, 90], 4),
            ann([50, 20, 50, 60], 7),  # zero width: removed together with its id
            ann([120, 5, 160, 95], -1),
        ],
        "queries": [{"bbox": [120.0, 5.0, 160.0, 95.0], "person_id": 9, "query_index": 3}],
    }


def mapper(is_train, augs, **kw):
    return PersonSearchDatasetMapper(is_train, augmentations=augs, image_format="RGB", **kw)


def test_train_flip_and_resize_keep_ids_aligned(record):
    m = mapper(True, [T.ResizeShortestEdge(50, 1000), T.RandomFlip(prob=1.0)])
    out = m(record)
    assert tuple(out["image"].shape) == (3, 50, 100)
    inst = out["instances"]
    # scaled by 0.5 then mirrored in a 100-px wide image: x -> 100 - x
    torch.testing.assert_close(
        inst.gt_boxes.tensor, torch.tensor([[85.0, 5, 95, 45], [20, 2.5, 40, 47.5]])
    )
    assert inst.gt_pids.tolist() == [4, -1]
    assert inst.gt_classes.tolist() == [0, 0]
    assert "annotations" not in out and "query_boxes" not in out  # no queries in training
    assert record["annotations"][0]["bbox"] == [10, 10, 30, 90]  # the record is not modified


def test_test_time_keeps_instances_and_transforms_query_boxes(record):
    m = mapper(False, [T.ResizeShortestEdge(200, 1000)])
    out = m(record)
    torch.testing.assert_close(out["query_boxes"].tensor, torch.tensor([[240.0, 10, 320, 190]]))
    assert out["queries"] == record["queries"]  # original-pixel boxes kept for the evaluator
    assert out["instances"].gt_pids.tolist() == [4, -1]
    assert out["height"] == 100 and out["width"] == 200


def test_from_config_uses_input_sizes_and_flip():
    m = PersonSearchDatasetMapper(tiny_cfg(), True)
    augs = m.augmentations.augs
    assert isinstance(augs[0], T.ResizeShortestEdge) and augs[0].short_edge_length == (96,)
    assert isinstance(augs[1], T.RandomFlip)
    assert not any(
        isinstance(a, T.RandomFlip)
        for a in PersonSearchDatasetMapper(tiny_cfg(), False).augmentations.augs
    )


def test_corrupt_image_fails_naming_the_file(record, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    record["file_name"] = str(bad)
    with pytest.raises(OSError, match="broken.jpg"):
        mapper(True, [])(record)
    with pytest.raises(OSError, match="broken.jpg"):  # never skipped at test time
        mapper(False, [], on_corrupt_image="skip")(record)


def test_corrupt_image_skip_is_counted_and_capped(record, tmp_path, caplog):
    m = mapper(True, [], on_corrupt_image="skip", max_corrupt_images=1)
    recs = []
    for i in range(2):
        bad = tmp_path / f"broken{i}.jpg"
        bad.write_bytes(b"garbage")
        recs.append(dict(record, file_name=str(bad)))
    assert m(recs[0]) is None
    assert "broken0.jpg" in caplog.text and "(1 so far)" in caplog.text
    assert m(recs[0]) is None  # the same file again is not counted twice
    with pytest.raises(RuntimeError, match="MAX_CORRUPT_IMAGES=1"):
        m(recs[1])


def test_missing_image_fails_naming_the_file(record):
    record["file_name"] = "/nonexistent/dir/img.jpg"
    with pytest.raises(OSError, match="/nonexistent/dir/img.jpg"):
        mapper(True, [])(record)


def test_invalid_corrupt_image_policy():
    with pytest.raises(ValueError, match="ON_CORRUPT_IMAGE"):
        mapper(True, [], on_corrupt_image="ignore")
