"""Attention maps of person-search RoI heads, and their heatmap overlay on an image.

Two heads give a per-box spatial attention map in [0, 1]:

* NAE+ (``PixelNormAwareEmbeddingHead``): the re-ID head's pixel attention, ``"attention"`` of
  :meth:`reid_forward`, one (h, w) map per box on the res5 grid;
* UGAS with the attention SFM (``MODEL.UGAS.SFM.NAME AttentionShallowFusionModule``): the shallow
  levels' spatial gates, averaged with the box's level weights (:func:`sfm_attention_maps`; the
  UGAS poster's "visualization of attention weights").

:func:`overlay_attention` blends a map over its box as a :data:`ATTENTION_CMAP` heatmap, as in the
NAE paper's figure.
"""

from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from detectron2.structures import Boxes
from matplotlib import colormaps

__all__ = [
    "ATTENTION_CMAP",
    "box_attention_maps",
    "has_attention",
    "overlay_attention",
    "sfm_attention_maps",
]

ATTENTION_CMAP = "jet"  # pixel attention, as in the NAE paper's figure


def has_attention(roi_heads: torch.nn.Module) -> bool:
    """Whether the RoI head outputs a pixel attention map: NAE+'s re-ID head, or UGAS's attention
    SFM (``AttentionShallowFusionModule`` with spatial attention)."""
    reid_head = getattr(roi_heads, "reid_head", None)
    if "attention" in getattr(type(reid_head), "outputs", ()):
        return True
    ugas = getattr(roi_heads, "ugas", None)
    return getattr(getattr(ugas, "sfm", None), "spatial", None) is not None


def sfm_attention_maps(gates: Sequence[torch.Tensor], level_weights: torch.Tensor) -> torch.Tensor:
    """One map in [0, 1] per box from UGAS's attention SFM: each level's spatial gate (in (0, 2),
    1 = neutral) resized to the largest level's size, averaged with the box's level weights,
    divided by 2.

    Args:
        gates: per level l, (R, 1, h_l, w_l) gates.
        level_weights: (R, L) level weights (mean 1 over the levels).

    Returns:
        (R, h, w) float maps, (h, w) the largest level's size.
    """
    size = max((g.shape[-2:] for g in gates), key=lambda hw: hw[0] * hw[1])
    up = [F.interpolate(g.float(), size=tuple(size), mode="bilinear", align_corners=False)
          for g in gates]  # fmt: skip
    w = level_weights.float() / level_weights.float().sum(dim=1, keepdim=True)
    mixed = sum(w[:, i, None, None] * u[:, 0] for i, u in enumerate(up))
    return (mixed / 2.0).clamp(0.0, 1.0)


@torch.no_grad()
def box_attention_maps(
    roi_heads: torch.nn.Module, features: Dict[str, torch.Tensor], boxes: List[Boxes]
) -> Optional[np.ndarray]:
    """The attention map of every box, from the head's re-ID forward on those boxes.

    Args:
        roi_heads: the model's RoI heads (``reid_forward`` and ``roi_features``).
        features: the backbone's feature maps of the batch, each (N, C, H, W).
        boxes: per image, its boxes in the network input's pixels.

    Returns:
        (R, h, w) float maps in [0, 1], R the number of boxes of all images in order; None when
        the head outputs no attention (see :func:`has_attention`).
    """
    out = roi_heads.reid_forward(features, boxes, roi_heads.roi_features(features, boxes))
    if "attention" in out:  # NAE+: (R, 1, h, w)
        return out["attention"][:, 0].float().cpu().numpy()
    if out.get("sfm_attention"):  # UGAS's attention SFM: per level (R, 1, h_l, w_l)
        maps = sfm_attention_maps(out["sfm_attention"], out["sfm_level_weights"])
        return maps.cpu().numpy()
    return None


def overlay_attention(
    image: np.ndarray, box: Sequence[float], attention: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
    """Blend an attention map over a box, in place.

    Args:
        image: (H, W, 3) uint8 RGB.
        box: (4,) XYXY in pixels; the covered pixels are those of the box rounded outwards,
            clipped to the image.
        attention: (h, w) values in [0, 1], resized bilinearly (half-pixel centres, as
            ``align_corners=False``) to the box and coloured with :data:`ATTENTION_CMAP`.
        alpha: opacity of the heatmap.

    Returns:
        ``image``.
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
