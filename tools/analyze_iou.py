#!/usr/bin/env python
"""How well a person-search model's boxes cover the ground truth, by person height.

SeqNet's motivation figure and the UGAS poster's IoU-distribution figure. For every test image
(``--max-images``: the first N of the split) three box sets are compared with the ground truth, all
in original pixels:

* ``proposals``: the RPN proposals (``MODEL.RPN.POST_NMS_TOPK_TEST`` per image);
* ``stage1`` (SeqNet models only): the stage-1 detections (``SeqNetROIHeads.detect_stages``);
* ``detections``: the model's final detections (after ``MODEL.ROI_HEADS.SCORE_THRESH_TEST``).

For each ground-truth person and box set, the *best IoU* is the largest IoU of any box of the set
with the person (0 without boxes); the person is *recalled* when it is >= ``--iou-thresh`` (0.5). A
box is *matched* to the person it overlaps most when that IoU is >= the threshold. People are binned
by their height in original pixels (``--height-bins``, default 0 60 100 200 400 inf: bins [0,60),
[60,100), [100,200), [200,400), >=400); a matched box goes to its person's bin.

Writes to ``--output``:

* ``iou_summary.json``: the settings and, per box set and height bin (and ``all``): number of
  people, number recalled, recall, mean best IoU, number of matched boxes and their mean IoU
  (``null`` where nothing was counted);
* ``iou_summary.md``: the same as a table (also printed);
* ``iou_histograms.png``: per height bin, the best-IoU distribution of every box set (top row) and
  the IoU distribution of the matched boxes (bottom row);
* ``recall_by_height.png``: recall and mean best IoU per height bin, every box set.

The statistics, table and plots are :mod:`personsearch.evaluation.iou_analysis`.

Example::

    python tools/analyze_iou.py --config-file configs/synthetic/SeqNet_R10.yaml \\
        --output out/iou MODEL.WEIGHTS output/seqnet/model_final.pth
"""

import argparse
import json
import os
import sys
from typing import Dict, Optional, Sequence

import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

import personsearch  # noqa: F401  (registers the built-in splits)
from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from personsearch.evaluation.iou_analysis import (
    DEFAULT_EDGES,
    IoUCollector,
    box_sets_of,
    gt_boxes_xyxy,
    image_box_sets,
    plot_histograms,
    plot_recall,
    summarize,
    summary_table,
)
from personsearch.utils.cli import add_register_json_argument, register_json_datasets
from personsearch.utils.model_tools import build_inference_model, load_config, resolve_dataset


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments (``argv`` defaults to ``sys.argv[1:]``); ``args.cfg`` is the config
    with the overrides applied and ``args.dataset`` the split to analyse (the config's first
    ``DATASETS.TEST`` unless ``--dataset`` names one)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, help="the model's config (yaml)")
    parser.add_argument("--dataset", default="", help="registered split (default: DATASETS.TEST)")
    parser.add_argument("--max-images", type=int, default=0, help="first N images (0: all)")
    parser.add_argument(
        "--height-bins",
        nargs="+",
        type=float,
        default=list(DEFAULT_EDGES),
        metavar="EDGE",
        help="increasing bin edges of the person height in pixels (default 0 60 100 200 400 inf)",
    )
    parser.add_argument("--iou-thresh", type=float, default=0.5, help="recall / matching IoU")
    parser.add_argument("--output", default="output/analyze_iou", help="output folder")
    add_register_json_argument(parser)
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides KEY VALUE ..., after the flags (after a list-valued flag, put -- "
        "first)",
    )
    args = parser.parse_args(argv)
    if args.max_images < 0:
        parser.error("--max-images must be >= 0")
    if not 0.0 < args.iou_thresh <= 1.0:
        parser.error(f"--iou-thresh must be in (0, 1], got {args.iou_thresh}")
    edges = np.asarray(args.height_bins, dtype=np.float64)
    if edges.size < 2 or np.isnan(edges).any() or (np.diff(edges) <= 0).any() or edges[0] < 0:
        parser.error(
            f"--height-bins must be at least 2 increasing, non-negative edges; got "
            f"{args.height_bins}"
        )
    args.cfg = load_config(parser, args.config_file, args.opts)
    register_json_datasets(args.register_json)
    args.dataset = resolve_dataset(parser, args.dataset, args.cfg)
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Analyse the split; prints the table and the written paths, returns the JSON summary."""
    setup_logger(name="personsearch", abbrev_name="ps")
    args = parse_args(argv)
    cfg = args.cfg
    cfg.freeze()
    records = DatasetCatalog.get(args.dataset)
    if args.max_images:
        records = records[: args.max_images]
    if not records:
        raise SystemExit(f"{args.dataset}: the dataset has no images")
    os.makedirs(args.output, exist_ok=True)
    model = build_inference_model(cfg)
    mapper = PersonSearchDatasetMapper(cfg, False)
    collector = IoUCollector(box_sets_of(model.roi_heads), args.iou_thresh)
    for record in tqdm(records, desc="IoU of the box sets"):
        collector.add(gt_boxes_xyxy(record), image_box_sets(model, mapper(record)))

    edges = list(args.height_bins)
    summary = summarize(collector, edges, args.config_file, cfg.MODEL.WEIGHTS, args.dataset)
    box_sets = summary["box_sets"]
    table = summary_table(box_sets, args.iou_thresh)
    paths = [
        os.path.join(args.output, "iou_summary.json"),
        os.path.join(args.output, "iou_summary.md"),
    ]
    with open(paths[0], "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    with open(paths[1], "w", encoding="utf-8") as f:
        f.write(table + "\n")
    paths.append(
        plot_histograms(collector, box_sets, edges, os.path.join(args.output, "iou_histograms.png"))
    )
    paths.append(
        plot_recall(
            box_sets, edges, args.iou_thresh, os.path.join(args.output, "recall_by_height.png")
        )
    )
    print(table)
    print()
    for path in paths:
        print(path)
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
