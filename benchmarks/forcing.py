"""Forced mode: a random-weight model that does the full amount of work.

A model with random weights is useless for timing as it is: through 50 layers of random
convolutions its BatchNorm running statistics (mean 0, variance 1 at initialisation) no longer
match the activations, which explode, the RPN scores become non-finite or degenerate, and the RoI
heads receive no valid proposal, so they do no work at all (an R50 once measured "50x faster"
this way). Forced mode fixes the three things that decide how much work a C4 person-search
model does per image:

1. **BatchNorm calibration** (:func:`calibrate_batchnorm`): every ``torch.nn`` BatchNorm layer is
   put in training mode with cumulative averaging (``momentum=None``, statistics reset) for a few
   inference passes over the benchmark images (gallery and query paths), then back to eval mode.
   The activations are then normalised as in a trained network and every later layer sees sane
   inputs. Weights are left untouched (detectron2's ``FrozenBatchNorm2d`` cannot be calibrated and
   is counted instead).
2. **Proposals**: the RPN keeps its configured post-NMS top-k at test time
   (``MODEL.RPN.POST_NMS_TOPK_TEST``, 300 for the R50 configs).
3. **No box is dropped** (:func:`forced_overrides`): RoI score threshold 0
   (``MODEL.ROI_HEADS.SCORE_THRESH_TEST``) and NMS threshold 1.0 (``MODEL.ROI_HEADS.
   NMS_THRESH_TEST``, and SeqNet's second-stage ``MODEL.SEQNET.NMS_THRESH_TEST``), so every head
   processes and returns ``min(POST_NMS_TOPK_TEST, TEST.DETECTIONS_PER_IMAGE)`` boxes (SeqNet's
   second stage embeds all 300 first-stage boxes).

With trained weights the statistics are valid already: calibration is skipped and only the
thresholds are forced (``--no-force``: nothing is changed).
"""

from typing import Callable, Dict, List

import torch
from detectron2.layers import FrozenBatchNorm2d
from torch import nn

# the thresholds of forced mode
FORCED_SCORE_THRESH = 0.0
FORCED_NMS_THRESH = 1.0


def forced_overrides(cfg) -> List:
    """``KEY VALUE`` config overrides of forced mode for ``cfg`` (see the module docstring)."""
    opts = [
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", FORCED_SCORE_THRESH,
        "MODEL.ROI_HEADS.NMS_THRESH_TEST", FORCED_NMS_THRESH,
    ]  # fmt: skip
    if "SEQNET" in cfg.MODEL:
        opts += ["MODEL.SEQNET.NMS_THRESH_TEST", FORCED_NMS_THRESH]
    return opts


def expected_detections(cfg) -> int:
    """Detections per image a forced model returns when the RPN yields its full top-k."""
    topk = int(cfg.MODEL.RPN.POST_NMS_TOPK_TEST)
    limit = int(cfg.TEST.DETECTIONS_PER_IMAGE)
    return min(topk, limit) if limit >= 0 else topk


def batchnorm_layers(model: nn.Module) -> List[nn.modules.batchnorm._BatchNorm]:
    """Every ``torch.nn`` BatchNorm layer of ``model`` (1d, 2d, 3d, SyncBN and subclasses)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, passes: List[Callable[[], object]]) -> Dict[str, int]:
    """Re-estimate every BatchNorm layer's running statistics from ``passes``.

    The model stays in eval mode except its BatchNorm layers, which run in training mode with
    cumulative averaging over all the batches they see (``momentum=None`` after
    ``reset_running_stats``); afterwards they are back in eval mode with their original momentum.

    Args:
        model: the model (in eval mode).
        passes: callables, each running one inference pass of the model (gallery image, query
            boxes, ...). Each layer's statistics are the mean over every batch it saw.

    Returns:
        ``{"calibrated": number of BatchNorm layers, "frozen": number of FrozenBatchNorm2d layers
        left as they are}``.
    """
    layers = batchnorm_layers(model)
    saved = [(m, m.momentum) for m in layers]
    for m in layers:
        if m.track_running_stats:
            m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for run in passes:
            run()
    finally:
        for m, momentum in saved:
            m.momentum = momentum
            m.eval()
    frozen = sum(1 for m in model.modules() if isinstance(m, FrozenBatchNorm2d))
    return {"calibrated": len(layers), "frozen": frozen}
