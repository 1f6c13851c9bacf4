#!/usr/bin/env python
"""Draw a person-search model's detections on test images, coloured by their detection score.

Every detection whose score is above ``--score-thresh`` is drawn with a colour of the score
colormap (colorbar on the right) and its score printed above the box. The score is the one the
model returns: OIM the softmax person probability, NAE the sigmoid of the rescaled embedding norm,
NAE+ the mean pixel attention divided by the image's largest, SeqNet the stage-1 softmax score
(``MODEL.SEQNET.SCORE stage1``). For heads whose re-ID head outputs a pixel attention map (NAE+,
``PixelNormAwareEmbeddingHead``) each drawn detection also shows its h x w attention map, upsampled
bilinearly to the box and blended over it as a semi-transparent heatmap, as in the NAE paper's
figure. UGAS models with the attention SFM (``MODEL.UGAS.SFM.NAME
AttentionShallowFusionModule``) show its spatial attention the same way: the shallow levels'
gates averaged with the box's level weights (the poster's "visualization of attention weights").

The attention map of a detection is computed on the detection's **final** (regressed) box. The
model's score of that detection comes from the proposal the box was regressed from (the reference
scores proposals, then regresses and suppresses them), so the mean of the drawn map need not equal
the printed score; the map shows where, inside the box that is reported, the network sees a person.

Running the model, drawing and the attention maps are :mod:`personsearch.visualization`
(``detections``, ``attention``).

Writes ``OUTPUT/<image>.png`` per image and ``OUTPUT/index.json`` (the settings and, per image, the
PNG, the number of people and of detections, and the drawn boxes in original pixels with their
scores), and prints the paths. If ``--score-thresh`` is below the config's
``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` the model's threshold is lowered to it, so that those
detections exist (boxes above the config's threshold are unchanged by this: lower-scored boxes
cannot suppress higher-scored ones in NMS). Examples::

    python tools/visualize_detections.py --config-file configs/synthetic/NAE+_R10.yaml \\
        --num-images 4 --output out/dets MODEL.WEIGHTS output/nae_plus/model_final.pth
    python tools/visualize_detections.py --config-file configs/SeqNet_R50.yaml \\
        --dataset cuhk_sysu_test --images s15535.jpg s15536.jpg MODEL.WEIGHTS model_final.pth
"""

import argparse
import json
import logging
import os
import sys
from typing import Dict, Optional, Sequence

import numpy as np
from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

import personsearch  # noqa: F401  (registers the built-in splits)
from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from personsearch.utils.cli import add_register_json_argument, register_json_datasets
from personsearch.utils.model_tools import (
    build_inference_model,
    gt_boxes_xyxy,
    load_config,
    resolve_dataset,
)
from personsearch.utils.visualizer import read_image
from personsearch.visualization.attention import has_attention
from personsearch.visualization.detections import (
    detect_image,
    draw_detections,
    render_figure,
    score_description,
)
from personsearch.visualization.selection import output_name, select_records

logger = logging.getLogger("personsearch.tools.visualize_detections")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments (``argv`` defaults to ``sys.argv[1:]``); ``args.cfg`` is the config
    with the overrides applied and ``args.dataset`` the split to draw (the config's first
    ``DATASETS.TEST`` unless ``--dataset`` names one)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, help="the model's config (yaml)")
    parser.add_argument("--dataset", default="", help="registered split (default: DATASETS.TEST)")
    parser.add_argument("--num-images", type=int, default=8, help="random images to draw")
    parser.add_argument("--images", nargs="+", default=None, help="draw these image ids instead")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the image sample")
    parser.add_argument(
        "--score-thresh", type=float, default=0.5, help="draw detections with a score above this"
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the attention maps")
    parser.add_argument("--show-gt", action="store_true", help="also draw the ground truth (grey)")
    parser.add_argument("--output", default="output/visualize_detections", help="output folder")
    add_register_json_argument(parser)
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides KEY VALUE ..., after the flags (after a list-valued flag, put -- "
        "first)",
    )
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error("--num-images must be >= 1")
    if not 0.0 <= args.score_thresh < 1.0:
        parser.error(f"--score-thresh must be in [0, 1), got {args.score_thresh}")
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha must be in [0, 1], got {args.alpha}")
    args.cfg = load_config(parser, args.config_file, args.opts)
    register_json_datasets(args.register_json)
    args.dataset = resolve_dataset(parser, args.dataset, args.cfg)
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Draw the selected images; returns the index written to ``OUTPUT/index.json``."""
    setup_logger(name="personsearch", abbrev_name="ps")
    args = parse_args(argv)
    cfg = args.cfg
    model_thresh = cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST
    if args.score_thresh < model_thresh:
        logger.info(
            f"MODEL.ROI_HEADS.SCORE_THRESH_TEST lowered from {model_thresh} to --score-thresh "
            f"{args.score_thresh}"
        )
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.score_thresh
    cfg.freeze()
    records = DatasetCatalog.get(args.dataset)
    try:
        selected = select_records(records, args.num_images, args.images, args.seed)
    except (KeyError, ValueError) as e:
        raise SystemExit(f"{args.dataset}: {e.args[0]}") from e

    model = build_inference_model(cfg)
    attention = has_attention(model.roi_heads)
    mapper = PersonSearchDatasetMapper(cfg, False)
    label = score_description(cfg)
    index = {
        "config_file": args.config_file,
        "weights": cfg.MODEL.WEIGHTS,
        "dataset": args.dataset,
        "score_thresh": args.score_thresh,
        "score": label,
        "attention": attention,
        "images": [],
    }
    os.makedirs(args.output, exist_ok=True)
    for record in tqdm(selected, desc="detecting and drawing"):
        dets = detect_image(model, mapper(record), attention)
        keep = dets["scores"] > args.score_thresh
        boxes, scores = dets["boxes"][keep], dets["scores"][keep]
        maps = None if dets["attention"] is None else dets["attention"][keep]
        gt = gt_boxes_xyxy(record)
        image = read_image(record["file_name"])
        draw_detections(image, boxes, scores, maps, args.alpha, gt if args.show_gt else None)
        title = (
            f"{record['image_id']}: {len(boxes)} of {len(dets['boxes'])} detections with score > "
            f"{args.score_thresh:g}; {len(gt)} people"
        )
        path = os.path.join(args.output, output_name(record["image_id"]))
        render_figure(image, title, label, maps is not None, path)
        index["images"].append(
            {
                "image_id": record["image_id"],
                "png": path,
                "num_people": int(len(gt)),
                "num_detections": int(len(dets["boxes"])),
                "num_drawn": int(len(boxes)),
                "boxes": np.round(boxes.astype(np.float64), 2).tolist(),
                "scores": np.round(scores.astype(np.float64), 4).tolist(),
            }
        )
    index_path = os.path.join(args.output, "index.json")
    with open(index_path, "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2)
    for entry in index["images"]:
        print(entry["png"])
    print(index_path)
    return index


if __name__ == "__main__":
    main(sys.argv[1:])
