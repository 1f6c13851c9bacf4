"""The NAE-family heads and UGAS under ``tools/train_net.py --num-gpus 2`` (gloo, CPU): SyncBN in
the heads, every OIM memory (the main one and UGAS's per-branch ones) identical on both ranks at
every iteration; and an exact resume of a UGAS run (its extra memories included)."""

import shutil

import pytest
import torch

from tests.common import local_dist_url
from tests.engine.runs import (
    assert_same,
    driver_env,
    make_tiny_dataset,
    run_train_net,
    train_net_args,
)

MAX_ITER = 3
UGAS_TINY = ["MODEL.UGAS.SFM.CONV_DIM", 8, "MODEL.UGAS.SFM.EMBED_DIM", 16,
             "MODEL.UGAS.SD.START_ITER", 1]  # fmt: skip
SYNC_BN = ["MODEL.REID_HEAD.NORM", "SyncBN", "MODEL.UGAS.SFM.NORM", "SyncBN",
           "MODEL.UGAS.UG.NORM", "SyncBN"]  # fmt: skip
TRAIN = ["SOLVER.IMS_PER_BATCH", 4, "SOLVER.MAX_ITER", MAX_ITER, "SEED", 3,
         "SOLVER.CHECKPOINT_PERIOD", 1, "MODEL.OIM.SYNC_CHECK_PERIOD", 1,
         "DATASETS.TEST", "()"]  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_tiny_dataset(str(tmp_path_factory.mktemp("distributed_heads") / "data"))


def _train(run, data_root, config, opts, procs, flags=()):
    (run / "dump").mkdir(parents=True, exist_ok=True)
    dist = ["--num-gpus", str(procs), "--dist-url", local_dist_url()]
    args = train_net_args(str(run / "train"), opts, flags=dist + list(flags), config_file=config)
    env = driver_env(data_root, PS_TEST_DUMP_DIR=str(run / "dump"))
    code, log = run_train_net(args, env, str(run / "log.txt"))
    assert code == 0, log[-4000:]
    return log


@pytest.mark.parametrize(
    "config,opts,memories",
    [
        ("synthetic/UGAS_R10.yaml", UGAS_TINY + SYNC_BN, 3),  # SeqNet + SFM + SD + UG
        ("synthetic/NAE+_R10.yaml", ["MODEL.REID_HEAD.NORM", "SyncBN"], 1),
    ],
)
def test_two_processes_with_syncbn_keep_every_memory_identical(
    data_root, tmp_path, config, opts, memories
):
    log = _train(tmp_path, data_root, config, TRAIN + opts, procs=2)
    assert "SyncBatchNormND" in log  # the heads' BatchNorms are synchronised
    ranks = [torch.load(tmp_path / "dump" / f"rank{r}.pth") for r in (0, 1)]
    assert ranks[0]["num_checks"] == MAX_ITER
    names = sorted(ranks[0]["buffers"])
    assert len(names) == 3 * memories  # lut, queue, queue_head of every OIM memory
    for name in names:
        assert torch.equal(ranks[0]["buffers"][name], ranks[1]["buffers"][name]), name
    luts = [n for n in names if n.endswith(".lut")]
    assert all(ranks[0]["buffers"][n].norm(dim=1).max() > 0.99 for n in luts)


def test_a_resumed_ugas_run_ends_in_the_uninterrupted_state(data_root, tmp_path):
    full = tmp_path / "full"
    _train(full, data_root, "synthetic/UGAS_R10.yaml", TRAIN + UGAS_TINY, procs=1)
    resumed = tmp_path / "resumed"
    (resumed / "train").mkdir(parents=True)
    shutil.copy(full / "train" / "model_0000000.pth", resumed / "train")
    (resumed / "train" / "last_checkpoint").write_text("model_0000000.pth")
    log = _train(resumed, data_root, "synthetic/UGAS_R10.yaml", TRAIN + UGAS_TINY, procs=1,
                 flags=["--resume"])  # fmt: skip
    assert "Starting training from iteration 1" in log
    a = torch.load(full / "train" / "model_final.pth", weights_only=True)
    b = torch.load(resumed / "train" / "model_final.pth", weights_only=True)
    assert any(k.startswith("roi_heads.ugas.shallow_loss.") for k in a["model"])
    assert_same(a, b, "model_final.pth")
