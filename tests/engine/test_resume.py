"""Resuming training: a run killed with SIGKILL and restarted with ``--resume`` ends in exactly the
state of an uninterrupted run; the resumable data stream and the trainer's resume bookkeeping."""

import itertools
import logging
import os
import random
import time

import numpy as np
import pytest
import torch
from detectron2.data.samplers import TrainingSampler
from detectron2.engine import hooks as d2_hooks

from personsearch.data.datasets.cuhk_sysu import register_cuhk_sysu
from personsearch.data.samplers import (
    ResumableBatchStream,
    ResumableTrainingSampler,
    ResumableTrainLoader,
    derive_seed,
)
from personsearch.engine import PersonSearchTrainer
from personsearch.engine.trainer import PRECISE_BN_STREAM
from tests.common import tiny_cfg
from tests.engine.runs import (
    assert_same,
    driver_env,
    kill_tree,
    make_tiny_dataset,
    run_train_net,
    start_train_net,
    train_net_args,
)

MAX_ITER = 12
PERIOD = 4
# LR warm-up and a step inside the run, so that the scheduler state matters; no evaluation
RUN_OPTS = ["SOLVER.IMS_PER_BATCH", 2, "SOLVER.MAX_ITER", MAX_ITER,
            "SOLVER.CHECKPOINT_PERIOD", PERIOD, "SOLVER.WARMUP_ITERS", 3, "SOLVER.STEPS", "(6,)",
            "SEED", 7, "DATASETS.TEST", "()"]  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_tiny_dataset(str(tmp_path_factory.mktemp("resume") / "data"))


def wait_for_checkpoint(out_dir, name, proc, timeout=240.0):
    """Poll until ``last_checkpoint`` names ``name`` (written after the checkpoint file)."""
    tag = os.path.join(out_dir, "last_checkpoint")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.isfile(tag):
            with open(tag) as f:
                if f.read() == name:
                    return
        assert proc.poll() is None, "the training process ended before its first checkpoint"
        time.sleep(0.02)
    raise TimeoutError(f"{name} was not written within {timeout} s")


def test_sigkilled_run_resumes_to_the_uninterrupted_state(data_root, tmp_path):
    env = driver_env(data_root)
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    code, log = run_train_net(train_net_args(full, RUN_OPTS), env, str(tmp_path / "full.log"))
    assert code == 0, log[-4000:]

    # slowed down (no effect on its state), so that the kill lands between two checkpoints
    slow = driver_env(data_root, PS_TEST_STEP_DELAY="0.3")
    proc = start_train_net(train_net_args(killed, RUN_OPTS), slow, str(tmp_path / "killed.log"))
    try:
        wait_for_checkpoint(killed, f"model_{PERIOD - 1:07d}.pth", proc)
    finally:
        kill_tree(proc)
    assert proc.returncode == -9  # SIGKILL, mid-way
    assert not os.path.exists(os.path.join(killed, "model_final.pth"))
    with open(os.path.join(killed, "last_checkpoint")) as f:
        resumed_from = int(f.read()[len("model_") : -len(".pth")]) + 1
    assert resumed_from < MAX_ITER
    # what a save killed while writing leaves behind
    for stale in ("model_0000099.pth.tmp", "last_checkpoint.tmp"):
        with open(os.path.join(killed, stale), "wb") as f:
            f.write(b"partial")

    args = train_net_args(killed, RUN_OPTS, flags=["--resume"])
    code, log = run_train_net(args, env, str(tmp_path / "resumed.log"))
    assert code == 0, log[-4000:]
    assert f"Starting training from iteration {resumed_from}" in log
    assert "model_0000099.pth.tmp, an incomplete file" in log
    assert not any(name.endswith(".tmp") for name in os.listdir(killed))

    for name in ("model_final.pth", f"model_{2 * PERIOD - 1:07d}.pth"):
        a = torch.load(os.path.join(full, name), weights_only=True)
        b = torch.load(os.path.join(killed, name), weights_only=True)
        # model (incl. OIM lut/queue/queue_head, BN statistics), optimizer, LR scheduler,
        # iteration, non-finite skip count, run seed
        assert_same(a, b, name)
        assert {"lut", "queue", "queue_head"} <= {k.split(".")[-1] for k in b["model"]}
        assert b["trainer"]["run_seed"] == 7
        assert b["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == b["iteration"] + 1


# ------------------------------------------------------------------------------------------
# The data stream
# ------------------------------------------------------------------------------------------
def test_sampler_is_detectron2s_stream_from_any_position():
    for rank, world in ((0, 1), (1, 2)):
        ours = ResumableTrainingSampler(7, seed=3)
        ref = TrainingSampler(7, seed=3)
        for s in (ours, ref):
            s._rank, s._world_size = rank, world
        expected = list(itertools.islice(iter(ref), 40))
        assert list(itertools.islice(iter(ours), 40)) == expected
        ours.start = 17  # crosses epoch boundaries
        assert list(itertools.islice(iter(ours), 23)) == expected[17:]
        assert [j for j, _ in itertools.islice(ours.iter_with_positions(5), 3)] == [5, 6, 7]


class RecordingMapper:
    """Returns the record's name and one draw of each global RNG; drops record 2."""

    def __call__(self, record):
        if record["image_id"] == "img2":
            return None
        draws = (random.random(), float(np.random.rand()), float(torch.rand(())))
        return {"image_id": record["image_id"], "draws": draws}


def make_loader(records, mapper, grouping, workers, seed=11, start=0, batch_size=2):
    sampler = ResumableTrainingSampler(len(records), seed=seed)
    loader = ResumableTrainLoader(
        ResumableBatchStream(records, mapper, sampler, batch_size, grouping), num_workers=workers
    )
    loader.set_start_iter(start)
    return loader


def take(loader, n):
    return [[(d["image_id"], d["draws"]) for d in batch] for batch in itertools.islice(loader, n)]


@pytest.mark.parametrize("grouping", [False, True])
def test_stream_is_the_same_with_workers_and_from_any_start(grouping):
    # five landscape and four portrait records: grouping keeps images waiting in a bucket
    records = [
        {"image_id": f"img{i}", "width": 40 if i % 2 else 30, "height": 30 if i % 2 else 40}
        for i in range(9)
    ]
    mapper = RecordingMapper()
    reference = take(make_loader(records, mapper, grouping, workers=0), 12)
    assert take(make_loader(records, mapper, grouping, workers=2), 12) == reference
    for start in (1, 5):
        for workers in (0, 2):
            resumed = make_loader(records, mapper, grouping, workers, start=start)
            assert take(resumed, 12 - start) == reference[start:], (start, workers)
    names = [name for batch in reference for name, _ in batch]
    assert "img2" not in names  # the dropped record was replaced
    if grouping:  # batches never mix orientations, replacements included
        landscape = {r["image_id"]: r["width"] > r["height"] for r in records}
        assert all(len({landscape[name] for name, _ in batch}) == 1 for batch in reference)
    # every sample has its own augmentation randomness, and it follows the seed
    draws = [d for batch in reference for _, d in batch]
    assert len(set(draws)) == len(draws)
    assert take(make_loader(records, mapper, grouping, workers=0, seed=12), 12) != reference


def test_mapping_leaves_the_global_rngs_alone():
    records = [{"image_id": f"img{i}", "width": 4, "height": 3} for i in range(4)]
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    take(make_loader(records, RecordingMapper(), False, workers=0), 3)
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------------------------------
# The trainer's resume bookkeeping (in-process, no training step)
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def train_split(data_root):
    name = "resume_test_train"
    register_cuhk_sysu(name, data_root, "train")
    return name


def make_trainer(train_split, out_dir, seed=7):
    cfg = tiny_cfg(opts=["DATASETS.TRAIN", (train_split,), "DATASETS.TEST", (),
                         "MODEL.OIM.NUM_PIDS", 4, "SOLVER.IMS_PER_BATCH", 2, "SEED", seed,
                         "OUTPUT_DIR", str(out_dir)])  # fmt: skip
    return PersonSearchTrainer(cfg)


def test_resume_restores_skip_count_seed_and_data_position(train_split, tmp_path, caplog):
    trainer = make_trainer(train_split, tmp_path, seed=-1)
    seed = trainer.run_seed
    assert seed >= 0 and trainer.data_loader.seed == seed
    trainer._trainer.num_skipped = 2
    trainer.iter = 4
    trainer.checkpointer.save("model_0000004", iteration=4)
    (tmp_path / "model_0000009.pth.tmp").write_bytes(b"partial")

    resumed = make_trainer(train_split, tmp_path, seed=-1)
    with caplog.at_level(logging.WARNING):
        resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 5
    assert resumed._trainer.num_skipped == 2
    assert resumed.run_seed == seed
    # the loader is positioned before its iterator exists (it is created at the first step)
    assert resumed._trainer._data_loader_iter_obj is None
    assert resumed.data_loader.start_iter == 5 and resumed.data_loader.seed == seed
    assert not (tmp_path / "model_0000009.pth.tmp").exists()
    assert "model_0000009.pth.tmp, an incomplete file" in caplog.text

    # a SEED that disagrees with the checkpoint: the checkpoint's seed wins, with a warning
    other = make_trainer(train_split, tmp_path, seed=seed + 1)
    with caplog.at_level(logging.WARNING):
        other.resume_or_load(resume=True)
    assert other.run_seed == seed and "resuming continues with the checkpoint's seed" in caplog.text


def test_resume_or_load_after_iteration_started_is_an_error(train_split, tmp_path):
    trainer = make_trainer(train_split, tmp_path)
    next(trainer._trainer._data_loader_iter)
    with pytest.raises(RuntimeError, match="before train"):
        trainer.resume_or_load(resume=False)


def test_checkpoint_without_run_seed_resumes_with_a_warning(train_split, tmp_path, caplog):
    trainer = make_trainer(train_split, tmp_path)
    trainer.iter = 2
    trainer.checkpointer.save("model_0000002", iteration=2)
    path = tmp_path / "model_0000002.pth"
    data = torch.load(path, weights_only=True)
    del data["trainer"]["run_seed"]  # as written before run seeds existed
    torch.save(data, path)
    resumed = make_trainer(train_split, tmp_path)
    with caplog.at_level(logging.WARNING):
        resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3 and resumed.data_loader.start_iter == 3
    assert "holds no run seed" in caplog.text


def test_precise_bn_stream_continues_where_it_stopped(train_split, tmp_path):
    opts = ["TEST.PRECISE_BN.ENABLED", True, "TEST.EVAL_PERIOD", 3, "TEST.PRECISE_BN.NUM_ITER", 2]
    cfg = tiny_cfg(opts=["DATASETS.TRAIN", (train_split,), "DATASETS.TEST", (),
                         "MODEL.OIM.NUM_PIDS", 4, "SOLVER.IMS_PER_BATCH", 2, "SEED", 7,
                         "OUTPUT_DIR", str(tmp_path)] + opts)  # fmt: skip
    trainer = PersonSearchTrainer(cfg)
    trainer.iter = 7
    trainer.checkpointer.save("model_0000007", iteration=7)
    resumed = PersonSearchTrainer(cfg)
    resumed.resume_or_load(resume=True)
    (precise,) = [h for h in resumed._hooks if isinstance(h, d2_hooks.PreciseBN)]
    loader = precise._data_loader
    # PreciseBN took NUM_ITER batches after iterations 2 and 5: the next run starts at batch 4
    assert loader.start_iter == 4
    assert loader.seed == derive_seed(7, PRECISE_BN_STREAM) != resumed.data_loader.seed
