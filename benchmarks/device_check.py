"""The predictor's device path checked on a small model (``tools/gpu_bench.sh``, seconds):

    python -m benchmarks.device_check cuda OUT.json

``PersonSearchPredictor`` on the device (pinned inputs, non-blocking copies, all outputs copied
back with one synchronisation; float32 and bfloat16) against the same weights on the CPU, and a
batch of images against single calls. Prints and writes a JSON summary; the exit status is 1 when
the outputs are not on the CPU or a float32 batch differs from single calls by more than
``BATCH_ATOL``.
"""

import json
import os
import sys
import tempfile
import time
from typing import Dict

import numpy as np
import torch

CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "configs",
    "synthetic",
    "NAE+_R10.yaml",
)
# a float32 batch against single calls on the same device (kernels may sum in another order)
BATCH_ATOL = 1e-4


def check(device: str, config: str = CONFIG, size=(384, 512), images: int = 4) -> Dict:
    """Run the check (see the module docstring) and return its summary."""
    from detectron2.modeling import build_model

    from personsearch import get_person_search_cfg
    from personsearch.engine import PersonSearchPredictor

    opts = ["MODEL.WEIGHTS", "", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "MODEL.DEVICE", "cpu"]
    cfg = get_person_search_cfg(config, opts)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.MODEL.WEIGHTS = os.path.join(tmp, "random.pth")
        torch.save({"model": build_model(cfg).state_dict()}, cfg.MODEL.WEIGHTS)
        rng = np.random.RandomState(0)
        imgs = [rng.randint(0, 256, size + (3,), dtype=np.uint8) for _ in range(images)]
        h, w = size
        boxes = [[0.02 * w, 0.03 * h, 0.12 * w, 0.4 * h], [0.4 * w, 0.1 * h, 0.5 * w, 0.5 * h]]
        reference = [PersonSearchPredictor(cfg)(im, query_boxes=boxes) for im in imgs]
        result: Dict = {"device": device}
        for precision in ("float32", "bfloat16"):
            c = cfg.clone()
            c.MODEL.DEVICE = device
            c.TEST.AMP.ENABLED = precision != "float32"
            predictor = PersonSearchPredictor(c)
            batch = predictor.batch(imgs, query_boxes=[boxes] * len(imgs))
            single = [predictor(im, query_boxes=boxes) for im in imgs]
            t0 = time.perf_counter()
            predictor.batch(imgs, query_boxes=[boxes] * len(imgs))
            seconds = time.perf_counter() - t0
            result[precision] = {
                "outputs_on_cpu": all(
                    b["query_feats"].device.type == "cpu"
                    and b["instances"].reid_feats.device.type == "cpu"
                    for b in batch
                ),
                "batch_vs_single_query": max(
                    float((b["query_feats"] - s["query_feats"]).abs().max())
                    for b, s in zip(batch, single)
                ),
                "device_vs_cpu_query": max(
                    float((b["query_feats"] - r["query_feats"]).abs().max())
                    for b, r in zip(batch, reference)
                ),
                "detections": [len(b["instances"]) for b in batch],
                "detections_cpu": [len(r["instances"]) for r in reference],
                "batch_seconds": seconds,
                "optimizations": predictor.optimizations,
            }
    return result


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m benchmarks.device_check DEVICE OUT.json")
        return 2
    result = check(argv[0])
    print("predictor check:", json.dumps(result))
    with open(argv[1], "w") as f:
        json.dump(result, f, indent=2)
    fp32 = result["float32"]
    ok = fp32["outputs_on_cpu"] and result["bfloat16"]["outputs_on_cpu"]
    return 0 if ok and fp32["batch_vs_single_query"] <= BATCH_ATOL else 1


if __name__ == "__main__":
    sys.exit(main())
