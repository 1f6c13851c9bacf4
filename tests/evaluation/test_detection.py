import numpy as np
import pytest

from personsearch.evaluation import evaluate_detections, match_detections

G0 = [0, 0, 10, 10]
G1 = [1, 0, 11, 10]
D0 = [0, 0, 10, 10]  # IoU(G0) = 1, IoU(G1) = 90 / 110
D1 = [4, 0, 14, 10]  # IoU(G0) = 60 / 140 = 0.43, IoU(G1) = 70 / 130 = 0.54


def test_gt_whose_best_detection_belongs_to_another_gt_gets_no_tp():
    # D1's best GT is G1 (0.54 >= 0.5), but G1's best detection is D0 (0.82), which belongs to
    # G0: the reference then drops (G1, D1), so G1 stays unmatched.
    is_tp, num_tp = match_detections(np.array([G0, G1]), np.array([D0, D1]))
    assert is_tp.tolist() == [True, False] and num_tp == 1


def test_ties_take_the_first_index():
    g = np.array([[0, 0, 10, 10]])
    d = np.array([[1, 0, 11, 10], [-1, 0, 9, 10]])  # both IoU 90 / 110
    is_tp, num_tp = match_detections(g, d)
    assert is_tp.tolist() == [True, False] and num_tp == 1


def test_detection_ap_and_recall():
    gt = [np.array([G0, G1]), np.array([[50, 50, 80, 120]]), np.zeros((0, 4))]
    boxes = [np.array([D0, D1, [100, 100, 110, 110]]), np.zeros((0, 4)), np.array([[0, 0, 5, 5]])]
    scores = [np.array([0.9, 0.8, 0.005]), np.zeros(0), np.array([0.95])]
    pids = [np.array([-1, 3]), np.array([-1]), np.zeros(0, int)]
    res = evaluate_detections(gt, boxes, scores, gt_person_ids=pids)
    # 3 GT (the image without detections counts); one TP (D0); the 0.005 box is below 0.01;
    # the image without GT gives a false positive at 0.95 -> ranking 0.95 F, 0.9 T, 0.8 F
    assert (res.num_gt, res.num_tp, res.num_det) == (3, 1, 3)
    assert res.recall == pytest.approx(1 / 3)
    assert res.ap == pytest.approx(0.5 / 3)
    # labeled only: G1 is the only labeled GT; image 2 (no labeled GT) and image 3 are skipped;
    # G1's best detection is now D0 (G0 is gone): TP = D0, ranking 0.9 T, 0.8 F
    lab = evaluate_detections(gt, boxes, scores, gt_person_ids=pids, labeled_only=True)
    assert (lab.num_gt, lab.num_tp, lab.num_det) == (1, 1, 2)
    assert lab.recall == pytest.approx(1.0) and lab.ap == pytest.approx(1.0)
    # a higher threshold removes D1 (0.8) and the 0.95 false positive image still counts
    hi = evaluate_detections(gt, boxes, scores, det_thresh=0.85)
    assert hi.num_det == 2 and hi.ap == pytest.approx(0.5 / 3)


def test_no_ground_truth_gives_zero():
    res = evaluate_detections([np.zeros((0, 4))], [np.array([[0, 0, 1, 1]])], [np.array([0.9])])
    assert (res.ap, res.recall, res.num_det) == (0.0, 0.0, 1)
