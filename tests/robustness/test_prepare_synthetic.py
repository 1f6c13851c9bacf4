"""datasets/prepare_synthetic.py: a tiny set prepared through the script's ``main`` (and loaded by
the registered loader), a no-op second run, and bad output folders (clear errors, nothing
deleted), in-process and as a script."""

import importlib.util
import os
import subprocess
import sys

import pytest

from personsearch.data.datasets.synthetic import INFO_FILE, check_synthetic_dataset
from tests.common import REPO

from .helpers import assert_names

SCRIPT = os.path.join(REPO, "datasets", "prepare_synthetic.py")
TINY = dict(
    num_train_images=6, num_test_images=6, num_train_ids=4, num_test_ids=3, gallery_sizes=(4,)
)


@pytest.fixture(scope="module")
def prepare():
    spec = importlib.util.spec_from_file_location("_personsearch_prepare_synthetic", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_writes_a_current_set_and_a_second_run_is_a_no_op(prepare, tmp_path, capsys):
    root = str(tmp_path / "synthetic")
    argv = ["--output", root, "--workers", "1", "--no-progress"]
    assert prepare.main(argv, **TINY) == 0
    assert check_synthetic_dataset(root, **TINY) == root
    assert f"synthetic dataset ready in {root}" in capsys.readouterr().out
    info = os.path.join(root, INFO_FILE)
    mtime = os.stat(info).st_mtime_ns
    assert prepare.main(argv, **TINY) == 0
    assert os.stat(info).st_mtime_ns == mtime


def test_prepare_into_a_file_or_a_foreign_folder_is_refused(prepare, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(SystemExit) as e:
        prepare.main(["--output", str(a_file), "--no-progress"], **TINY)
    assert_names(str(e.value), ["prepare_synthetic:", str(a_file), "is not a folder"])
    assert a_file.read_text() == "mine"
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(SystemExit) as e:
        prepare.main(["--output", str(other), "--no-progress"], **TINY)
    assert_names(str(e.value), [str(other), f"not a synthetic dataset (no {INFO_FILE})"])
    assert os.listdir(other) == ["keep.txt"]
    # a folder below a file cannot be created
    with pytest.raises(SystemExit) as e:
        prepare.main(["--output", str(a_file / "synthetic"), "--no-progress"], **TINY)
    assert_names(str(e.value), ["prepare_synthetic:", str(a_file)])
    with pytest.raises(SystemExit, match="--workers must be >= 1, got 0"):
        prepare.main(["--output", str(tmp_path / "s"), "--workers", "0"], **TINY)
    assert not os.path.exists(tmp_path / "s")


def test_prepare_script_runs_as_a_command(tmp_path):
    a_file = tmp_path / "synthetic"
    a_file.write_text("mine")
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--output", str(a_file)], capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"prepare_synthetic: {str(a_file)!r} exists and is not a folder" in proc.stderr
    assert a_file.read_text() == "mine"
