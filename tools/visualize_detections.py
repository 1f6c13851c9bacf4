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
import random
import sys
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from tqdm import tqdm

import personsearch  # noqa: F401  (registers the built-in splits)
from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from personsearch.utils.cli import (
    add_register_json_argument,
    register_json_datasets,
)
from personsearch.utils.model_tools import (
    build_inference_model,
    gt_boxes_xyxy,
    load_config,
    resolve_dataset,
    to_original,
)
from personsearch.utils.visualizer import (
    UNLABELED_COLOR,
    default_thickness,
    draw_box,
    read_image,
)

logger = logging.getLogger("personsearch.tools.visualize_detections")

SCORE_CMAP = "viridis"  # detection scores, 0 (dark purple) .. 1 (yellow)
ATTENTION_CMAP = "jet"  # pixel attention, as in the NAE paper's figure


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


# ----------------------------------------------------------------------------------------------
# model (the same few steps as tools/analyze_iou.py)
# ----------------------------------------------------------------------------------------------
def has_attention(roi_heads: torch.nn.Module) -> bool:
    """Whether the RoI head outputs a pixel attention map: NAE+'s re-ID head, or UGAS's attention
    SFM (``AttentionShallowFusionModule`` with spatial attention)."""
    reid_head = getattr(roi_heads, "reid_head", None)
    if "attention" in getattr(type(reid_head), "outputs", ()):
        return True
    ugas = getattr(roi_heads, "ugas", None)
    return getattr(getattr(ugas, "sfm", None), "spatial", None) is not None


def sfm_attention_maps(gates, level_weights: torch.Tensor) -> torch.Tensor:
    """One (R, h, w) map in [0, 1] per box from UGAS's attention SFM: each level's spatial gate
    (in (0, 2), 1 = neutral) resized to the largest level's size, averaged with the box's level
    weights, divided by 2.

    Args:
        gates: per level, (R, 1, h_l, w_l) gates.
        level_weights: (R, L) level weights (mean 1 over the levels).
    """
    size = max((g.shape[-2:] for g in gates), key=lambda hw: hw[0] * hw[1])
    up = [F.interpolate(g.float(), size=tuple(size), mode="bilinear", align_corners=False)
          for g in gates]  # fmt: skip
    w = level_weights.float() / level_weights.float().sum(dim=1, keepdim=True)
    mixed = sum(w[:, i, None, None] * u[:, 0] for i, u in enumerate(up))
    return (mixed / 2.0).clamp(0.0, 1.0)


def score_description(cfg: CfgNode) -> str:
    """What the detection score of the config's RoI head is (the colorbar's label)."""
    name = cfg.MODEL.ROI_HEADS.NAME
    if name == "SeqNetROIHeads":
        return f"SeqNet {cfg.MODEL.SEQNET.SCORE} score"
    if name == "NAEPlusROIHeads":
        return "NAE+ score (mean attention / image max)"
    if name == "NAEROIHeads":
        return "NAE score (sigmoid of the rescaled norm)"
    if name == "OIMROIHeads":
        return "OIM person probability (softmax)"
    return f"{name} detection score"


@torch.no_grad()
def detect_image(model: torch.nn.Module, inputs: Dict, attention: bool) -> Dict[str, np.ndarray]:
    """The model's detections of one mapped input.

    Args:
        model: a person-search model in eval mode.
        inputs: one output of :class:`PersonSearchDatasetMapper` (test mode).
        attention: also compute each detection's attention map (NAE+ heads) on its final box.

    Returns:
        ``{"boxes": (N, 4) float XYXY in original pixels, "scores": (N,), "attention":
        (N, h, w) in [0, 1] or None}``, best score first.
    """
    images = model.preprocess_image([inputs])
    features = model.backbone(images.tensor)
    proposals, _ = model.proposal_generator(images, features, None)
    heads = model.roi_heads
    instances = heads(images, features, proposals)[0][0]
    maps = None
    if attention:
        boxes = [instances.pred_boxes]
        out = heads.reid_forward(features, boxes, heads.roi_features(features, boxes))
        if "attention" in out:  # NAE+: (R, 1, h, w)
            maps = out["attention"][:, 0].float().cpu().numpy()
        elif out.get("sfm_attention"):  # UGAS's attention SFM: per level (R, 1, h_l, w_l)
            maps = sfm_attention_maps(out["sfm_attention"], out["sfm_level_weights"])
            maps = maps.cpu().numpy()
    boxes = to_original(
        instances.pred_boxes.tensor, images.image_sizes[0], inputs["height"], inputs["width"]
    )
    scores = instances.scores
    order = torch.argsort(scores, descending=True).cpu()
    return {
        "boxes": boxes.float().cpu().numpy()[order],
        "scores": scores.float().cpu().numpy()[order],
        "attention": None if maps is None else maps[order],
    }


# ----------------------------------------------------------------------------------------------
# drawing
# ----------------------------------------------------------------------------------------------
def score_colors(scores: np.ndarray, cmap: str = SCORE_CMAP) -> np.ndarray:
    """(N, 3) uint8 RGB colours of scores in [0, 1] under ``cmap``."""
    rgba = colormaps[cmap](np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0))
    return np.round(np.asarray(rgba)[..., :3] * 255).astype(np.uint8).reshape(-1, 3)


def overlay_attention(
    image: np.ndarray, box: Sequence[float], attention: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
    """Blend an attention map over a box, in place.

    Args:
        image: (H, W, 3) uint8 RGB.
        box: XYXY in pixels; the covered pixels are those of the box rounded outwards, clipped.
        attention: (h, w) values in [0, 1], resized bilinearly (half-pixel centres, as
            ``align_corners=False``) to the box and coloured with :data:`ATTENTION_CMAP`.
        alpha: opacity of the heatmap.
    """
    h, w = image.shape[:2]
    x1, y1 = int(max(0, np.floor(box[0]))), int(max(0, np.floor(box[1])))
    x2, y2 = int(min(w, np.ceil(box[2]))), int(min(h, np.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        return image
    up = cv2.resize(
        np.asarray(attention, dtype=np.float32), (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR
    )
    heat = np.asarray(colormaps[ATTENTION_CMAP](np.clip(up, 0.0, 1.0)))[..., :3] * 255
    region = image[y1:y2, x1:x2].astype(np.float64)
    image[y1:y2, x1:x2] = np.round((1 - alpha) * region + alpha * heat).astype(np.uint8)
    return image


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    attention: Optional[np.ndarray] = None,
    alpha: float = 0.5,
    gt_boxes: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Draw detections in place: attention heatmaps first (if given), then the boxes in their
    score colour with a thin black outline and the score as label; lower scores are drawn first, so
    better detections stay on top. Ground-truth boxes (if given) are thin grey lines underneath.

    Args:
        image: (H, W, 3) uint8 RGB, original pixels.
        boxes: (N, 4) XYXY original pixels; scores: (N,) in [0, 1].
        attention: (N, h, w) maps in [0, 1], or None.
        alpha: opacity of the heatmaps.
        gt_boxes: (G, 4) XYXY, or None.
    """
    if gt_boxes is not None:
        thin = max(1, default_thickness(image) // 2)
        for box in gt_boxes:
            draw_box(image, box, UNLABELED_COLOR, thin)
    order = np.argsort(scores, kind="stable")
    if attention is not None:
        for i in order:
            overlay_attention(image, boxes[i], attention[i], alpha)
    colors = score_colors(scores)
    thick = 2 * default_thickness(image)
    for i in order:
        color = tuple(int(c) for c in colors[i])
        draw_box(image, boxes[i], color, thick, f"{scores[i]:.2f}", outline=(0, 0, 0))
    return image


def render_figure(
    image: np.ndarray, title: str, score_label: str, attention: bool, path: str
) -> str:
    """Save the drawn image with a score colorbar (and an attention colorbar) as a PNG at about
    the image's own resolution (Agg canvas, no pyplot; fixed layout in inches)."""
    h, w = image.shape[:2]
    pad, top, bar, bar_space = 0.1, 0.35, 0.18, 1.05  # inches
    img_h = float(np.clip(h / 100, 4.0, 10.0))
    img_w = img_h * w / h
    bars = [(SCORE_CMAP, score_label)] + (
        [(ATTENTION_CMAP, "pixel attention")] if attention else []
    )
    fig_w, fig_h = pad + img_w + bar_space * len(bars), pad + img_h + top
    fig = Figure(figsize=(fig_w, fig_h))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((pad / fig_w, pad / fig_h, img_w / fig_w, img_h / fig_h))
    ax.imshow(image)
    ax.set_axis_off()
    ax.set_title(title, fontsize="small")
    norm = Normalize(0.0, 1.0)
    for i, (cmap, label) in enumerate(bars):
        left = pad + img_w + 0.15 + i * bar_space
        cax = fig.add_axes((left / fig_w, pad / fig_h, bar / fig_w, img_h / fig_h))
        fig.colorbar(ScalarMappable(norm, cmap), cax=cax, label=label)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=max(100.0, h / img_h))
    return path


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------
def select_records(
    records: Sequence[Dict], num_images: int, image_ids: Optional[Sequence[str]], seed: int
) -> List[Dict]:
    """The records of ``image_ids`` (in that order), or a seeded random sample of ``num_images``
    in split order.

    Raises:
        KeyError: an image id is not in the split.
        ValueError: the split has no images.
    """
    if image_ids:
        by_id = {r["image_id"]: r for r in records}
        missing = [i for i in image_ids if i not in by_id]
        if missing:
            raise KeyError(f"image ids not in the dataset: {missing}")
        return [by_id[i] for i in image_ids]
    if not records:
        raise ValueError("the dataset has no images")
    chosen = sorted(random.Random(seed).sample(range(len(records)), min(num_images, len(records))))
    return [records[i] for i in chosen]


def output_name(image_id: str) -> str:
    """A flat PNG file name for an image id that may contain folders."""
    stem = os.path.splitext(image_id)[0]
    return stem.replace("/", "__").replace("\\", "__") + ".png"


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
