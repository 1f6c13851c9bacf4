"""The statistics behind tools/analyze_iou.py (personsearch.evaluation.iou_analysis) on
hand-made boxes; the tool end to end is tested in tests/tools/test_detection_tools.py."""

import math

import numpy as np
import pytest
import torch

from personsearch.evaluation import iou_analysis


def test_bin_statistics_on_hand_made_boxes():
    """Three people 50, 80 and 150 px tall in one image, one 500 px tall in an image without
    boxes, and an image with boxes but nobody; IoUs are exact in float32."""
    collector = iou_analysis.IoUCollector(["detections"])
    gt = torch.tensor([[0, 0, 10, 50], [100, 0, 120, 80], [200, 0, 250, 150]], dtype=torch.float)
    boxes = torch.tensor(
        [
            [0, 0, 10, 25],  # person 0, IoU 0.5: matched (>=)
            [0, 0, 10, 40],  # person 0, IoU 0.8
            [100, 0, 120, 60],  # person 1, IoU 0.75
            [200, 0, 250, 50],  # person 2, IoU 1/3: not matched
            [400, 400, 410, 410],  # nobody
        ],
        dtype=torch.float,
    )
    best, miou, mgt = iou_analysis.match_boxes(gt, boxes)
    torch.testing.assert_close(best, torch.tensor([0.8, 0.75, 1 / 3]))
    torch.testing.assert_close(miou, torch.tensor([0.5, 0.8, 0.75]))
    assert mgt.tolist() == [0, 0, 1]
    collector.add(gt, {"detections": boxes})
    collector.add(torch.tensor([[0.0, 0.0, 40.0, 500.0]]), {"detections": torch.zeros(0, 4)})
    collector.add(torch.zeros(0, 4), {"detections": boxes[:2]})
    s = collector.summary(iou_analysis.DEFAULT_EDGES)["detections"]
    assert s["num_boxes"] == 7 and s["boxes_per_image"] == pytest.approx(7 / 3)
    b = s["bins"]
    expected = {  # num_gt, num_recalled, mean best IoU, matched boxes, their mean IoU
        "all": (4, 2, (0.8 + 0.75 + 1 / 3) / 4, 3, (0.5 + 0.8 + 0.75) / 3),
        "[0,60)": (1, 1, 0.8, 2, 0.65),
        "[60,100)": (1, 1, 0.75, 1, 0.75),
        "[100,200)": (1, 0, 1 / 3, 0, None),
        "[200,400)": (0, 0, None, 0, None),
        ">=400": (1, 0, 0.0, 0, None),
    }
    assert list(b) == list(expected)
    for label, (n, r, mean_best, m, mean_m) in expected.items():
        got = b[label]
        assert (got["num_gt"], got["num_recalled"], got["num_matched_boxes"]) == (n, r, m), label
        assert got["recall"] == (pytest.approx(r / n) if n else None)
        assert got["mean_best_iou"] == (None if mean_best is None else pytest.approx(mean_best))
        assert got["mean_matched_iou"] == (None if mean_m is None else pytest.approx(mean_m))

    # other edges: people outside them count in "all" only
    arrays = collector.arrays("detections")
    custom = iou_analysis.bin_statistics(**arrays, edges=[60, 100, math.inf], iou_thresh=0.8)
    assert list(custom) == ["all", "[60,100)", ">=100"]
    assert custom["all"]["num_gt"] == 4 and custom["all"]["num_recalled"] == 1
    assert custom["[60,100)"]["num_gt"] == 1 and custom[">=100"]["num_gt"] == 2
    assert iou_analysis.bin_index(np.array([59.9, 60, 99.9, 100, 1e9]), [60, 100]).tolist() == [
        -1,
        0,
        0,
        -1,
        -1,
    ]
