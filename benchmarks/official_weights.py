"""The same weights for an official model and our converted one
(``tools/benchmark.py official-weights``), so that ``compare --official`` times two
implementations of the same function on the same numbers.

The official model is built with random weights, configured for the benchmark (forced thresholds,
the size's identity resize) and its BatchNorm statistics are calibrated on the benchmark images,
exactly as ``compare --official`` does on its own. Its state dict is written in the official
checkpoint layout, then converted with :func:`personsearch.checkpoint.convert_official_state_dict`
(what ``tools/convert_checkpoint.py`` does) for ``configs/official/<method>_R50.yaml``: our model
with the compatibility components that reproduce the official inference. ``compare`` then loads
them with ``--configs configs/official/SeqNet_R50.yaml=<converted>`` and ``--official-weights
seqnet=<official>``.
"""

import os
from typing import Dict

import torch

from .inputs import BenchmarkInputs
from .official_code import check_official_path

# the config each official model converts to (as tools/convert_checkpoint.py)
TARGET_CONFIGS = {
    "seqnet": "configs/official/SeqNet_R50.yaml",
    "nae": "configs/official/NAE_R50.yaml",
    "nae+": "configs/official/NAE+_R50.yaml",
}
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_official_weights(
    impl: str,
    root: str,
    inputs: BenchmarkInputs,
    out_dir: str,
    pre_nms_topk: int = 6000,
    post_nms_topk: int = 300,
) -> Dict[str, str]:
    """Write the calibrated official weights and their conversion.

    Args:
        impl: "seqnet", "nae" or "nae+".
        root: the root of the official clone.
        inputs: the benchmark inputs (size, seed, calibration images).
        out_dir: where to write ``official_<impl>.pth`` and ``converted_<impl>.pth``.
        pre_nms_topk, post_nms_topk: the RPN's test top-k (as ``compare`` sets them).

    Returns:
        ``{"official": path, "converted": path, "config": our config for the converted file}``.

    Raises:
        FileNotFoundError, ValueError: a bad clone path or implementation name.
        personsearch.checkpoint.ConversionError: the weights do not convert.
    """
    from detectron2.modeling import build_model

    from personsearch import get_person_search_cfg
    from personsearch.checkpoint import convert_official_state_dict

    from .measure_official import prepare_official_eval

    spec = {
        "impl": impl,
        "path": check_official_path(impl, root),
        "device": "cpu",
        "precision": "float32",
        "pre_nms_topk": pre_nms_topk,
        "post_nms_topk": post_nms_topk,
        "detections": post_nms_topk,
    }
    model, _ = prepare_official_eval(spec, inputs, torch.device("cpu"))
    os.makedirs(out_dir, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    official_path = os.path.join(out_dir, f"official_{impl.replace('+', 'plus')}.pth")
    torch.save({"model": state}, official_path)
    config = os.path.join(_REPO, TARGET_CONFIGS[impl])
    cfg = get_person_search_cfg(config, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    target = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    converted, _ = convert_official_state_dict(state, impl, target)
    converted_path = os.path.join(out_dir, f"converted_{impl.replace('+', 'plus')}.pth")
    torch.save({"model": converted, "__author__": f"benchmark official-weights {impl}"},
               converted_path)  # fmt: skip
    return {"official": official_path, "converted": converted_path, "config": config}
