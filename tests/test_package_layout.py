"""What ``import personsearch`` brings in (the core and its registries, not the applications), and
the old import paths kept for one release."""

import importlib
import json
import os
import subprocess
import sys

import pytest

from tests.common import REPO

_PROBE = """
import json, sys
import personsearch
from personsearch.modeling.ugas import SD_REGISTRY, SFM_REGISTRY, UG_REGISTRY
print(json.dumps({
    "modules": sorted(m for m in sys.modules if m.startswith("personsearch")),
    "registries": {
        r._name: sorted(k for k, _ in r) for r in (SFM_REGISTRY, SD_REGISTRY, UG_REGISTRY)
    },
}))
"""


@pytest.fixture(scope="module")
def fresh_import():
    """The personsearch modules and UGAS registry entries right after ``import personsearch`` in a
    fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_personsearch_fills_the_ugas_registries(fresh_import):
    assert fresh_import["registries"] == {
        "UGAS_SFM": ["AttentionShallowFusionModule", "ShallowFusionModule"],
        "UGAS_SD": ["LogitDistillation"],
        "UGAS_UG": [
            "FeatureStatisticsUncertainty",
            "GaussianEmbeddingUncertainty",
            "UncertaintyAwareLoss",
        ],
    }


def test_import_personsearch_leaves_the_applications_out(fresh_import):
    modules = fresh_import["modules"]
    assert "personsearch.modeling.ugas" in modules and "personsearch.engine.predictor" in modules
    assert not [
        m
        for m in modules
        if m.startswith(("personsearch.apps", "personsearch.search", "personsearch.visualization"))
    ]
    # the deprecated alias of the protocol module is not imported either
    assert "personsearch.evaluation.search" not in modules
    assert "personsearch.evaluation.search_protocol" in modules


@pytest.mark.parametrize(
    "old, new, names",
    [
        ("personsearch.search", "personsearch.apps.search", ["SearchIndex", "GallerySearch"]),
        (
            "personsearch.evaluation.search",
            "personsearch.evaluation.search_protocol",
            ["evaluate_search", "GallerySpec"],
        ),
    ],
)
def test_old_import_paths_warn_and_give_the_same_objects(monkeypatch, old, new, names):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(
        DeprecationWarning, match=f"{old} is deprecated .* import {new} instead"
    ) as w:
        module = importlib.import_module(old)
    assert w[0].filename == __file__  # attributed to the importer, not to importlib
    target = importlib.import_module(new)
    for name in names:
        assert getattr(module, name) is getattr(target, name)


def test_old_search_submodules_are_the_new_modules(monkeypatch):
    monkeypatch.delitem(sys.modules, "personsearch.search", raising=False)
    monkeypatch.delitem(sys.modules, "personsearch.search.index", raising=False)
    with pytest.warns(DeprecationWarning, match="personsearch.apps.search"):
        from personsearch.search.index import SearchIndex
    import personsearch.apps.search.index as index

    assert SearchIndex is index.SearchIndex
    assert sys.modules["personsearch.search.index"] is index


# detectron2's tools are 56-245 lines: argument parsing and dispatch, the logic in the library
_TOOL_MAX_LINES = 250


@pytest.mark.parametrize(
    "tool", sorted(f for f in os.listdir(os.path.join(REPO, "tools")) if f.endswith(".py"))
)
def test_tools_only_parse_and_dispatch(tool):
    with open(os.path.join(REPO, "tools", tool)) as f:
        lines = sum(1 for _ in f)
    assert lines <= _TOOL_MAX_LINES, (
        f"tools/{tool} has {lines} lines (at most {_TOOL_MAX_LINES}): move its logic into "
        "personsearch/ (or benchmarks/ for the harness) and keep the tool to arguments and dispatch"
    )


def test_importing_the_benchmark_harness_does_not_load_torch():
    probe = "import sys, benchmarks, benchmarks.zoo; print('torch' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
