"""The training step, guarded against non-finite losses and gradients."""

import logging
import time
from typing import Dict, List

import torch
from detectron2.engine import SimpleTrainer
from detectron2.utils.events import get_event_storage

from personsearch.utils.amp import autocast, autocast_dtype
from personsearch.utils.comm import all_reduce_max

logger = logging.getLogger(__name__)


class GuardedTrainLoop(SimpleTrainer):
    """detectron2's ``SimpleTrainer`` step that never applies a non-finite update.

    Each step checks every loss term before ``backward`` and the gradients after it. A NaN/Inf
    stops training with a ``FloatingPointError`` naming the iteration and the offending losses or
    parameters, unless ``max_skips`` > 0: then up to that many such steps are skipped (no optimizer
    step, logged, counted in the ``nonfinite_skips`` metric and in the trainer state, so the count
    survives a resume). Under distributed training the decision is the same on every rank: a
    non-finite loss on any rank makes all ranks skip (gradients are all-reduced, so their check
    agrees by construction).
    """

    def __init__(self, model, data_loader, optimizer, max_skips: int = 0, amp_dtype: str = ""):
        """
        Args:
            model, data_loader, optimizer: see ``SimpleTrainer``.
            max_skips: number of non-finite steps that may be skipped before stopping.
            amp_dtype: "" (float32), or "bfloat16" / "float16" to run the forward pass under
                ``torch.autocast`` (``SOLVER.AMP``). float16 (CUDA only) scales the loss with a
                ``GradScaler``, whose own skipped steps (inf gradients while it calibrates) are
                not counted as non-finite steps.
        """
        super().__init__(model, data_loader, optimizer)
        self.max_skips = max_skips
        self.num_skipped = 0
        self.device_type = next(model.parameters()).device.type
        self.amp_dtype = (
            autocast_dtype(amp_dtype, self.device_type, "SOLVER.AMP.DTYPE") if amp_dtype else None
        )
        self.grad_scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def run_step(self):
        # SimpleTrainer.run_step's contract for subclasses, as detectron2's AMPTrainer uses it:
        # the batch from the (private) lazily created iterator _data_loader_iter, the metrics
        # through _write_metrics (checked against detectron2 0.7.2 and upstream 02b5c4e2).
        assert self.model.training, "[GuardedTrainLoop] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        with autocast(self.amp_dtype is not None, self.device_type, self.amp_dtype):
            loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        loss_dict = {k: v.float() for k, v in loss_dict.items()}
        bad = [k for k, v in loss_dict.items() if not torch.isfinite(v).all()]
        flag = all_reduce_max(torch.tensor([float(bool(bad))], device=_device(loss_dict)))
        if flag.item() > 0:
            self._non_finite("loss", bad or ["(a loss on another rank)"], loss_dict)
            return
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        if self.grad_scaler is not None:
            self.grad_scaler.scale(losses).backward()
            self.after_backward()
            self._write_metrics(loss_dict, data_time)
            self.grad_scaler.step(self.optimizer)  # unscales first: clipping sees true norms
            self.grad_scaler.update()
            return
        losses.backward()
        self.after_backward()
        bad_params = self._non_finite_gradients()
        if bad_params:
            self.optimizer.zero_grad()
            self._non_finite("gradient", bad_params, loss_dict)
            return
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()

    def _non_finite_gradients(self) -> List[str]:
        named = [(n, p.grad) for n, p in self.model.named_parameters() if p.grad is not None]
        if not named:
            return []
        norms = torch.stack([torch.linalg.vector_norm(g.detach().float()) for _, g in named])
        if torch.isfinite(norms).all():
            return []
        return [n for (n, _), v in zip(named, norms) if not torch.isfinite(v)]

    def _non_finite(self, what: str, names: List[str], loss_dict: Dict[str, torch.Tensor]) -> None:
        values = ", ".join(f"{k}={v.detach().float().item():.4g}" for k, v in loss_dict.items())
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        msg = f"Non-finite {what} at iteration {self.iter}: {shown}. Losses: {values}."
        self.num_skipped += 1
        get_event_storage().put_scalar("nonfinite_skips", self.num_skipped)
        if self.num_skipped > self.max_skips:
            raise FloatingPointError(
                msg + f" (SOLVER.NONFINITE.MAX_SKIPS={self.max_skips}; raise it to skip such "
                "steps, or lower SOLVER.BASE_LR / check the data)"
            )
        logger.warning(msg + f" Step skipped ({self.num_skipped}/{self.max_skips}).")

    def state_dict(self):
        ret = super().state_dict()
        ret["num_nonfinite_skipped"] = self.num_skipped
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.num_skipped = int(state_dict.get("num_nonfinite_skipped", 0))
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])


def _device(loss_dict: Dict[str, torch.Tensor]) -> torch.device:
    for v in loss_dict.values():
        return v.device
    return torch.device("cpu")
