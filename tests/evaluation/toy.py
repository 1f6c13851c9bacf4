"""Tiny hand-made datasets and a literal, loop-based re-statement of the reference protocol used as
an oracle for the vectorised implementation."""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import average_precision_score


def unit(*v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def record(image_id, persons=(), queries=(), camera_id=None, gallery_image_ids=None) -> Dict:
    """persons: [(bbox, person_id)]; queries: [(bbox, person_id, query_index)]."""
    r = {
        "file_name": f"/nonexistent/{image_id}",
        "image_id": image_id,
        "height": 600,
        "width": 800,
        "annotations": [
            {
                "bbox": list(map(float, b)),
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": 0,
                "person_id": int(p),
            }
            for b, p in persons
        ],
    }
    if queries:
        r["queries"] = [
            {"bbox": list(map(float, b)), "person_id": int(p), "query_index": int(qi)}
            for b, p, qi in queries
        ]
        if gallery_image_ids is not None:
            for q in r["queries"]:
                q["gallery_image_ids"] = list(gallery_image_ids)
    if camera_id is not None:
        r["camera_id"] = camera_id
    return r


def register(name: str, records: List[Dict], **metadata) -> None:
    """(Re-)register a temporary dataset."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(evaluator_type="person_search", **metadata)


def reference_search(
    dets: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]],
    query_feats: np.ndarray,
    galleries: Sequence[Tuple[List[Tuple[int, Optional[Sequence[float]]]], Sequence[int]]],
    det_thresh: float = 0.5,
    cws: bool = True,
    cbgm_k1: Optional[int] = None,
    contexts: Optional[Sequence[np.ndarray]] = None,
    topk=(1, 5, 10),
):
    """The reference protocol, written out literally with loops and dicts (OIM/NAE labelling, no
    dedupe; SeqNet CBGM with one similarity array per image).

    Returns:
        (aps (Q,) with NaN where count_gt == 0, hits (Q, K)).
    """

    def iou(a, b):
        x1, y1 = max(a[0], b[0]), max(a[1], b[1])
        x2, y2 = min(a[2], b[2]), min(a[3], b[3])
        inter = max(0, x2 - x1) * max(0, y2 - y1)
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter * 1.0 / union

    name_to = {}
    for i, (boxes, scores, feats) in enumerate(dets):
        keep = scores >= det_thresh
        if keep.any():
            f = feats[keep] * (scores[keep][:, None] if cws else 1.0)
            name_to[i] = (boxes[keep], f.astype(np.float32))
    aps, hits = [], []
    for qn, (entries, negatives) in enumerate(galleries):
        q = query_feats[qn]
        sim_of = {}
        order = []
        for img in [e[0] for e in entries] + list(negatives):
            if img in name_to and img not in sim_of:
                sim_of[img] = name_to[img][1] @ q
                order.append(img)
        if cbgm_k1 is not None and order:
            all_sims = np.concatenate([sim_of[i] for i in order])
            all_imgs = np.concatenate([[i] * len(sim_of[i]) for i in order])
            for img in set(all_imgs[np.argsort(all_sims)[-cbgm_k1:]].tolist()):
                w = contexts[qn].astype(np.float64) @ name_to[img][1].astype(np.float64).T
                rows, cols = linear_sum_assignment(w, maximize=True)
                for r, c in zip(rows, cols):
                    if r == 0:
                        sim_of[img][c] = w[rows, cols].max()
        y_true, y_score = [], []
        count_gt = count_tp = 0
        for img, gt in entries:
            count_gt += gt is not None
            if img not in name_to:
                continue
            sim = sim_of[img].copy()
            det = name_to[img][0]
            label = np.zeros(len(sim), dtype=np.int32)
            if gt is not None:
                w, h = gt[2] - gt[0], gt[3] - gt[1]
                thr = min(0.5, (w * h * 1.0) / ((w + 10) * (h + 10)))
                inds = np.argsort(sim)[::-1]
                sim, det = sim[inds], det[inds]
                for j, roi in enumerate(det):
                    if iou(roi, gt) >= thr:
                        label[j] = 1
                        count_tp += 1
                        break
            y_true.extend(label)
            y_score.extend(sim)
        for img in negatives:
            if img in name_to:
                y_true.extend([0] * len(sim_of[img]))
                y_score.extend(sim_of[img])
        if count_gt == 0:
            aps.append(np.nan)
        else:
            aps.append(
                0.0
                if count_tp == 0
                else average_precision_score(y_true, y_score) * count_tp / count_gt
            )
        y_true = np.asarray(y_true)
        inds = np.argsort(np.asarray(y_score))[::-1]
        hits.append([min(1, int(y_true[inds][:k].sum())) for k in topk])
    return np.array(aps), np.array(hits)


# ------------------------------------------------------------------------------------------------
# A 4-image PRW-style test split with hand-computed metrics (see test_scoring.py for the numbers).
# ------------------------------------------------------------------------------------------------
A = [0.0, 0.0, 20.0, 60.0]
B = [100.0, 0.0, 130.0, 90.0]
C = [300.0, 300.0, 340.0, 400.0]


def toy_split(gallery_lists: bool = False):
    """Records and per-image model outputs ``{image_id: (boxes, scores, feats, query_feats)}``."""
    records = [
        record("c1_a.jpg", [(A, 7), (B, -1)], queries=[(A, 7, 0)], camera_id=1),
        record("c1_b.jpg", [(A, 7)], camera_id=1),
        record("c2_a.jpg", [(B, 7), (A, 5)], camera_id=2),
        record("c2_b.jpg", [(A, 5)], queries=[(A, 5, 1)], camera_id=2),
    ]
    if gallery_lists:
        records[0]["queries"][0]["gallery_image_ids"] = ["c2_a.jpg", "c1_b.jpg", "c1_b.jpg"]
    outputs = {
        "c1_a.jpg": ([A, B], [0.9, 0.8], [unit(1, 0), unit(0, 1)], [unit(1, 0)]),
        "c1_b.jpg": ([A], [1.0], [unit(0.9, 0.436)], []),
        "c2_a.jpg": ([B, A], [1.0, 1.0], [unit(0.6, 0.8), unit(0.95, 0.312)], []),
        "c2_b.jpg": ([A, C], [0.7, 0.95], [unit(0, 1), unit(1, 1)], [unit(0, 1)]),
    }
    return records, outputs


def toy_results(records, outputs):
    from personsearch.evaluation import build_results

    gallery, queries = {}, []
    for r in records:
        boxes, scores, feats, qfeats = outputs[r["image_id"]]
        gallery[r["image_id"]] = {
            "boxes": np.array(boxes, np.float32).reshape(-1, 4),
            "scores": np.array(scores, np.float32),
            "feats": np.array(feats, np.float32).reshape(len(boxes), -1),
        }
        for q, f in zip(r.get("queries", []), qfeats):
            queries.append({**q, "image_id": r["image_id"], "feat": f})
    return build_results("toy", gallery, queries)


def toy_model_io(records, outputs, image_ids=None):
    """(inputs, outputs) batches as the test loader and the model would give them."""
    import torch
    from detectron2.structures import Boxes, Instances

    inputs, outs = [], []
    for r in records:
        if image_ids is not None and r["image_id"] not in image_ids:
            continue
        boxes, scores, feats, qfeats = outputs[r["image_id"]]
        inst = Instances((r["height"], r["width"]))
        inst.pred_boxes = Boxes(torch.tensor(np.array(boxes, np.float32).reshape(-1, 4)))
        inst.scores = torch.tensor(np.array(scores, np.float32))
        inst.pred_classes = torch.zeros(len(boxes), dtype=torch.int64)
        inst.reid_feats = torch.tensor(np.array(feats, np.float32).reshape(len(boxes), -1))
        inp = {k: r[k] for k in ("file_name", "image_id", "height", "width")}
        if r.get("queries"):
            inp["queries"] = [dict(q) for q in r["queries"]]
        inputs.append(inp)
        outs.append({"instances": inst, "query_feats": torch.tensor(np.array(qfeats, np.float32))})
    return inputs, outs
