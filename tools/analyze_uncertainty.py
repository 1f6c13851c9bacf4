#!/usr/bin/env python
"""Does a UGAS model's uncertainty track box quality? Held-out boxes, controlled degradations.

For every ground-truth person of a split (``--max-images``: the first N images) the model embeds
the exact box, the same box shifted to IoU ``--ious`` (default 0.9 0.7 0.5) with the ground truth,
and the exact box in the image downscaled so that the person is below ``--lowres-height`` pixels
(default 60), and reports each box's uncertainty (``MODEL.UGAS.UG.OUTPUT_VARIANCE`` is switched on;
the model needs a variance-predicting UG). Writes to ``--output``:

* ``uncertainty.json``: the settings, the statistics (Spearman correlation of uncertainty with
  IoU over the exact and jittered boxes and with the person's height over the exact boxes, the
  spread of uncertainty across exact boxes, per degradation the share of persons whose degraded
  box is more uncertain than the exact one, occluded vs visible queries where the split has an
  occlusion protocol) and every measured box;
* ``uncertainty.md``: the statistics as tables (also printed);
* ``uncertainty.png``: uncertainty per degradation (box plot), against person height and
  against IoU.

For a UG that works, uncertainty rises as boxes degrade (negative correlations). Example::

    python tools/analyze_uncertainty.py --config-file configs/synthetic/UGAS_R10.yaml \\
        --output out/uncertainty MODEL.WEIGHTS output/demo/train/model_final.pth
"""

import argparse
import json
import logging
import os
import sys
from typing import Dict, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

import personsearch  # noqa: F401  (registers the built-in splits)
from personsearch.data.datasets.cuhk_sysu import load_cuhk_sysu_protocol
from personsearch.engine import PersonSearchPredictor
from personsearch.evaluation.uncertainty_analysis import (
    measure_uncertainty,
    occluded_queries,
    summarize_uncertainty,
)
from personsearch.utils.cli import add_register_json_argument, register_json_datasets
from personsearch.utils.model_tools import load_config, resolve_dataset

logger = logging.getLogger("personsearch.tools.analyze_uncertainty")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Arguments; ``args.cfg`` is the config with the overrides and the variance output on."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, help="the model's config")
    parser.add_argument("--dataset", default="", help="split (default: the config's test split)")
    parser.add_argument("--output", required=True, help="folder for the JSON, markdown and PNG")
    parser.add_argument("--max-images", type=int, default=0, help="first N images (0: all)")
    parser.add_argument("--ious", type=float, nargs="+", default=[0.9, 0.7, 0.5])
    parser.add_argument(
        "--lowres-height",
        type=float,
        default=60.0,
        help="person height after downscaling, pixels (0: no low-res variant)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the jitter directions")
    add_register_json_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if any(not 0 < t <= 1 for t in args.ious):
        parser.error(f"--ious must be in (0, 1], got {args.ious}")
    if args.max_images < 0:
        parser.error(f"--max-images must be >= 0, got {args.max_images}")
    register_json_datasets(args.register_json)
    args.cfg = load_config(parser, args.config_file, args.opts)
    args.cfg.defrost()
    args.cfg.MODEL.UGAS.UG.OUTPUT_VARIANCE = True
    args.cfg.freeze()
    args.dataset = resolve_dataset(parser, args.dataset, args.cfg)
    return args


def occlusion_set(dataset: str):
    """The occluded queries of a CUHK-SYSU-format split, or None when it has no Occlusion.mat."""
    meta = MetadataCatalog.get(dataset)
    if getattr(meta, "protocol", None) != "cuhk_sysu":
        return None
    try:
        return occluded_queries(load_cuhk_sysu_protocol(meta.root, subset="occlusion"))
    except FileNotFoundError:
        return None


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(summary: Dict) -> str:
    """The statistics as markdown tables."""
    lines = ["| boxes | n | mean | std | p10 | p50 | p90 | more uncertain than exact |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, v in summary["variants"].items():
        paired = summary["paired"].get(name)
        share = "-" if paired is None else f"{100 * paired['more_uncertain']:.0f} %"
        lines.append(
            f"| {name} | {v['n']} | {v['mean']:.3f} | {v['std']:.3f} | {v['p10']:.3f} | "
            f"{v['p50']:.3f} | {v['p90']:.3f} | {share} |"
        )
    rho = {k: summary[k] for k in ("spearman_iou", "spearman_height")}
    lines += ["", "| statistic | value |", "|---|---|"]
    for key, label in (("spearman_iou", "Spearman(uncertainty, IoU)"),
                       ("spearman_height", "Spearman(uncertainty, person height)")):  # fmt: skip
        r = rho[key]
        lines.append(f"| {label} | " + ("n/a" if r is None else
                     f"{r['rho']:.3f} (p = {r['p']:.1e}, n = {r['n']})") + " |")  # fmt: skip
    spread = summary["spread"] or {}
    lines.append(f"| spread of exact boxes (std / IQR) | {_fmt(spread.get('std'))} / "
                 f"{_fmt(spread.get('iqr'))} |")  # fmt: skip
    occ = summary["occlusion"]
    if occ is not None:
        lines.append(
            f"| P(occluded query more uncertain than a visible one) | {occ['auc']:.3f} "
            f"(p = {occ['p']:.1e}; {occ['n_occluded']} vs {occ['n_visible']}) |"
        )
    return "\n".join(lines)


def plot(rows, path: str) -> None:
    """Box plot per degradation, uncertainty vs height and vs IoU, as one PNG."""
    fig = Figure(figsize=(15, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    names = list(dict.fromkeys(r["variant"] for r in rows))
    axes[0].boxplot([[r["uncertainty"] for r in rows if r["variant"] == n] for n in names],
                    showfliers=False)  # fmt: skip
    axes[0].set_xticks(range(1, len(names) + 1), names)
    axes[0].set_ylabel("uncertainty (mean log-variance)")
    axes[0].set_title("by degradation")
    gt = [r for r in rows if r["variant"] == "gt"]
    axes[1].scatter([r["height"] for r in gt], [r["uncertainty"] for r in gt], s=6, alpha=0.5)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("person height (px)")
    axes[1].set_title("exact boxes: vs person height")
    boxes = [r for r in rows if r["variant"] == "gt" or r["variant"].startswith("iou")]
    axes[2].scatter([r["iou"] for r in boxes], [r["uncertainty"] for r in boxes], s=6, alpha=0.4)
    axes[2].set_xlabel("IoU with the ground truth")
    axes[2].set_title("exact and jittered boxes: vs IoU")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    setup_logger(name="personsearch")
    predictor = PersonSearchPredictor(args.cfg)
    records = DatasetCatalog.get(args.dataset)
    if args.max_images:
        records = records[: args.max_images]
    occluded = occlusion_set(args.dataset)
    rows = measure_uncertainty(
        predictor,
        records,
        ious=args.ious,
        lowres_height=args.lowres_height,
        seed=args.seed,
        occluded=occluded,
        progress=lambda it: tqdm(it, desc="images", unit="img"),
    )
    if not rows:
        raise SystemExit(f"{args.dataset}: no ground-truth person boxes to analyse")
    summary = summarize_uncertainty(rows)
    os.makedirs(args.output, exist_ok=True)
    result = {
        "config_file": args.config_file,
        "weights": args.cfg.MODEL.WEIGHTS,
        "dataset": args.dataset,
        "images": len(records),
        "ious": args.ious,
        "lowres_height": args.lowres_height,
        "seed": args.seed,
        "summary": summary,
        "boxes": rows,
    }
    with open(os.path.join(args.output, "uncertainty.json"), "w") as f:
        json.dump(result, f, indent=1)
    text = markdown(summary)
    with open(os.path.join(args.output, "uncertainty.md"), "w") as f:
        f.write(text + "\n")
    plot(rows, os.path.join(args.output, "uncertainty.png"))
    print(text)
    print(f"wrote {args.output}/uncertainty.json, uncertainty.md, uncertainty.png")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
