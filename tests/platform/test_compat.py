"""The platform checks: one clear error at ``import personsearch`` for a missing or too-old
PyTorch/Detectron2, install ranges that both CI lanes satisfy, and no import of modules that
current platforms removed."""

import ast
import importlib
import json
import os
import subprocess
import sys
import types
import warnings

import pytest
from packaging.requirements import Requirement

from personsearch.compat import PlatformError, check_platform, parse_version, platform_problems
from tests.common import REPO


def _import_personsearch(tmp_path, prelude="", fake_packages=None):
    """``import personsearch`` in a fresh interpreter, with optional fake packages first on the
    path; returns (exit code, stderr)."""
    path = [REPO]
    for name, version in (fake_packages or {}).items():
        folder = tmp_path / "fake" / name
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text(f"__version__ = {version!r}\n")
        path.insert(0, str(tmp_path / "fake"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    code = f"{prelude}\nimport personsearch"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    return proc.returncode, proc.stderr


def test_too_old_torch_is_one_clear_error_at_import(tmp_path):
    code, err = _import_personsearch(tmp_path, fake_packages={"torch": "2.1.2+cu118"})
    assert code != 0
    last = err.strip().splitlines()[-1]  # the error itself, not a chain of others
    assert last.startswith("personsearch.compat.PlatformError: personsearch cannot run")
    assert "torch >= 2.3 is needed, found torch 2.1.2+cu118 at " in last
    assert str(tmp_path / "fake" / "torch" / "__init__.py") in last
    assert "docs/INSTALL.md" in last and sys.executable in last


def test_missing_detectron2_is_one_clear_error_at_import(tmp_path):
    # a None entry in sys.modules makes `import detectron2` fail as if it were not installed
    code, err = _import_personsearch(
        tmp_path, prelude="import sys; sys.modules['detectron2'] = None"
    )
    assert code != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("personsearch.compat.PlatformError:")
    assert "detectron2 >= 0.6 is needed, but detectron2 is not installed" in last
    assert "git+https://github.com/facebookresearch/detectron2.git" in last


def test_every_problem_is_named_at_once():
    versions = {"torch": "2.2.0", "torchvision": "0.17.0", "detectron2": "0.5"}

    def fake_import(name):
        return types.SimpleNamespace(__version__=versions[name], __file__=f"/x/{name}/__init__.py")

    # torch is too old: the others are only looked for (importing them would import torch)
    problems = platform_problems(fake_import)
    assert problems == ["torch >= 2.3 is needed, found torch 2.2.0 at /x/torch/__init__.py"]
    versions["torch"] = "2.6.0a0+git1234"
    problems = platform_problems(fake_import)
    assert problems == [
        "torchvision >= 0.18 is needed, found torchvision 0.17.0 at /x/torchvision/__init__.py",
        "detectron2 >= 0.6 is needed, found detectron2 0.5 at /x/detectron2/__init__.py",
    ]
    with pytest.raises(PlatformError, match="torchvision >= 0.18 .*; detectron2 >= 0.6"):
        check_platform(fake_import)
    assert issubclass(PlatformError, ImportError)


def test_a_broken_install_is_reported_with_its_error():
    def broken(name):
        if name == "torch":
            raise ImportError("libtorch_cpu.so: cannot open shared object file")
        return importlib.import_module(name)

    (problem,) = platform_problems(broken)
    assert problem.startswith("torch >= 2.3 is needed, but torch cannot be imported (libtorch_cpu")


def test_this_environment_passes():
    assert platform_problems() == []


@pytest.mark.parametrize(
    "text, version",
    [("2.3.1", (2, 3, 1)), ("2.14.1+cu130", (2, 14, 1)), ("2.6.0a0+git12ab", (2, 6, 0)),
     ("0.7.2", (0, 7, 2)), ("0.6", (0, 6)), ("", None), ("unknown", None)],  # fmt: skip
)
def test_parse_version(text, version):
    assert parse_version(text) == version


def _install_requires():
    tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            return [Requirement(ast.literal_eval(el)) for el in node.value.elts]
    raise AssertionError("setup.py has no install_requires")


def test_setup_py_asks_for_ranges_that_this_lane_satisfies():
    """Users keep their own torch/numpy: no pins and no upper bounds in install_requires, and
    each range holds for the packages of the lane running this test (both CI lanes run it)."""
    from importlib.metadata import version

    reqs = _install_requires()
    assert {r.name for r in reqs} >= {"torch", "torchvision", "numpy", "fvcore"}
    for r in reqs:
        for spec in r.specifier:
            assert spec.operator in (">=", ">"), f"setup.py: {r} is not a lower bound"
        installed = version(r.name)
        assert r.specifier.contains(installed, prereleases=True), f"{r} but {installed} here"
    assert not any(r.name == "detectron2" for r in reqs)  # pip cannot resolve it


def test_no_module_removed_by_current_platforms_is_imported():
    """detectron2.model_zoo imports pkg_resources, which setuptools >= 82 removed: neither may be
    imported by personsearch, any of its modules or the tools."""
    code = f"""
import importlib, pkgutil, runpy, sys
sys.path.insert(0, {os.path.join(REPO, "tools")!r})
import personsearch
for m in pkgutil.walk_packages(personsearch.__path__, "personsearch."):
    importlib.import_module(m.name)
import os
for f in sorted(os.listdir({os.path.join(REPO, "tools")!r})):
    if f.endswith(".py"):
        runpy.run_path(os.path.join({os.path.join(REPO, "tools")!r}, f), run_name="imported")
bad = sorted(m for m in sys.modules if m.split(".")[0] == "pkg_resources"
             or m.startswith("detectron2.model_zoo"))
print("IMPORTED", bad)
"""
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IMPORTED []" in proc.stdout, proc.stdout[-2000:]


def test_deprecation_warnings_from_personsearch_fail_the_tests():
    """setup.cfg turns deprecations attributed to personsearch modules into errors (and only
    those: detectron2's own, e.g. its torch.jit.script FutureWarning, stay warnings)."""
    for category in (DeprecationWarning, FutureWarning):
        with pytest.raises(category):
            warnings.warn_explicit("old API", category, "x.py", 1, module="personsearch.engine.x")
        with pytest.warns(category):
            warnings.warn_explicit("old API", category, "x.py", 1, module="detectron2.x")


_LOADER_PROBE = """
import itertools, json, sys, tempfile
import torch.multiprocessing as mp
from personsearch.engine import PersonSearchTrainer
from tests.common import tiny_cfg, tiny_synthetic_splits

if __name__ == "__main__":
    mp.set_start_method(sys.argv[1], force=True)
    names = tiny_synthetic_splits(tempfile.mkdtemp(), "start_method")
    cfg = tiny_cfg("synthetic/UGAS_R10.yaml", ["DATASETS.TRAIN", (names["train"],),
                   "DATALOADER.NUM_WORKERS", 2, "MODEL.OIM.NUM_PIDS", 4])
    batches = itertools.islice(iter(PersonSearchTrainer.build_train_loader(cfg)), 4)
    print(json.dumps([[(d["image_id"], d["instances"].gt_boxes.tensor.tolist()) for d in b]
                      for b in batches]))
"""


def test_training_stream_is_the_same_under_every_process_start_method(tmp_path):
    # Python 3.14 starts DataLoader workers with forkserver by default on Linux (3.12 warns about
    # fork in a threaded process): the mapped records must pickle and give the same stream
    probe = tmp_path / "probe.py"
    probe.write_text(_LOADER_PROBE)
    streams = {}
    for method in ("fork", "forkserver"):
        proc = subprocess.run(
            [sys.executable, str(probe), method],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=REPO),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        streams[method] = proc.stdout.strip().splitlines()[-1]
    assert len(json.loads(streams["fork"])) == 4
    assert streams["forkserver"] == streams["fork"]
