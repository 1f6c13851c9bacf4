"""A person-search model's detections on one image, drawn with their score colours.

:func:`detect_image` runs the model on one mapped input and returns its detections in original
pixels (and, for heads that have one, each detection's attention map on its final box);
:func:`draw_detections` draws them on the image, each box in the :data:`SCORE_CMAP` colour of its
score, and :func:`render_figure` saves the drawing with its colorbars as a PNG. Typical use::

    dets = detect_image(model, mapper(record), has_attention(model.roi_heads))
    image = read_image(record["file_name"])
    draw_detections(image, dets["boxes"], dets["scores"], dets["attention"])
    render_figure(image, record["image_id"], score_description(cfg), True, "out.png")

The attention map of a detection is computed on the detection's **final** (regressed) box, while
its score comes from the proposal the box was regressed from, so the mean of the drawn map need
not equal the printed score.
"""

import os
from typing import Dict, Optional

import numpy as np
import torch
from detectron2.config import CfgNode
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from personsearch.utils.model_tools import to_original
from personsearch.utils.visualizer import UNLABELED_COLOR, default_thickness, draw_box

from .attention import ATTENTION_CMAP, box_attention_maps, overlay_attention

__all__ = [
    "SCORE_CMAP",
    "detect_image",
    "draw_detections",
    "render_figure",
    "score_colors",
    "score_description",
]

SCORE_CMAP = "viridis"  # detection scores, 0 (dark purple) .. 1 (yellow)


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
        attention: also compute each detection's attention map on its final box (heads for
            which :func:`~personsearch.visualization.attention.has_attention` holds).

    Returns:
        ``{"boxes": (N, 4) float XYXY in original pixels, "scores": (N,), "attention":
        (N, h, w) in [0, 1] or None}``, best score first.
    """
    images = model.preprocess_image([inputs])
    features = model.backbone(images.tensor)
    proposals, _ = model.proposal_generator(images, features, None)
    heads = model.roi_heads
    instances = heads(images, features, proposals)[0][0]
    maps = box_attention_maps(heads, features, [instances.pred_boxes]) if attention else None
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


def score_colors(scores: np.ndarray, cmap: str = SCORE_CMAP) -> np.ndarray:
    """Colours of values in [0, 1] (clipped) under a colormap.

    Args:
        scores: (N,) values.
        cmap: a matplotlib colormap name.

    Returns:
        (N, 3) uint8 RGB.
    """
    rgba = colormaps[cmap](np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0))
    return np.round(np.asarray(rgba)[..., :3] * 255).astype(np.uint8).reshape(-1, 3)


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
        boxes: (N, 4) XYXY original pixels.
        scores: (N,) in [0, 1].
        attention: (N, h, w) maps in [0, 1], or None.
        alpha: opacity of the heatmaps.
        gt_boxes: (G, 4) XYXY original pixels, or None.

    Returns:
        ``image``.
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
    the image's own resolution (Agg canvas, no pyplot; fixed layout in inches).

    Args:
        image: (H, W, 3) uint8 RGB, as drawn by :func:`draw_detections`.
        title: the line above the image.
        score_label: the score colorbar's label (:func:`score_description`).
        attention: also add the :data:`ATTENTION_CMAP` colorbar.
        path: the PNG to write; its folder is created.

    Returns:
        ``path``.
    """
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
