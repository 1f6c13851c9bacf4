"""How well a person-search model's boxes cover the ground truth, by person height: the
statistics, tables and plots behind ``tools/analyze_iou.py`` (SeqNet's motivation figure and the
UGAS poster's IoU-distribution figure).

Three box sets of an image are compared with its ground truth, all in original pixels:
``proposals`` (the RPN proposals), ``stage1`` (SeqNet models only: the stage-1 detections of
``SeqNetROIHeads.detect_stages``) and ``detections`` (the model's final detections). For each
ground-truth person and box set, the *best IoU* is the largest IoU of any box of the set with the
person (0 without boxes); the person is *recalled* when it is >= the IoU threshold (0.5). A box is
*matched* to the person it overlaps most when that IoU is >= the threshold. People are binned by
their height in original pixels (default edges 0 60 100 200 400 inf); a matched box goes to its
person's bin.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.structures import Boxes, pairwise_iou

from personsearch.data.statistics import HEIGHT_BIN_EDGES
from personsearch.utils.model_tools import gt_boxes_xyxy as original_gt_boxes
from personsearch.utils.model_tools import to_original

__all__ = [
    "BOX_SETS",
    "DEFAULT_EDGES",
    "IoUCollector",
    "bin_index",
    "bin_labels",
    "bin_statistics",
    "box_sets_of",
    "gt_boxes_xyxy",
    "image_box_sets",
    "match_boxes",
    "plot_histograms",
    "plot_recall",
    "summarize",
    "summary_table",
]

DEFAULT_EDGES = tuple(float(e) for e in HEIGHT_BIN_EDGES) + (math.inf,)
BOX_SETS = ("proposals", "stage1", "detections")
DESCRIPTIONS = {
    "proposals": "RPN proposals",
    "stage1": "SeqNet stage-1 detections",
    "detections": "final detections",
}
COLORS = {"proposals": "tab:blue", "stage1": "tab:orange", "detections": "tab:green"}


# ----------------------------------------------------------------------------------------------
# model (the same few steps as personsearch.visualization.detections.detect_image)
# ----------------------------------------------------------------------------------------------
def box_sets_of(roi_heads: torch.nn.Module) -> Tuple[str, ...]:
    """The box sets a RoI head gives: ``stage1`` only for heads with ``detect_stages``."""
    if hasattr(roi_heads, "detect_stages"):
        return BOX_SETS
    return tuple(s for s in BOX_SETS if s != "stage1")


@torch.no_grad()
def image_box_sets(model: torch.nn.Module, inputs: Dict) -> Dict[str, torch.Tensor]:
    """The box sets of one mapped input, each (N, 4) XYXY float on the CPU in original pixels."""
    images = model.preprocess_image([inputs])
    features = model.backbone(images.tensor)
    proposals, _ = model.proposal_generator(images, features, None)
    heads = model.roi_heads
    sets = {"proposals": proposals[0].proposal_boxes.tensor}
    if hasattr(heads, "detect_stages"):
        stage1, final, _ = heads.detect_stages(features, proposals)
        sets["stage1"] = stage1[0].pred_boxes.tensor
    else:
        final = heads(images, features, proposals)[0]
    sets["detections"] = final[0].pred_boxes.tensor
    size = images.image_sizes[0]
    return {
        k: to_original(v.float(), size, inputs["height"], inputs["width"]).cpu()
        for k, v in sets.items()
    }


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------
def gt_boxes_xyxy(record: Dict) -> torch.Tensor:
    """(G, 4) XYXY ground-truth boxes of a record, original pixels."""
    return torch.as_tensor(original_gt_boxes(record), dtype=torch.float32).reshape(-1, 4)


def match_boxes(
    gt: torch.Tensor, boxes: torch.Tensor, iou_thresh: float = 0.5
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IoUs of one image's boxes with its ground truth.

    Args:
        gt: (G, 4) XYXY ground-truth boxes; boxes: (N, 4) XYXY boxes of one set.
        iou_thresh: a box is matched to the person it overlaps most when that IoU is >= this.

    Returns:
        ``(best, matched_iou, matched_gt)``: (G,) the best IoU of each person (0 without boxes);
        (M,) the IoUs of the M matched boxes and (M,) the index of their person.
    """
    if len(gt) == 0 or len(boxes) == 0:
        empty = torch.zeros(0)
        return torch.zeros(len(gt)), empty, empty.long()
    iou = pairwise_iou(Boxes(gt), Boxes(boxes))  # (G, N)
    best = iou.max(dim=1).values
    box_iou, box_gt = iou.max(dim=0)
    matched = box_iou >= iou_thresh
    return best, box_iou[matched], box_gt[matched]


def bin_labels(edges: Sequence[float]) -> List[str]:
    """``[a,b)`` labels of the bins between consecutive edges, ``>=a`` when b is infinite."""
    fmt = lambda v: f"{v:g}"  # noqa: E731
    return [
        f">={fmt(lo)}" if math.isinf(hi) else f"[{fmt(lo)},{fmt(hi)})"
        for lo, hi in zip(edges[:-1], edges[1:])
    ]


def bin_index(heights: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin of each height (``edges[i] <= h < edges[i+1]``), -1 outside ``[edges[0], edges[-1])``."""
    edges = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(edges, np.asarray(heights, dtype=np.float64), side="right") - 1
    idx[(idx < 0) | (idx >= len(edges) - 1)] = -1
    return idx


def _mean(total: float, count: int) -> Optional[float]:
    return float(total / count) if count else None


def bin_statistics(
    gt_heights: np.ndarray,
    best_ious: np.ndarray,
    matched_ious: np.ndarray,
    matched_heights: np.ndarray,
    edges: Sequence[float] = DEFAULT_EDGES,
    iou_thresh: float = 0.5,
) -> Dict[str, Dict]:
    """Statistics of one box set per height bin, and over all people (``"all"``).

    Args:
        gt_heights: (P,) heights of the people (original pixels); best_ious: (P,) their best IoU.
        matched_ious: (M,) IoUs of the matched boxes; matched_heights: (M,) their person's height.
        edges: increasing bin edges (see :func:`bin_index`).
        iou_thresh: recall threshold.

    Returns:
        ``{"all" | label: {"num_gt", "num_recalled", "recall", "mean_best_iou",
        "num_matched_boxes", "mean_matched_iou"}}``; means and recall are None for empty bins.
        People outside the bins count in ``"all"`` only.
    """
    best = np.asarray(best_ious, dtype=np.float64)
    miou = np.asarray(matched_ious, dtype=np.float64)
    nb = len(edges) - 1
    gidx, midx = bin_index(gt_heights, edges), bin_index(matched_heights, edges)

    def per_bin(idx: np.ndarray, weights: Optional[np.ndarray]) -> np.ndarray:
        inside = idx >= 0
        w = None if weights is None else weights[inside]
        return np.bincount(idx[inside], weights=w, minlength=nb)

    columns = {
        "num_gt": (per_bin(gidx, None), best.size),
        "num_recalled": (
            per_bin(gidx, (best >= iou_thresh) * 1.0),
            int((best >= iou_thresh).sum()),
        ),
        "sum_best": (per_bin(gidx, best), best.sum()),
        "num_matched": (per_bin(midx, None), miou.size),
        "sum_matched": (per_bin(midx, miou), miou.sum()),
    }
    out = {}
    for i, label in enumerate(["all"] + bin_labels(edges)):
        v = {k: (total if i == 0 else col[i - 1]) for k, (col, total) in columns.items()}
        num_gt, num_matched = int(v["num_gt"]), int(v["num_matched"])
        out[label] = {
            "num_gt": num_gt,
            "num_recalled": int(round(v["num_recalled"])),
            "recall": _mean(v["num_recalled"], num_gt),
            "mean_best_iou": _mean(v["sum_best"], num_gt),
            "num_matched_boxes": num_matched,
            "mean_matched_iou": _mean(v["sum_matched"], num_matched),
        }
    return out


class IoUCollector:
    """Accumulates, per box set, the people's heights and best IoUs and the matched boxes."""

    def __init__(self, box_sets: Sequence[str], iou_thresh: float = 0.5):
        self.box_sets = tuple(box_sets)
        self.iou_thresh = iou_thresh
        self.heights: List[np.ndarray] = []
        self.best = {s: [] for s in self.box_sets}
        self.matched_iou = {s: [] for s in self.box_sets}
        self.matched_height = {s: [] for s in self.box_sets}
        self.num_boxes = {s: 0 for s in self.box_sets}
        self.num_images = 0

    def add(self, gt: torch.Tensor, sets: Dict[str, torch.Tensor]) -> None:
        """One image: ``gt`` (G, 4) and each box set (N, 4), XYXY original pixels."""
        heights = (gt[:, 3] - gt[:, 1]).double().numpy()
        self.heights.append(heights)
        for s in self.box_sets:
            best, miou, mgt = match_boxes(gt, sets[s], self.iou_thresh)
            self.best[s].append(best.double().numpy())
            self.matched_iou[s].append(miou.double().numpy())
            self.matched_height[s].append(heights[mgt.numpy()])
            self.num_boxes[s] += len(sets[s])
        self.num_images += 1

    def arrays(self, box_set: str) -> Dict[str, np.ndarray]:
        """``{"gt_heights", "best_ious", "matched_ious", "matched_heights"}`` of a box set."""
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
        return {
            "gt_heights": cat(self.heights),
            "best_ious": cat(self.best[box_set]),
            "matched_ious": cat(self.matched_iou[box_set]),
            "matched_heights": cat(self.matched_height[box_set]),
        }

    def summary(self, edges: Sequence[float]) -> Dict[str, Dict]:
        """Per box set: description, box counts and :func:`bin_statistics`."""
        return {
            s: {
                "description": DESCRIPTIONS[s],
                "num_boxes": self.num_boxes[s],
                "boxes_per_image": _mean(self.num_boxes[s], self.num_images),
                "bins": bin_statistics(**self.arrays(s), edges=edges, iou_thresh=self.iou_thresh),
            }
            for s in self.box_sets
        }


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------
def _fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.3f}"


def summary_table(box_sets: Dict[str, Dict], iou_thresh: float = 0.5) -> str:
    """Markdown table: one row per box set and height bin."""
    t = f"{iou_thresh:g}"
    lines = [
        f"| box set | height | people | recall@{t} | mean best IoU | matched boxes | "
        f"mean IoU of matched |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in box_sets.items():
        for label, b in s["bins"].items():
            lines.append(
                f"| {name} | {label} | {b['num_gt']} | {_fmt(b['recall'])} | "
                f"{_fmt(b['mean_best_iou'])} | {b['num_matched_boxes']} | "
                f"{_fmt(b['mean_matched_iou'])} |"
            )
    return "\n".join(lines)


def plot_histograms(
    collector: IoUCollector, summary: Dict[str, Dict], edges: Sequence[float], path: str
) -> str:
    """Best-IoU (top) and matched-box IoU (bottom) histograms per height bin, box sets overlaid
    (fractions of the bin's people / matched boxes; recall and mean IoU in the legends)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = ["all"] + bin_labels(edges)
    width, height = 3.3 * len(labels) + 0.9, 6.6  # inches; a fixed layout (constrained: 2x slower)
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(labels), squeeze=False, sharex=True)
    fig.subplots_adjust(
        left=0.95 / width, right=1 - 0.1 / width, bottom=0.6 / height, top=1 - 0.35 / height,
        wspace=0.28, hspace=0.08,
    )  # fmt: skip
    bins = np.linspace(0.0, 1.0, 21)
    thresh = collector.iou_thresh
    drawn = np.zeros(axes.shape, dtype=bool)
    for s in collector.box_sets:
        a = collector.arrays(s)
        # column 0: everybody; column c: height bin c - 1
        gcol, mcol = (bin_index(a[k], edges) + 1 for k in ("gt_heights", "matched_heights"))
        for col, label in enumerate(labels):
            stats = summary[s]["bins"][label]
            rows = (
                (
                    a["best_ious"][(gcol == col) | (col == 0)],
                    f"R@{thresh:g} {_fmt(stats['recall'])}",
                ),
                (
                    a["matched_ious"][(mcol == col) | (col == 0)],
                    f"mean {_fmt(stats['mean_matched_iou'])}",
                ),
            )
            for row, (values, text) in enumerate(rows):
                if not values.size:
                    continue
                axes[row, col].hist(
                    values,
                    bins=bins,
                    weights=np.full(values.size, 1.0 / values.size),
                    histtype="step",
                    linewidth=1.6,
                    color=COLORS[s],
                    label=f"{s} ({text})",
                )
                drawn[row, col] = True
    for col, label in enumerate(labels):
        n = summary[collector.box_sets[0]]["bins"][label]["num_gt"]
        title = f"all people ({n})" if col == 0 else f"height {label} px ({n} people)"
        axes[0, col].set_title(title, fontsize="medium")
        for row in range(2):
            ax = axes[row, col]
            ax.axvline(thresh, color="grey", linestyle=":", linewidth=1)
            ax.set_xlim(0, 1)
            if drawn[row, col]:
                ax.legend(fontsize="x-small", loc="best")
            else:
                what = "no people" if row == 0 else "no matched boxes"
                ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes)
        axes[1, col].set_xlabel("IoU with ground truth")
    axes[0, 0].set_ylabel("fraction of people\n(best IoU in the box set)")
    axes[1, 0].set_ylabel(f"fraction of matched boxes\n(IoU >= {thresh:g})")
    fig.savefig(path, dpi=100)
    return path


def plot_recall(summary: Dict[str, Dict], edges: Sequence[float], thresh: float, path: str) -> str:
    """Recall and mean best IoU per height bin (number of people under each bin), grouped bars
    per box set."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = ["all"] + bin_labels(edges)
    counts = [next(iter(summary.values()))["bins"][lb]["num_gt"] for lb in labels]
    fig = Figure(figsize=(max(9.0, 2.4 * len(labels)), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    x = np.arange(len(labels))
    width = 0.8 / len(summary)
    for i, (name, s) in enumerate(summary.items()):
        for ax, key in zip(axes, ("recall", "mean_best_iou")):
            values = [s["bins"][lb][key] for lb in labels]
            heights = [np.nan if v is None else v for v in values]
            ax.bar(x - 0.4 + (i + 0.5) * width, heights, width, color=COLORS[name], label=name)
    ticks = [f"{lb}\n(n={n})" for lb, n in zip(labels, counts)]
    for ax, title in zip(axes, (f"recall@{thresh:g}", "mean best IoU")):
        ax.set_xticks(x, ticks, fontsize="small")
        ax.set_ylim(0, 1.15)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_xlabel("person height (px)")
        ax.set_title(title)
        ax.legend(fontsize="small", ncols=len(summary), loc="upper center")
    fig.savefig(path, dpi=100)
    return path


def summarize(
    collector: "IoUCollector",
    edges: Sequence[float],
    config_file: str = "",
    weights: str = "",
    dataset: str = "",
) -> Dict:
    """The JSON summary ``tools/analyze_iou.py`` writes: the settings, the people counted and, per
    box set, :meth:`IoUCollector.summary`."""
    edges = list(edges)
    heights = np.concatenate(collector.heights) if collector.heights else np.zeros(0)
    return {
        "config_file": config_file,
        "weights": weights,
        "dataset": dataset,
        "num_images": collector.num_images,
        "num_gt": int(heights.size),
        "num_gt_outside_bins": int((bin_index(heights, edges) < 0).sum()),
        "iou_thresh": collector.iou_thresh,
        "height_bins": {
            "edges": [e if math.isfinite(e) else "inf" for e in edges],
            "labels": bin_labels(edges),
        },
        "box_sets": collector.summary(edges),
    }
