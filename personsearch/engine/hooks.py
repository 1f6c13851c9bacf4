"""Training hooks: deterministic per-iteration seeding and the cross-rank OIM memory check."""

import hashlib
import logging
from typing import Dict, List, Tuple

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm
from torch import nn

from personsearch.data.samplers import STEP_STREAM, derive_seed, seed_all_rngs
from personsearch.modeling.losses.oim import OIMLoss
from personsearch.utils.comm import unwrap_model

logger = logging.getLogger(__name__)


class StepSeedHook(HookBase):
    """Before every iteration, seed python's, numpy's and torch's RNGs (all devices) from
    ``derive_seed(run_seed, STEP_STREAM, iteration, rank)``.

    The random choices of a training step (RPN and RoI sampling, anything else that draws from
    the global generators) then depend only on the run seed, the iteration and the rank, not on
    what ran before, so a resumed run repeats them exactly without saving generator states. The
    run seed is read from ``trainer.run_seed`` at every step (it may be restored from a
    checkpoint after the hook is built).
    """

    def before_step(self):
        seed = derive_seed(self.trainer.run_seed, STEP_STREAM, self.trainer.iter, comm.get_rank())
        seed_all_rngs(seed)


def oim_memory_checksums(model: nn.Module) -> Dict[str, Tuple[int, float]]:
    """A checksum of every buffer of every :class:`OIMLoss` in ``model``.

    Args:
        model: the model (wrappers such as DDP are removed).

    Returns:
        ``{qualified buffer name: (64-bit BLAKE2b hash of its bytes, sum of its values)}``, e.g.
        ``"roi_heads.reid_loss.queue"``. The hash detects any difference; the sum is for reading.
    """
    out = {}
    for module_name, module in unwrap_model(model).named_modules():
        if not isinstance(module, OIMLoss):
            continue
        for buffer_name, buf in module.named_buffers(recurse=False):
            t = buf.detach().to("cpu").contiguous().reshape(-1)
            digest = hashlib.blake2b(t.view(torch.uint8).numpy().tobytes(), digest_size=8)
            name = f"{module_name}.{buffer_name}" if module_name else buffer_name
            out[name] = (int.from_bytes(digest.digest(), "little"), float(t.double().sum()))
    return out


def check_oim_memories_in_sync(model: nn.Module, iteration: int) -> List[str]:
    """Compare the OIM memories of all ranks; a collective call (every rank must make it).

    Args:
        model: this rank's model.
        iteration: the training iteration, for the error message.

    Returns:
        The names of the buffers compared (the same on every rank).

    Raises:
        RuntimeError: on every rank, if a buffer differs between ranks (or the ranks hold
            different OIM buffers); the message names the buffers, the iteration and the
            per-rank sums.
    """
    local = oim_memory_checksums(model)
    if comm.get_world_size() == 1:
        return sorted(local)
    every = comm.all_gather(local)
    names = sorted(set().union(*every))
    problems = []
    for name in names:
        values = [ranks.get(name) for ranks in every]
        if any(v is None for v in values):
            missing = [r for r, v in enumerate(values) if v is None]
            problems.append(f"buffer {name!r} is missing on rank(s) {missing}")
        elif len({v[0] for v in values}) > 1:
            sums = ", ".join(f"rank {r}: sum={v[1]:.9g}" for r, v in enumerate(values))
            problems.append(f"buffer {name!r} differs ({sums})")
    if problems:
        raise RuntimeError(
            f"OIM memories are not identical across ranks at iteration {iteration}: "
            + "; ".join(problems)
            + ". Every rank must apply the same all-gathered memory updates (see "
            "personsearch/modeling/losses/oim.py); a difference means a rank updated its memories "
            "on its own (e.g. a custom head calling the loss outside the all-gather) or loaded a "
            "different checkpoint."
        )
    return names


class OIMSyncCheckHook(HookBase):
    """Every ``period`` iterations (and after the last one), check that the OIM lookup tables,
    queues and queue heads are bit-identical on every rank (``MODEL.OIM.SYNC_CHECK_PERIOD``).

    A debugging aid for distributed training: it costs one hash of each memory and one small
    all-gather per check. Raises ``RuntimeError`` on every rank when they differ (see
    :func:`check_oim_memories_in_sync`). Does nothing in a single process.
    """

    def __init__(self, period: int):
        """
        Args:
            period: check after every ``period``-th iteration (> 0).
        """
        if period <= 0:
            raise ValueError(
                f"MODEL.OIM.SYNC_CHECK_PERIOD must be > 0 to build the hook, got {period}"
            )
        self._period = period
        self.num_checks = 0
        self.last_checked_iter = -1

    def before_train(self):
        names = list(oim_memory_checksums(self.trainer.model))
        if not names:
            logger.warning("MODEL.OIM.SYNC_CHECK_PERIOD is set but the model has no OIM loss.")
        elif comm.get_world_size() > 1:
            logger.info(
                f"Checking every {self._period} iterations that these buffers are identical on "
                f"all {comm.get_world_size()} ranks: {', '.join(names)}"
            )

    def after_step(self):
        if comm.get_world_size() == 1:
            return
        next_iter = self.trainer.iter + 1
        if next_iter % self._period == 0 or next_iter == self.trainer.max_iter:
            check_oim_memories_in_sync(self.trainer.model, self.trainer.iter)
            self.num_checks += 1
            self.last_checked_iter = self.trainer.iter
