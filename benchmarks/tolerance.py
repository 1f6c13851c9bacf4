"""How far the inference optimisations move a model's outputs (``tools/benchmark.py
optimize-check``): the same model, with the same weights, run on the benchmark image with and
without ``TEST.OPTIMIZE`` (and any other overrides of the fast path, e.g. the CPU RoIAlign), and
the largest differences of its detections and query embeddings.

Detections are matched by their boxes (each other's best box, IoU >= 0.5), so a swap of two nearly
equal scores is not counted as a difference; the differences are over the matched detections and
the others (NMS kept another box of a cluster) are counted as ``unmatched``.
"""

from typing import Dict, List, Sequence

import torch
from detectron2.structures import pairwise_iou

from .inputs import BenchmarkInputs
from .measure import _gallery_input, prepare_for_inference
from .models import model_cfg

REFERENCE = ["TEST.OPTIMIZE.FOLD_BATCHNORM", False, "TEST.OPTIMIZE.CHANNELS_LAST", "off"]
# two detections are the same one when they are each other's best box at this IoU or more
MATCH_IOU = 0.5


def _outputs(cfg, inputs: BenchmarkInputs, weights: str) -> Dict:
    model, info = prepare_for_inference(cfg, inputs, not weights, weights)
    batch = _gallery_input(inputs.gallery_image(), cfg.MODEL.DEVICE, inputs.query_boxes())
    with torch.inference_mode():
        out = model.inference(batch)[0]
    return {"out": out, "optimizations": info["optimizations"]}


def output_differences(
    config_file: str,
    weights: str,
    inputs: BenchmarkInputs,
    opts: Sequence = (),
    fast_opts: Sequence = (),
) -> Dict:
    """Largest differences between a model as built and its optimised form.

    Args:
        config_file, weights: the model ("" weights: random, BatchNorm calibrated, forced).
        inputs: the benchmark image (``height``, ``width``, ``seed``) and query boxes
            (``num_queries``).
        opts: overrides of both runs (e.g. ``MODEL.DEVICE cpu``).
        fast_opts: overrides of the optimised run only (``TEST.OPTIMIZE`` keys are the config's
            otherwise; the reference has folding and channels_last off).

    Returns:
        ``{"detections": (reference, optimised), "box_px", "score", "embedding",
        "query_embedding"}``: counts and max absolute differences, plus the optimisation
        summaries.
    """
    force = not weights
    ref_cfg = model_cfg(config_file, list(opts) + REFERENCE, weights, force)
    fast_cfg = model_cfg(config_file, list(opts) + list(fast_opts), weights, force)
    torch.manual_seed(inputs.seed)
    ref = _outputs(ref_cfg, inputs, weights)
    torch.manual_seed(inputs.seed)
    fast = _outputs(fast_cfg, inputs, weights)
    a, b = ref["out"]["instances"], fast["out"]["instances"]
    result = {
        "detections": (len(a), len(b)),
        "optimizations": fast["optimizations"],
        "query_embedding": float(
            (ref["out"]["query_feats"] - fast["out"]["query_feats"]).abs().max()
        ),
    }
    if len(a) and len(b):
        iou = pairwise_iou(a.pred_boxes, b.pred_boxes)
        match = iou.argmax(dim=1)
        # mutual best boxes overlapping by MATCH_IOU or more are the same detection
        mutual = iou.argmax(dim=0)[match] == torch.arange(len(a))
        mutual &= iou.max(dim=1).values >= MATCH_IOU
        i, j = torch.nonzero(mutual).squeeze(1), match[mutual]
        result.update(
            box_px=float((a.pred_boxes.tensor[i] - b.pred_boxes.tensor[j]).abs().max()),
            score=float((a.scores[i] - b.scores[j]).abs().max()),
            embedding=float((a.reid_feats[i] - b.reid_feats[j]).abs().max()),
            unmatched=int(len(a) - len(i)),
        )
    return result


def format_differences(result: Dict) -> List[str]:
    """Lines for the terminal."""
    lines = [
        f"optimisations: {result['optimizations']}",
        f"detections: {result['detections'][0]} (as built) vs {result['detections'][1]} "
        "(optimised)",
    ]
    for key, label in (("box_px", "box coordinates (px)"), ("score", "detection scores"),
                       ("embedding", "detection embeddings"),
                       ("query_embedding", "query embeddings")):  # fmt: skip
        if key in result:
            lines.append(f"max |difference| of {label}: {result[key]:.3g}")
    if result.get("unmatched"):
        lines.append(f"{result['unmatched']} detections without an optimised counterpart "
                     "(not in the differences above)")  # fmt: skip
    return lines
