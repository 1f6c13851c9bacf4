"""Runs ``tools/train_net.py`` in a subprocess with a test dataset registered (test helper).

    python tests/engine/train_net_driver.py [train_net.py arguments]

Environment:

* ``PS_TEST_DATA``: a CUHK-SYSU-format folder, registered as ``driver_train`` / ``driver_test``;
* ``PS_TEST_RESULTS`` (optional): rank 0 saves what ``train_net.main`` returns there
  (``torch.save``);
* ``PS_TEST_STEP_DELAY`` (optional): sleep that many seconds after every iteration (gives a
  test time to kill the run between two checkpoints);
* ``PS_TEST_DUMP_DIR`` (optional): after training, every rank saves its OIM buffers, the state
  of its OIM sync-check hook and its last evaluation results to ``rank{r}.pth`` there.

The registration runs at import, so that ``launch``'s spawned workers (which re-import this file)
have the datasets too.
"""

import os
import sys
import time

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))

import train_net  # noqa: E402

from personsearch.data.datasets.cuhk_sysu import register_cuhk_sysu  # noqa: E402
from personsearch.engine import OIMSyncCheckHook, PersonSearchTrainer  # noqa: E402
from personsearch.engine.hooks import oim_memory_checksums  # noqa: E402
from personsearch.modeling.losses.oim import OIMLoss  # noqa: E402
from personsearch.utils.comm import unwrap_model  # noqa: E402

register_cuhk_sysu("driver_train", os.environ["PS_TEST_DATA"], "train")
register_cuhk_sysu("driver_test", os.environ["PS_TEST_DATA"], "test")


class DumpOIMState(HookBase):
    """Saves this rank's OIM buffers, sync-check counters and last evaluation results after
    training (registered last, so after the final evaluation)."""

    def after_train(self):
        model = unwrap_model(self.trainer.model)
        buffers = {
            f"{name}.{key}": value.detach().clone()
            for name, m in model.named_modules()
            if isinstance(m, OIMLoss)
            for key, value in m.named_buffers(recurse=False)
        }
        checks = [h for h in self.trainer._hooks if isinstance(h, OIMSyncCheckHook)]
        out = {
            "buffers": buffers,
            "checksums": oim_memory_checksums(model),
            "num_checks": checks[0].num_checks if checks else None,
            "iter": self.trainer.iter,
            "eval": getattr(self.trainer, "_last_eval_results", None),
        }
        torch.save(out, os.path.join(os.environ["PS_TEST_DUMP_DIR"], f"rank{comm.get_rank()}.pth"))


class Delay(HookBase):
    """Sleeps after every iteration (no state, so checkpoints are unchanged)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def after_step(self):
        time.sleep(self.seconds)


def _extra_hooks():
    hooks = []
    if os.environ.get("PS_TEST_STEP_DELAY"):
        hooks.append(Delay(float(os.environ["PS_TEST_STEP_DELAY"])))
    if os.environ.get("PS_TEST_DUMP_DIR"):
        hooks.append(DumpOIMState())
    return hooks


_build_hooks = PersonSearchTrainer.build_hooks
PersonSearchTrainer.build_hooks = lambda self: _build_hooks(self) + _extra_hooks()

_main = train_net.main


def main_saving_results(args):
    """``train_net.main``, with rank 0's return value saved to ``$PS_TEST_RESULTS``."""
    main_process = comm.is_main_process()  # main() closes the process group before returning
    res = _main(args)
    if main_process and os.environ.get("PS_TEST_RESULTS"):
        torch.save(res, os.environ["PS_TEST_RESULTS"])
    return res


train_net.main = main_saving_results

if __name__ == "__main__":
    train_net.invoke_main(sys.argv[1:])
