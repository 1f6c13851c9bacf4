"""Two-process (gloo, CPU) training and evaluation through ``tools/train_net.py --num-gpus 2``.

* training with ``MODEL.OIM.SYNC_CHECK_PERIOD 1`` passes the check at every iteration and ends
  with bit-identical OIM memories on both ranks;
* the sync check detects a one-ulp difference in one rank's queue and names the buffer;
* evaluation in two processes returns exactly the numbers of one process for the same weights;
* a two-process run resumed from a checkpoint ends in exactly the uninterrupted run's state.
"""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from detectron2.utils import comm
from torch import nn

from personsearch.engine.hooks import check_oim_memories_in_sync, oim_memory_checksums
from personsearch.modeling.losses.oim import OIMLoss
from personsearch.utils.comm import leave_process_group
from tests.common import REPO, cpu_threads, local_dist_url, run_distributed
from tests.engine.runs import (
    assert_same,
    driver_env,
    kill_tree,
    make_tiny_dataset,
    run_train_net,
    train_net_args,
)

OIM_BUFFERS = (
    "roi_heads.reid_loss.lut",
    "roi_heads.reid_loss.queue",
    "roi_heads.reid_loss.queue_head",
)
MAX_ITER = 4


def two_processes():
    """train_net flags for 2 processes with a rendezvous of their own (see local_dist_url)."""
    return ["--num-gpus", "2", "--dist-url", local_dist_url()]


# keep low-scoring detections so that the compared metrics are not all zero
EVAL_OPTS = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "TEST.SEARCH.DET_THRESH", 0.0]
TRAIN_OPTS = ["SOLVER.IMS_PER_BATCH", 4, "SOLVER.MAX_ITER", MAX_ITER, "SEED", 5,
              "SOLVER.CHECKPOINT_PERIOD", 2, "MODEL.OIM.SYNC_CHECK_PERIOD", 1,
              "TEST.EVAL_PERIOD", MAX_ITER] + EVAL_OPTS  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_tiny_dataset(str(tmp_path_factory.mktemp("distributed") / "data"))


@pytest.fixture(scope="module")
def two_process_run(data_root, tmp_path_factory):
    """Train MAX_ITER iterations in two processes, checking the OIM memories every iteration,
    then evaluate (TEST.EVAL_PERIOD = MAX_ITER). Returns the run's folder."""
    run = tmp_path_factory.mktemp("two_process_run")
    (run / "dump").mkdir()
    args = train_net_args(str(run / "train"), TRAIN_OPTS, flags=two_processes())
    env = driver_env(data_root, PS_TEST_DUMP_DIR=str(run / "dump"))
    code, log = run_train_net(args, env, str(run / "log.txt"))
    assert code == 0, log[-4000:]
    return run


def test_two_process_training_keeps_oim_memories_identical(two_process_run):
    ranks = [torch.load(two_process_run / "dump" / f"rank{r}.pth") for r in (0, 1)]
    for state in ranks:
        assert state["iter"] == MAX_ITER  # detectron2 leaves iter at max_iter after training
        assert state["num_checks"] == MAX_ITER  # the sync check ran after every iteration
        assert set(state["buffers"]) == set(OIM_BUFFERS)
    for name in OIM_BUFFERS:
        assert torch.equal(ranks[0]["buffers"][name], ranks[1]["buffers"][name]), name
    assert ranks[0]["checksums"] == ranks[1]["checksums"]
    # the memories were really updated, from the people of both ranks
    lut = ranks[0]["buffers"]["roi_heads.reid_loss.lut"]
    assert (lut.norm(dim=1) > 0.99).sum() >= 2
    assert int(ranks[0]["buffers"]["roi_heads.reid_loss.queue_head"]) > 0
    # rank 0's final checkpoint holds these memories too
    saved = torch.load(two_process_run / "train" / "model_final.pth", weights_only=True)["model"]
    for name in OIM_BUFFERS:
        assert torch.equal(saved[name], ranks[0]["buffers"][name]), name


def test_two_process_evaluation_equals_single_process(two_process_run, data_root):
    weights = str(two_process_run / "train" / "model_final.pth")
    results, raw = {}, {}
    for procs in (1, 2):
        out = two_process_run / f"eval{procs}"
        args = train_net_args(
            str(out), ["MODEL.WEIGHTS", weights] + EVAL_OPTS,
            flags=["--eval-only", "--num-gpus", str(procs), "--dist-url", local_dist_url()],
        )  # fmt: skip
        env = driver_env(data_root, PS_TEST_RESULTS=str(out / "results.pth"))
        code, log = run_train_net(args, env, str(two_process_run / f"eval{procs}.log"))
        assert code == 0, log[-4000:]
        results[procs] = torch.load(out / "results.pth")
        raw[procs] = torch.load(out / "inference" / "driver_test" / "search_results.pth")
    assert results[1]["search"]["mAP"] > 0 and results[1]["detection"]["recall"] > 0
    assert results[2] == results[1]  # exact float equality
    # the evaluation at the end of the two-process training (rank 0) gave the same numbers
    assert torch.load(two_process_run / "dump" / "rank0.pth")["eval"] == results[1]
    assert torch.load(two_process_run / "dump" / "rank1.pth")["eval"] == {}
    # and so did every detection and feature behind them
    assert raw[1]["gallery"].keys() == raw[2]["gallery"].keys()
    for image_id, det in raw[1]["gallery"].items():
        for key, value in det.items():
            assert torch.equal(
                torch.as_tensor(value), torch.as_tensor(raw[2]["gallery"][image_id][key])
            )
    for q1, q2 in zip(raw[1]["queries"], raw[2]["queries"]):
        assert torch.equal(torch.as_tensor(q1["feat"]), torch.as_tensor(q2["feat"]))


def test_two_process_resume_matches_the_uninterrupted_run(two_process_run, data_root):
    # continue the two-process run from its checkpoint after iteration 1, in two processes
    out = two_process_run / "resumed"
    out.mkdir()
    shutil.copy(two_process_run / "train" / "model_0000001.pth", out)
    (out / "last_checkpoint").write_text("model_0000001.pth")
    (out / "dump").mkdir()
    opts = TRAIN_OPTS + ["DATASETS.TEST", "()"]
    args = train_net_args(str(out), opts, flags=two_processes() + ["--resume"])
    env = driver_env(data_root, PS_TEST_DUMP_DIR=str(out / "dump"))
    code, log = run_train_net(args, env, str(two_process_run / "resumed.log"))
    assert code == 0, log[-4000:]
    assert "Starting training from iteration 2" in log
    a = torch.load(two_process_run / "train" / "model_final.pth", weights_only=True)
    b = torch.load(out / "model_final.pth", weights_only=True)
    assert_same(a, b, "model_final.pth")  # rank 0: model, optimizer, scheduler, iteration
    for rank in (0, 1):  # every rank's OIM memories
        full = torch.load(two_process_run / "dump" / f"rank{rank}.pth")["buffers"]
        resumed = torch.load(out / "dump" / f"rank{rank}.pth")["buffers"]
        assert_same(full, resumed, f"rank {rank}")


def _desync_worker(out_dir):
    cpu_threads(1)
    rank = comm.get_rank()
    model = nn.ModuleDict({"head": OIMLoss(num_pids=3, queue_size=4, feat_dim=2)})
    g = torch.Generator().manual_seed(0)  # the same memories on both ranks
    model["head"].lut.copy_(torch.randn(3, 2, generator=g))
    model["head"].queue.copy_(torch.randn(4, 2, generator=g))
    model["head"].queue_head.fill_(2)
    names = check_oim_memories_in_sync(model, iteration=6)
    if rank == 1:  # one ulp in one entry of one rank's queue
        q = model["head"].queue
        q[2, 1] = torch.nextafter(q[2, 1], torch.tensor(float("inf")))
    try:
        check_oim_memories_in_sync(model, iteration=7)
        message = "no error"
    except RuntimeError as e:
        message = str(e)
    torch.save({"names": names, "message": message}, os.path.join(out_dir, f"rank{rank}.pth"))
    leave_process_group()


def test_sync_check_detects_a_desynchronised_queue(tmp_path):
    run_distributed(_desync_worker, 2, str(tmp_path))
    for rank in (0, 1):  # every rank raises, so none waits for the other in a collective
        out = torch.load(tmp_path / f"rank{rank}.pth")
        assert out["names"] == ["head.lut", "head.queue", "head.queue_head"]
        msg = out["message"]
        assert "iteration 7" in msg and "'head.queue' differs" in msg, msg
        assert "head.lut" not in msg and "head.queue_head" not in msg, msg


def test_checksums_name_every_oim_buffer_and_see_one_ulp():
    model = nn.ModuleDict({"a": OIMLoss(num_pids=2, queue_size=3, feat_dim=2)})
    before = oim_memory_checksums(model)
    assert set(before) == {"a.lut", "a.queue", "a.queue_head"}
    model["a"].lut[1, 0] = torch.nextafter(torch.tensor(0.0), torch.tensor(1.0))
    after = oim_memory_checksums(model)
    assert after["a.lut"][0] != before["a.lut"][0]
    assert after["a.queue"] == before["a.queue"]


def _init_gather_leave_rounds(rank: int, rounds: int, folder: str) -> None:
    """Process ``rank`` of 2: join a new gloo group, all-gather, leave; ``rounds`` times."""
    import torch.distributed as dist

    from personsearch.utils.comm import all_gather_rows

    cpu_threads(1)
    for r in range(rounds):
        dist.init_process_group(
            "gloo", init_method=f"file://{folder}/round{r}", world_size=2, rank=rank
        )
        for _ in range(3):
            all_gather_rows(torch.randn(3 + rank, 4))
        leave_process_group()


def test_leaving_the_process_group_after_collectives_does_not_deadlock(tmp_path):
    # torch 2.3's gloo group destructor can deadlock with a worker thread still freeing gathered
    # tensors; leave_process_group avoids it. Without the fix this loop hung within 50 rounds in
    # 4 of 4 runs; a hang shows here as a timeout instead of a stuck test suite.
    code = (
        "import sys, torch.multiprocessing as mp; "
        "from tests.engine.test_distributed import _init_gather_leave_rounds as w; "
        "mp.spawn(w, args=(50, sys.argv[1]), nprocs=2)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # kill_tree reaches the spawned ranks too
    )
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        pytest.fail("init / all-gather / leave_process_group rounds hung (deadlock at teardown)")
    assert proc.returncode == 0, out[-3000:]
