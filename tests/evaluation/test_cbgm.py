import numpy as np
import pytest

from personsearch.evaluation import (
    CBGMOptions,
    GallerySpec,
    build_query_context,
    evaluate_search,
    match_context,
)

from .test_search import _random_case, pack
from .toy import reference_search, unit

QBOX = [0.0, 0.0, 50.0, 150.0]
BIG = [0.0, 0.0, 100.0, 200.0]
E = np.eye(4, dtype=np.float32)


def _swap_case():
    """Query e0 with a companion e1 next to it. Image 1 shows the person (sim 0.6) with the same
    companion; image 2 a stranger with sim 0.7 and nobody else."""
    images = [
        # 0: the query image: the query person's own detection (IoU 1 with the query box, so not
        # context) and the companion
        [(QBOX, 0.99, unit(1, 0, 0, 0)), ([200, 0, 250, 150], 0.9, unit(0, 1, 0, 0))],
        # 1: the person (sim 0.6) and the companion
        [(BIG, 1.0, unit(0.6, 0, 0.8, 0)), ([300, 0, 400, 200], 1.0, unit(0, 1, 0, 0))],
        # 2: a stranger with a higher similarity
        [([0, 0, 100, 200], 1.0, unit(0.7, 0, 0, 0.714))],
    ]
    spec = GallerySpec.from_entries([(1, BIG), (2, None)])
    return images, spec


def test_cbgm_raises_the_correct_detection_above_a_wrong_one():
    images, spec = _swap_case()
    q = E[:1]
    kw = dict(query_images=np.array([0]), query_boxes=np.array([QBOX]), cws=False)
    plain = evaluate_search(pack(images, 4), q, [spec], **kw)
    assert plain.hits[0].tolist() == [0, 1, 1] and plain.ap[0] == pytest.approx(0.5)
    res = evaluate_search(pack(images, 4), q, [spec], cbgm=CBGMOptions(k1=10, k2=2), **kw)
    # image 1: context [e0, e1] x [person, companion] -> W = [[0.6, 0], [0, 1]]; the matching
    # pairs query-person and companion-companion; max matched weight 1.0 becomes the person's sim.
    # image 2: one column; the query row wins it (0.7 > 0), max 0.7: unchanged.
    assert res.cbgm_updates[0][1] == (0, pytest.approx(1.0))
    assert res.cbgm_updates[0][2] == (0, pytest.approx(0.7, abs=1e-3))
    assert res.hits[0].tolist() == [1, 1, 1] and res.ap[0] == pytest.approx(1.0)


def test_cbgm_k1_limits_the_rescored_images():
    images, spec = _swap_case()
    kw = dict(query_images=np.array([0]), query_boxes=np.array([QBOX]), cws=False)
    # k1 = 1: only the best detection (the stranger, 0.7) names an image; image 1 keeps 0.6
    res = evaluate_search(pack(images, 4), E[:1], [spec], cbgm=CBGMOptions(k1=1, k2=2), **kw)
    assert set(res.cbgm_updates[0]) == {2}
    assert res.hits[0].tolist() == [0, 1, 1]


def test_query_context_excludes_the_query_box_and_keeps_unweighted_features():
    boxes = np.array([[0, 0, 50, 150], [5, 0, 55, 150], [200, 0, 250, 150], [400, 0, 450, 150]])
    scores = np.array([0.6, 0.99, 0.7, 0.9])
    feats = E.copy()
    ctx = build_query_context(unit(1, 1, 0, 0), QBOX, boxes, scores, feats, k2=3)
    # rows 0/1 overlap the query box (IoU 1 and 0.82 > 0.5) and are dropped; the rest by score
    np.testing.assert_allclose(ctx, [unit(1, 1, 0, 0), E[3], E[2]])
    assert build_query_context(E[0], QBOX, boxes, scores, feats, k2=1).shape == (1, 4)
    assert build_query_context(E[0], QBOX, boxes, scores, feats, k2=10).shape == (3, 4)


def test_context_comes_from_the_query_image_without_cws():
    # With CWS on, the companion's gallery feature is scaled by 0.5; the context must use the
    # unweighted one: the edge companion-companion is then 1 * 0.5 (gallery side weighted only).
    images, spec = _swap_case()
    images[0][1] = ([200, 0, 250, 150], 0.5, unit(0, 1, 0, 0))
    images[1][1] = ([300, 0, 400, 200], 0.5, unit(0, 1, 0, 0))
    kw = dict(query_images=np.array([0]), query_boxes=np.array([QBOX]), cws=True)
    res = evaluate_search(pack(images, 4), E[:1], [spec], cbgm=CBGMOptions(10, 2), **kw)
    assert res.cbgm_updates[0][1] == (0, pytest.approx(0.6))  # max(0.6, 1 * 0.5)


def test_match_context_rectangular_and_negative_weights():
    # one context row, three detections, all negative weights: still matched, to the best one
    j, v = match_context(E[:1], np.array([-0.5 * E[0], -0.1 * E[0], -0.9 * E[0]]))
    assert (j, v) == (1, pytest.approx(-0.1))
    # more context rows than detections: the single detection goes to the best row; when that is
    # not the query row, nothing is updated
    ctx = np.stack([E[0], E[1], E[2]])
    assert match_context(ctx, np.array([0.1 * E[0] + 0.9 * E[1]])) == (None, None)
    assert match_context(ctx, np.zeros((0, 4))) == (None, None)
    # maximum total weight, not greedy: greedy would pair row0-col0 (0.9) then row1-col1 (0.1)
    w = np.array([[0.9, 0.8], [0.7, 0.1]])
    j, v = match_context(np.eye(2), w.T)
    assert (j, v) == (1, pytest.approx(0.8))  # total 0.8 + 0.7 = 1.5 > 1.0; max edge 0.8


def test_cbgm_equals_literal_reference_on_random_data():
    rng = np.random.default_rng(11)
    dets, images, qf, galleries, specs = _random_case(rng, dup=True)
    packed = pack(images, 8)
    q_images = rng.integers(0, len(images), len(qf))
    q_boxes = np.array([[0.0, 0.0, 40.0, 120.0]] * len(qf))
    contexts = []
    for n in range(len(qf)):
        b, s, f = dets[q_images[n]]
        keep = s >= 0.5
        contexts.append(build_query_context(qf[n], q_boxes[n], b[keep], s[keep], f[keep], 3))
    exp_ap, exp_hits = reference_search(dets, qf, galleries, cbgm_k1=5, contexts=contexts)
    res = evaluate_search(
        packed, qf, specs, cbgm=CBGMOptions(5, 3), query_images=q_images, query_boxes=q_boxes
    )
    np.testing.assert_allclose(res.ap, exp_ap, atol=1e-9)
    np.testing.assert_array_equal(res.hits, exp_hits)
    plain = evaluate_search(packed, qf, specs)
    assert not np.allclose(plain.ap, res.ap)  # CBGM did change something on this data
