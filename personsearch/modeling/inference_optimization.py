"""Inference-only optimisations of a built model (``TEST.OPTIMIZE``), applied by
:class:`~personsearch.engine.PersonSearchPredictor` and ``tools/benchmark.py``; never during
training.

* **BatchNorm folding** (:func:`~.fold_batchnorm.fold_batchnorm`): every BatchNorm that follows a
  convolution or linear layer is folded into it;
* **channels_last**: 4-D weights (and therefore every feature map, RoI map and the RoIAlign of the
  CPU) in NHWC order, which oneDNN (CPU) and cuDNN's tensor-core kernels (GPU, bf16/fp16) run
  without transposing copies;
* **torch.compile** (optional, off by default) of the fixed-shape parts only: the backbone and the
  res5 RoI heads, with inductor's ``freezing`` (weights as constants). Proposal generation,
  RoIAlign, NMS and post-processing stay eager.

All three compute the same function up to float rounding: the outputs equal those of the model
as built, to the tolerances tested in ``tests/modeling/test_inference_optimization.py`` and
documented in MODEL_ZOO.md ("Speed").
"""

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import nn

from .fold_batchnorm import fold_batchnorm

__all__ = ["CHANNELS_LAST_CHOICES", "InferenceOptions", "optimize_for_inference"]

logger = logging.getLogger(__name__)

# values of TEST.OPTIMIZE.CHANNELS_LAST
CHANNELS_LAST_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class InferenceOptions:
    """What :func:`optimize_for_inference` does.

    Attributes:
        fold_batchnorm: fold BatchNorm layers into the layers before them.
        channels_last: "on", "off", or "auto" (on for the CPU, and on a GPU under
            ``TEST.AMP``; off for a GPU in float32, where cuDNN's TF32 kernels take NCHW as well).
        compile: ``torch.compile`` the backbone and the res5 RoI heads.
    """

    fold_batchnorm: bool = True
    channels_last: str = "auto"
    compile: bool = False

    def __post_init__(self):
        if self.channels_last not in CHANNELS_LAST_CHOICES:
            raise ValueError(
                f"TEST.OPTIMIZE.CHANNELS_LAST must be one of {CHANNELS_LAST_CHOICES}, got "
                f"{self.channels_last!r}"
            )

    @classmethod
    def from_config(cls, cfg) -> "InferenceOptions":
        """The options of ``cfg.TEST.OPTIMIZE``."""
        o = cfg.TEST.OPTIMIZE
        return cls(
            fold_batchnorm=bool(o.FOLD_BATCHNORM),
            channels_last=str(o.CHANNELS_LAST),
            compile=bool(o.COMPILE),
        )

    def use_channels_last(self, device_type: str, amp: bool) -> bool:
        """Whether channels_last applies on ``device_type`` ("cpu", "cuda") with or without AMP."""
        if self.channels_last != "auto":
            return self.channels_last == "on"
        return device_type == "cpu" or amp


def _device_type(model: nn.Module) -> str:
    param = next(model.parameters(), None)
    return param.device.type if param is not None else "cpu"


def _compile_targets(model: nn.Module) -> Dict[str, nn.Module]:
    """The fixed-shape parts of a (C4) detectron2 model: the backbone and every res5 RoI stage."""
    targets = {}
    if isinstance(getattr(model, "backbone", None), nn.Module):
        targets["backbone"] = model.backbone
    heads = getattr(model, "roi_heads", None)
    if heads is not None:
        for name in ("feature_head", "box_feature_head", "res5"):
            head = getattr(heads, name, None)
            if isinstance(head, nn.Module):
                inner = getattr(head, "res5", head)  # Res5FeatureHead: compile its res5 only
                targets[f"roi_heads.{name}"] = inner
    return targets


def optimize_for_inference(
    model: nn.Module, options: InferenceOptions, amp: Optional[bool] = None
) -> Dict:
    """Apply ``options`` to ``model`` in place (after its weights are loaded).

    Args:
        model: a detectron2 model in eval mode, on its device, weights loaded.
        options: what to do.
        amp: whether the model runs under autocast (for ``channels_last`` "auto"); None: a
            ``PersonSearchRCNN`` with ``TEST.AMP`` on (its ``amp_dtype``).

    Returns:
        A summary: ``{"folded_batchnorm": number of folded pairs, "channels_last": bool,
        "compiled": [names of the compiled parts]}``.

    Raises:
        RuntimeError: ``model`` is in training mode.
    """
    if model.training:
        raise RuntimeError(
            f"optimize_for_inference: {type(model).__name__} is in training mode; call "
            "model.eval() first (the optimisations are for inference only)"
        )
    summary = {"folded_batchnorm": 0, "channels_last": False, "compiled": []}
    if options.fold_batchnorm:
        summary["folded_batchnorm"] = fold_batchnorm(model)
    if amp is None:
        amp = getattr(model, "amp_dtype", None) is not None
    if options.use_channels_last(_device_type(model), amp):
        model.to(memory_format=torch.channels_last)
        summary["channels_last"] = True
    if options.compile:
        # weights are constants at inference: inductor folds them into the compiled graphs
        # (prepacked oneDNN convolutions on the CPU); a no_grad-only setting of this process
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        compiled: List[str] = []
        for name, module in _compile_targets(model).items():
            module.compile(dynamic=None)
            compiled.append(name)
        summary["compiled"] = compiled
    logger.info(
        "Inference optimisations: %d BatchNorm layers folded, channels_last %s, compiled %s",
        summary["folded_batchnorm"],
        "on" if summary["channels_last"] else "off",
        summary["compiled"] or "nothing",
    )
    return summary
