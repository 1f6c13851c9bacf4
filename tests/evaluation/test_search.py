import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from personsearch.evaluation import GallerySpec, PackedDetections, evaluate_search
from personsearch.evaluation.boxes import adaptive_iou_threshold, pairwise_iou_numpy
from personsearch.evaluation.ranking import recall_scaled_ap, top_k_descending

from .toy import reference_search, unit

BIG = [0.0, 0.0, 100.0, 200.0]  # a 100 x 200 GT box: IoU threshold 0.5


def pack(images, dim=2):
    """images: list of [(box, score, feat), ...] per image."""
    return PackedDetections.from_per_image(
        [f"im{i}" for i in range(len(images))],
        [np.array([d[0] for d in im], np.float64).reshape(-1, 4) for im in images],
        [np.array([d[1] for d in im], np.float32) for im in images],
        [np.array([d[2] for d in im], np.float32).reshape(-1, dim) for im in images],
        dim,
    )


def run(images, galleries, queries=None, **kw):
    queries = np.array(
        queries if queries is not None else [[1.0, 0.0]] * len(galleries), np.float32
    )
    return evaluate_search(pack(images, queries.shape[1]), queries, galleries, **kw)


def test_iou_and_adaptive_threshold():
    assert pairwise_iou_numpy([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    assert pairwise_iou_numpy([[0, 0, 10, 10]], [[20, 20, 30, 30]])[0, 0] == 0.0
    # w=10, h=20: 200 / (20 * 30) = 1/3; big boxes are capped at 0.5
    assert adaptive_iou_threshold([0, 0, 10, 20]) == pytest.approx(1 / 3)
    assert adaptive_iou_threshold(BIG) == 0.5


def test_one_true_positive_per_image_and_recall_scaling():
    images = [
        # GT image: two detections overlap the GT; only the higher-similarity one is positive
        [(BIG, 1.0, unit(0.6, 0.8)), ([2, 2, 100, 200], 1.0, unit(0.8, 0.6))],
        [([300, 0, 400, 200], 1.0, unit(0.7, 0.714))],  # negative image, sim ~0.7
        [],  # GT image without any detection: counts in count_gt only
    ]
    spec = GallerySpec.from_entries([(0, BIG), (1, None), (2, BIG)])
    res = run(images, [spec], cws=False)
    # labels/sims: 0.8 (pos), 0.6 (neg), 0.7 (neg) -> sklearn AP 1.0, times recall 1/2
    assert res.count_gt[0] == 2 and res.count_tp[0] == 1
    assert res.ap[0] == pytest.approx(0.5)
    assert res.hits[0].tolist() == [1, 1, 1]


def test_adaptive_threshold_accepts_low_iou_on_small_box():
    small_gt = [0.0, 0.0, 10.0, 20.0]  # threshold 1/3
    det = ([0.0, 0.0, 10.0, 8.0], 1.0, unit(1, 0))  # IoU 80 / 200 = 0.4
    res_small = run([[det]], [GallerySpec.from_entries([(0, small_gt)])])
    assert res_small.count_tp[0] == 1 and res_small.ap[0] == pytest.approx(1.0)
    # same IoU (0.4) against a large box (threshold 0.5) is not a match
    big_det = ([0.0, 0.0, 100.0, 80.0], 1.0, unit(1, 0))
    res_big = run([[big_det]], [GallerySpec.from_entries([(0, [0, 0, 100, 200])])])
    assert pairwise_iou_numpy([big_det[0]], [[0, 0, 100, 200]])[0, 0] == pytest.approx(0.4)
    assert res_big.count_tp[0] == 0 and res_big.ap[0] == 0.0


def test_topk():
    # 7 negatives with sims above the positive: the positive is 8th -> top1/top5 miss, top10 hit
    negs = [([300 + 10 * i, 0, 305 + 10 * i, 50], 1.0, unit(1.0, 0.1 + 0.01 * i)) for i in range(7)]
    images = [[(BIG, 1.0, unit(1.0, 0.5))], negs]
    res = run(images, [GallerySpec.from_entries([(0, BIG), (1, None)])], cws=False)
    assert res.hits[0].tolist() == [0, 0, 1]
    assert res.ap[0] == pytest.approx(1 / 8)


def test_cws_changes_the_ranking():
    images = [
        [(BIG, 0.6, unit(0.8, 0.6))],  # the person, sim 0.8, score 0.6 -> 0.48 with CWS
        [([300, 0, 400, 200], 1.0, unit(0.7, 0.714))],  # wrong person, sim 0.7
    ]
    spec = GallerySpec.from_entries([(0, BIG), (1, None)])
    on = run(images, [spec], cws=True)
    off = run(images, [spec], cws=False)
    assert on.hits[0].tolist() == [0, 1, 1] and on.ap[0] == pytest.approx(0.5)
    assert off.hits[0].tolist() == [1, 1, 1] and off.ap[0] == pytest.approx(1.0)


def test_det_thresh_drops_low_scores():
    images = [[(BIG, 0.49, unit(1, 0))], [([300, 0, 400, 200], 0.9, unit(0.5, 0.5))]]
    res = run(images, [GallerySpec.from_entries([(0, BIG), (1, None)])])
    assert res.count_gt[0] == 1 and res.count_tp[0] == 0 and res.ap[0] == 0.0
    assert res.hits[0].tolist() == [0, 0, 0]


def test_query_without_gallery_match_is_excluded():
    images = [[(BIG, 1.0, unit(1, 0))], [([300, 0, 400, 200], 1.0, unit(0, 1))]]
    specs = [GallerySpec.from_entries([(0, BIG), (1, None)]), GallerySpec.from_entries([(1, None)])]
    res = run(images, specs)
    assert res.count_gt.tolist() == [1, 0]
    assert res.num_queries_without_match == 1
    assert np.isnan(res.ap[1])
    assert res.summary() == {"mAP": 1.0, "top1": 1.0, "top5": 1.0, "top10": 1.0}


def test_duplicate_gallery_entries_are_all_processed():
    images = [[(BIG, 1.0, unit(0.8, 0.6))], [([300, 0, 400, 200], 1.0, unit(0.9, 0.436))]]
    # the GT image listed twice: count_gt 2, both copies labelled; scores 0.9 (neg), 0.8, 0.8
    spec = GallerySpec.from_entries([(0, BIG), (1, None), (0, BIG)])
    res = run(images, [spec], cws=False)
    assert res.count_gt[0] == 2 and res.count_tp[0] == 2
    assert res.ap[0] == pytest.approx(2 / 3)  # (deduping after counting would give 0.25)
    assert res.hits[0].tolist() == [0, 1, 1]


def test_extra_negatives_lower_the_ap():
    images = [[(BIG, 1.0, unit(0.8, 0.6))], [([300, 0, 400, 200], 1.0, unit(0.9, 0.436))]]
    without = run(images, [GallerySpec.from_entries([(0, BIG)])])
    with_neg = run(images, [GallerySpec.from_entries([(0, BIG)], negatives=[1])])
    assert without.ap[0] == pytest.approx(1.0)
    assert with_neg.ap[0] == pytest.approx(0.5) and with_neg.hits[0].tolist() == [0, 1, 1]


def test_top_k_descending_matches_argsort_including_ties():
    rng = np.random.default_rng(0)
    for n in (3, 50, 500):
        v = rng.random(n).astype(np.float32)
        assert top_k_descending(v, 10).tolist() == np.argsort(v)[::-1][:10].tolist()
        t = np.round(v * 5).astype(np.float32)  # many ties: falls back to the full argsort
        assert top_k_descending(t, 10).tolist() == np.argsort(t)[::-1][:10].tolist()


def test_recall_scaled_ap_equals_untruncated_sklearn():
    rng = np.random.default_rng(1)
    for _ in range(20):
        scores = rng.random(300)
        labels = (rng.random(300) < 0.02).astype(int)
        labels[rng.integers(300)] = 1
        tp = int(labels.sum())
        expected = average_precision_score(labels, scores) * tp / (tp + 1)
        assert recall_scaled_ap(labels, scores, tp, tp + 1) == pytest.approx(expected, abs=1e-12)
    assert recall_scaled_ap(np.zeros(3, int), np.ones(3), 0, 2) == 0.0


def _random_case(rng, num_images=30, num_queries=12, dim=8, dup=True, negatives=False):
    dets, images = [], []
    for i in range(num_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(5, 80, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        scores = rng.uniform(0.3, 1.0, n).astype(np.float32)
        feats = rng.standard_normal((n, dim)).astype(np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        dets.append((boxes, scores, feats))
        images.append(list(zip(boxes.tolist(), scores.tolist(), feats)))
    qf = rng.standard_normal((num_queries, dim)).astype(np.float32)
    qf /= np.linalg.norm(qf, axis=1, keepdims=True)
    galleries, specs = [], []
    for _ in range(num_queries):
        imgs = rng.choice(num_images, size=10, replace=False).tolist()
        if dup:
            imgs.append(imgs[0])
        entries = []
        for k, img in enumerate(imgs):
            gt = None
            if k < 3 or (dup and k == len(imgs) - 1):
                boxes = dets[img][0]
                if len(boxes) and rng.random() < 0.8:  # GT near a detection (jittered)
                    gt = (boxes[int(rng.integers(len(boxes)))] + rng.normal(0, 4, 4)).tolist()
                else:
                    gt = [10.0, 10.0, 30.0, 70.0]
            entries.append((img, gt))
        neg = []
        if negatives:
            neg = [i for i in range(num_images) if i not in imgs]
        galleries.append((entries, neg))
        specs.append(GallerySpec.from_entries(entries, neg))
    return dets, images, qf, galleries, specs


@pytest.mark.parametrize("cws", [True, False])
@pytest.mark.parametrize("negatives", [False, True])
def test_vectorised_search_equals_literal_reference(cws, negatives):
    rng = np.random.default_rng(3 + cws + 2 * negatives)
    dets, images, qf, galleries, specs = _random_case(rng, negatives=negatives)
    exp_ap, exp_hits = reference_search(dets, qf, galleries, det_thresh=0.5, cws=cws)
    for chunk in (1, 64):  # chunk 64 with negatives takes the full-matrix similarity path
        res = evaluate_search(pack(images, 8), qf, specs, cws=cws, chunk_size=chunk)
        np.testing.assert_allclose(res.ap, exp_ap, atol=1e-9)
        np.testing.assert_array_equal(res.hits, exp_hits)


@pytest.mark.parametrize("module", ["personsearch.evaluation", "personsearch.evaluation.boxes"])
def test_old_name_of_pairwise_iou_numpy_warns(module):
    import importlib

    with pytest.warns(DeprecationWarning, match="use pairwise_iou_numpy") as w:
        old = getattr(importlib.import_module(module), "pairwise_iou")
    assert w[0].filename == __file__
    assert old is pairwise_iou_numpy
