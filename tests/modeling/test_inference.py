"""Post-processing of the NAE-family heads and the exact CBGM query context."""

import torch
from detectron2.layers import batched_nms

from personsearch.modeling.roi_heads.inference import Candidates, person_detections, query_context


def test_person_detections_follow_the_reference_steps():
    boxes = torch.tensor(
        [
            [10.0, 10, 50, 90],  # kept
            [12, 11, 52, 92],  # suppressed by the first (IoU > 0.4)
            [-5, 20, 30, 200],  # clipped to the image
            [60, 10, 60.005, 80],  # narrower than 1e-2 after clipping: dropped
            [70, 10, 90, 60],  # score below the threshold
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.4])
    feats = torch.eye(5)
    inst, kept, cand = person_detections(boxes, scores, feats, (100, 120), 0.5, 0.4, 300)
    assert kept.tolist() == [0, 2]
    torch.testing.assert_close(inst.pred_boxes.tensor[1], torch.tensor([0.0, 20, 30, 100]))
    assert torch.equal(inst.reid_feats, feats[[0, 2]])
    assert len(cand.scores) == 3  # pre-NMS candidates: threshold and size filters applied
    inst, kept, _ = person_detections(boxes, scores, feats, (100, 120), 0.5, 0.4, 1)
    assert kept.tolist() == [0]


def test_query_context_equals_nms_with_the_forced_query_box():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(30, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 30 + torch.rand(30, 2, generator=g) * 60], 1)
    scores = torch.rand(30, generator=g) * 0.9
    feats = torch.nn.functional.normalize(torch.randn(30, 8, generator=g), dim=1)
    cand = Candidates(boxes, scores, feats, nms_thresh=0.5, topk=300)
    qbox, qfeat = boxes[3] + 2.0, torch.nn.functional.normalize(torch.randn(8, generator=g), dim=0)
    ctx = query_context(cand, qbox, qfeat, size=6)
    # the reference: append the query box at score 1, NMS, first K
    all_boxes = torch.cat([boxes, qbox[None]])
    all_scores = torch.cat([scores, torch.ones(1)])
    all_feats = torch.cat([feats, qfeat[None]])
    keep = batched_nms(all_boxes, all_scores, torch.zeros(31, dtype=torch.int64), 0.5)[:6]
    assert keep[0] == 30
    torch.testing.assert_close(ctx, all_feats[keep])
    assert query_context(cand, qbox, qfeat, size=1).shape == (1, 8)
    empty = Candidates(boxes[:0], scores[:0], feats[:0], 0.5, 300)
    torch.testing.assert_close(query_context(empty, qbox, qfeat, 3), qfeat[None])
