"""The regression configs of configs/quick_schedules/: their expected results name metrics the
evaluator returns, and detectron2's verify_results (run by tools/train_net.py at the end of
training) accepts the expected values and rejects a result outside the tolerance."""

import copy
import glob
import os

import pytest
from detectron2.evaluation import verify_results

from personsearch import get_person_search_cfg
from tests.common import CONFIGS

from .evaluation.test_evaluator import _run
from .evaluation.toy import register, toy_split

QUICK = sorted(glob.glob(os.path.join(CONFIGS, "quick_schedules", "*_acc_test.yaml")))


@pytest.fixture(scope="module")
def real_results(tmp_path_factory):
    """What PersonSearchEvaluator returns (a toy split: only the keys matter here)."""
    records, outputs = toy_split()
    register("ps_quick_schedules_toy", records, protocol="prw")
    out = str(tmp_path_factory.mktemp("quick"))
    return _run("ps_quick_schedules_toy", records, outputs, distributed=False, output_dir=out)


def test_there_are_regression_configs():
    assert len(QUICK) >= 3


@pytest.mark.parametrize("path", QUICK, ids=os.path.basename)
def test_expected_results_are_checked(path, real_results):
    cfg = get_person_search_cfg(path)
    expected = cfg.TEST.EXPECTED_RESULTS
    assert len(expected) >= 2
    results = copy.deepcopy(real_results)
    for task, metric, value, tolerance in expected:
        assert metric in real_results[task], f"{path}: the evaluator has no {task}/{metric}"
        assert 0 < tolerance < value
        results[task][metric] = value + 0.9 * tolerance
    assert verify_results(cfg, results)
    task, metric, value, tolerance = expected[0]
    results[task][metric] = value - 1.1 * tolerance
    with pytest.raises(SystemExit):
        verify_results(cfg, results)
