"""Helpers for tests that run ``tools/train_net.py`` in subprocesses on a tiny synthetic set."""

import os
import signal
import subprocess
import sys
from typing import Dict, List, Sequence

import torch

from synthetic_generator import generate_synthetic_dataset
from tests.common import CONFIGS, REPO, TINY_MODEL_OPTS

DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_net_driver.py")

# Seed 1 gives three landscape and three portrait training images, so that aspect-ratio grouping
# uses both of its buckets.
TINY_SYNTHETIC = dict(
    seed=1,
    num_train_images=6,
    num_test_images=6,
    num_train_ids=4,
    num_test_ids=3,
    gallery_sizes=(4,),
    image_width=(150, 220),
    image_height=(150, 220),
    person_height=(40, 140),
)


def make_tiny_dataset(root: str) -> str:
    """Write the tiny synthetic set (CUHK-SYSU format) into ``root``; returns ``root``."""
    generate_synthetic_dataset(root, workers=1, progress=False, **TINY_SYNTHETIC)
    return root


def train_net_args(
    output_dir: str,
    opts: Sequence = (),
    flags: Sequence[str] = (),
    config_file: str = "Base-PersonSearch.yaml",
) -> List[str]:
    """``train_net.py`` arguments: the tiny model (``config_file`` under configs/, shrunk by
    ``TINY_MODEL_OPTS``) on the driver's datasets, then ``opts``."""
    base = [str(v) for v in TINY_MODEL_OPTS] + [
        "DATASETS.TRAIN", '("driver_train",)',
        "DATASETS.TEST", '("driver_test",)',
        "MODEL.OIM.NUM_PIDS", "4",
        "TEST.SEARCH.GALLERY_SIZE", "4",
        "OUTPUT_DIR", output_dir,
    ]  # fmt: skip
    config = os.path.join(CONFIGS, config_file)
    return list(flags) + ["--config-file", config] + base + [str(v) for v in opts]


def driver_env(data_root: str, **extra: str) -> Dict[str, str]:
    """Environment of a driver subprocess: one intra-op thread per process (two processes share
    the two cores of CI, and equal thread counts keep float results comparable)."""
    env = dict(os.environ)
    env.update(
        PS_TEST_DATA=data_root,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([REPO, env.get("PYTHONPATH", "")]),
    )
    env.update(extra)
    return env


def start_train_net(args: Sequence[str], env: Dict[str, str], log_file: str) -> subprocess.Popen:
    """Start ``train_net.py args`` (through the driver) with stdout and stderr to ``log_file``,
    in a new session, so that :func:`kill_tree` can end it together with its workers."""
    log = open(log_file, "ab")
    try:
        return subprocess.Popen(
            [sys.executable, DRIVER, *args],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    finally:
        log.close()


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the process group that :func:`start_train_net` started, and reap the driver."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_train_net(args: Sequence[str], env: Dict[str, str], log_file: str, timeout: float = 300):
    """Run ``train_net.py args`` to completion; returns ``(returncode, log text)``."""
    proc = start_train_net(args, env, log_file)
    try:
        code = proc.wait(timeout=timeout)
    finally:
        kill_tree(proc)  # also ends workers left behind by a failed distributed run
    with open(log_file, errors="replace") as f:
        return code, f.read()


def assert_same(a, b, path="checkpoint"):
    """Exact recursive equality of checkpoint contents (tensors bit for bit)."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {sorted(set(a) ^ set(b))}"
        for key in a:
            assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), f"{path} differs"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
