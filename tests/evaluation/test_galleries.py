import numpy as np
import pytest

from personsearch.evaluation import (
    AllButQueryGalleries,
    cuhk_sysu_galleries,
    explicit_gallery,
    lowres_subset,
    map_protocol_queries,
    person_index,
)

from .toy import record

A = [0, 0, 20, 60]
B = [100, 0, 130, 90]


def _prw_records():
    return [
        record("c1_0.jpg", [(A, 7), (B, -1)], queries=[(A, 7, 0)], camera_id=1),
        record("c1_1.jpg", [(B, 7), (A, 7)], camera_id=1),  # pid 7 twice: the first box counts
        record("c2_0.jpg", [(A, 7)], camera_id=2),
        record("c2_1.jpg", [(B, 3)], camera_id=2),
    ]


def test_prw_same_camera_included_by_default():
    recs = _prw_records()
    gal = AllButQueryGalleries(4, [0], [7], person_index(recs), [r["camera_id"] for r in recs])
    spec = gal[0]
    assert spec.images.tolist() == [1, 2, 3]
    assert spec.gt_entries.tolist() == [0, 1] and spec.count_gt == 2
    np.testing.assert_array_equal(spec.gt_boxes, [B, A])


def test_prw_cross_camera_drops_the_query_camera():
    recs = _prw_records()
    cams = [r["camera_id"] for r in recs]
    spec = AllButQueryGalleries(4, [0], [7], person_index(recs), cams, cross_camera=True)[0]
    assert spec.images.tolist() == [2, 3]
    assert spec.gt_entries.tolist() == [0] and spec.gt_boxes.tolist() == [A]
    with pytest.raises(ValueError, match="camera_id"):
        AllButQueryGalleries(4, [0], [7], person_index(recs), [None] * 4, cross_camera=True)


def test_unlabeled_query_has_no_gt():
    recs = _prw_records()
    spec = AllButQueryGalleries(4, [0], [-1], person_index(recs))[0]
    assert spec.count_gt == 0 and spec.images.tolist() == [1, 2, 3]


def test_explicit_gallery_keeps_order_and_repeats():
    recs = _prw_records()
    index = {r["image_id"]: i for i, r in enumerate(recs)}
    spec = explicit_gallery(["c2_1.jpg", "c1_1.jpg", "c1_1.jpg"], 7, index, person_index(recs))
    assert spec.images.tolist() == [3, 1, 1]
    assert spec.gt_entries.tolist() == [1, 2] and spec.gt_boxes.tolist() == [B, B]
    with pytest.raises(ValueError, match="nope.jpg"):
        explicit_gallery(["nope.jpg"], 7, index, person_index(recs))


def test_cuhk_galleries_and_full_set_negatives():
    index = {f"s{i}.jpg": i for i in range(6)}
    protocol = [
        {
            "query": {"image_id": "s0.jpg", "bbox": A},
            "gallery": [
                {"image_id": "s2.jpg", "bbox": B},
                {"image_id": "s4.jpg", "bbox": None},
                {"image_id": "s2.jpg", "bbox": B},
            ],
        }
    ]
    spec = cuhk_sysu_galleries(protocol, index)[0]
    assert spec.images.tolist() == [2, 4, 2] and spec.gt_entries.tolist() == [0, 2]
    assert spec.negatives.tolist() == []
    full = cuhk_sysu_galleries(protocol, index, full_set=True)[0]
    # every other test image, dataset order, minus the entries and the query image
    assert full.negatives.tolist() == [1, 3, 5]
    protocol[0]["gallery"].append({"image_id": "unknown.jpg", "bbox": None})
    with pytest.raises(ValueError, match="unknown.jpg"):
        cuhk_sysu_galleries(protocol, index)


def test_map_protocol_queries():
    ids = ["a.jpg", "a.jpg", "b.jpg"]
    boxes = np.array([A, B, A], float)
    found = map_protocol_queries(
        [{"image_id": "b.jpg", "bbox": A}, {"image_id": "a.jpg", "bbox": [100, 0, 130, 90.0001]}],
        ids,
        boxes,
    )
    assert found.tolist() == [2, 1]
    with pytest.raises(ValueError, match=r"query #0 \(image 'b.jpg'"):
        map_protocol_queries([{"image_id": "b.jpg", "bbox": B}], ids, boxes, "Resolution")


def test_lowres_subset():
    heights = [100, 50, 50, 80, 200]
    boxes = np.array([[0, 0, 10, h] for h in heights], float)
    pos, thr = lowres_subset(boxes, [0, 1, 2, 3, 4], 0.4)  # round(2.0) = 2 smallest
    assert pos.tolist() == [1, 2] and thr == 50
    pos, thr = lowres_subset(boxes, [0, 1, 2, 3, 4], 0.2)  # tie at 50: lower query_index wins
    assert pos.tolist() == [1] and thr == 50
    pos, _ = lowres_subset(boxes, [0, 2, 1, 3, 4], 0.2)  # ... by query_index, not position
    assert pos.tolist() == [2]
    pos, thr = lowres_subset(boxes, [0, 1, 2, 3, 4], 0.5)  # 2.5 rounds half up to 3
    assert pos.tolist() == [1, 2, 3] and thr == 80
    with pytest.raises(ValueError, match="empty"):
        lowres_subset(boxes, [0, 1, 2, 3, 4], 0.05)


def test_map_protocol_queries_compares_clipped_boxes():
    # the dataset clipped a query box that sticks out of its 800 x 600 image
    found = map_protocol_queries(
        [{"image_id": "a.jpg", "bbox": [790, -3, 830, 100]}],
        ["a.jpg"],
        np.array([[790, 0, 800, 100]], float),
        image_sizes={"a.jpg": (600, 800)},
    )
    assert found.tolist() == [0]
    with pytest.raises(ValueError, match="matches no query"):
        map_protocol_queries(
            [{"image_id": "a.jpg", "bbox": [790, -3, 830, 100]}],
            ["a.jpg"],
            np.array([[790, 0, 800, 100]], float),
        )
