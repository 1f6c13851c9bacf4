"""How far the inference optimisations move a model's outputs (``tools/benchmark.py
optimize-check``): the same model, with the same weights, run on the benchmark image with and
without ``TEST.OPTIMIZE`` (and any other overrides of the fast path, e.g. the CPU RoIAlign), and
the largest differences of its detections and query embeddings.

Detections are matched by their boxes (each reference box with the nearest optimised one, L1),
so a swap of two nearly equal scores is not counted as a difference.
"""

from typing import Dict, List, Sequence

import torch

from .inputs import BenchmarkInputs
from .measure import _gallery_input, prepare_for_inference
from .models import model_cfg

REFERENCE = ["TEST.OPTIMIZE.FOLD_BATCHNORM", False, "TEST.OPTIMIZE.CHANNELS_LAST", "off"]


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
        dist = torch.cdist(a.pred_boxes.tensor, b.pred_boxes.tensor, p=1)
        match = dist.argmin(dim=1)
        result.update(
            box_px=float((a.pred_boxes.tensor - b.pred_boxes.tensor[match]).abs().max()),
            score=float((a.scores - b.scores[match]).abs().max()),
            embedding=float((a.reid_feats - b.reid_feats[match]).abs().max()),
            unmatched=len(a) - len(set(match.tolist())),
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
        lines.append(f"{result['unmatched']} detections without an optimised counterpart")
    return lines
