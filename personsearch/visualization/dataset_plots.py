"""Figures of person-search splits (the "diverse scale" box-height figure, people per image,
boxes per identity) and :func:`analyze`, which writes them to one folder with the statistics of
:mod:`personsearch.data.statistics` (JSON) and their table
(:mod:`personsearch.data.statistics_report`).

The figures are drawn on matplotlib ``Figure`` objects (no pyplot), so they need no display.
"""

import json
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
from detectron2.data import DatasetCatalog
from matplotlib.figure import Figure

from personsearch.data.statistics import (
    HEIGHT_BIN_EDGES,
    HEIGHT_BIN_LABELS,
    DatasetArrays,
    collect_dataset_arrays,
    height_histogram,
    statistics_from_arrays,
)
from personsearch.data.statistics_report import protocol_description, statistics_table

__all__ = [
    "analyze",
    "plot_appearances_per_identity",
    "plot_box_heights",
    "plot_boxes_per_image",
]


def _height_series(arrays: Dict[str, DatasetArrays]) -> List[Tuple[str, np.ndarray, bool]]:
    """(label, (n,) heights, is_query) for every split's boxes and, where present, its queries."""
    series = []
    for name, a in arrays.items():
        if a.box_heights.size:
            series.append((f"{name} boxes", a.box_heights, False))
        if a.query_heights.size:
            series.append((f"{name} queries", a.query_heights, True))
    return series


def plot_box_heights(arrays: Dict[str, DatasetArrays], path: str) -> str:
    """The "diverse scale" figure: fraction of boxes per height bin (left) and a finer density
    histogram (right), every split's boxes and queries overlaid.

    Args:
        arrays: per split name, its collected arrays.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    series = _height_series(arrays)
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    x = np.arange(len(HEIGHT_BIN_LABELS))
    width = 0.8 / max(1, len(series))
    for i, (label, heights, is_query) in enumerate(series):
        counts = np.array(list(height_histogram(heights).values()), dtype=np.float64)
        left.bar(
            x - 0.4 + (i + 0.5) * width,
            counts / counts.sum(),
            width,
            label=f"{label} (n={heights.size})",
            hatch="//" if is_query else None,
            edgecolor="black",
            linewidth=0.5,
        )
    left.set_xticks(x, HEIGHT_BIN_LABELS)
    left.set_xlabel("box height (px)")
    left.set_ylabel("fraction of boxes")
    left.set_title("box height bins (original pixels)")

    all_heights = np.concatenate([h for _, h, _ in series]) if series else np.zeros(1)
    top = max(float(np.percentile(all_heights, 99.5)) * 1.05, HEIGHT_BIN_EDGES[1])
    step = max(2.0, np.ceil(top / 60))
    bins = np.arange(0, top + step, step)
    for label, heights, is_query in series:
        right.hist(
            np.clip(heights, 0, bins[-1]),
            bins=bins,
            density=True,
            histtype="step",
            linewidth=1.6,
            linestyle="--" if is_query else "-",
            label=label,
        )
    for edge in [e for e in HEIGHT_BIN_EDGES[1:] if e < bins[-1]]:
        right.axvline(edge, color="grey", linestyle=":", linewidth=1)
    right.set_xlabel(f"box height (px; heights above {bins[-1]:.0f} counted in the last bin)")
    right.set_ylabel("density")
    right.set_title("box height distribution")
    if series:
        left.legend(fontsize="small")
        right.legend(fontsize="small")
    fig.savefig(path, dpi=110)
    return path


def _count_histogram(values: Dict[str, np.ndarray], xlabel: str, ylabel: str, path: str) -> str:
    """Histogram of integer counts, one step curve per split (fractions of that split's values).

    Args:
        values: per split name, (n,) non-negative counts (splits without values are left out).
        xlabel, ylabel: the axis labels.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    present = {k: v for k, v in values.items() if v.size}
    if present:
        top = int(max(v.max() for v in present.values()))
        bins = np.arange(0, top + 2) - 0.5 if top <= 60 else np.linspace(-0.5, top + 0.5, 61)
        for name, v in present.items():
            weights = np.full(v.size, 1.0 / v.size)
            ax.hist(v, bins=bins, weights=weights, histtype="step", linewidth=1.6, label=name)
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "nothing to count", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.savefig(path, dpi=110)
    return path


def plot_boxes_per_image(arrays: Dict[str, DatasetArrays], path: str) -> str:
    """Histogram of the number of people per image, one curve per split; returns ``path``."""
    return _count_histogram(
        {n: a.boxes_per_image for n, a in arrays.items()},
        "people per image",
        "fraction of images",
        path,
    )


def plot_appearances_per_identity(arrays: Dict[str, DatasetArrays], path: str) -> str:
    """Histogram of the number of boxes per labeled identity, one curve per split; returns
    ``path``."""
    return _count_histogram(
        {n: a.appearances_per_identity for n, a in arrays.items()},
        "boxes per identity",
        "fraction of identities",
        path,
    )


def analyze(names: Sequence[str], output: str) -> Tuple[Dict[str, Dict], List[str]]:
    """Compute the statistics of registered splits and write, to the folder ``output`` (created):
    ``statistics.json``, ``statistics.md`` (:func:`statistics_table`), ``box_heights.png``,
    ``boxes_per_image.png`` and ``appearances_per_identity.png``. Prints nothing.

    Args:
        names: registered split names (the table's columns, in this order).
        output: the output folder.

    Returns:
        (statistics per split, each with its ``"protocol"``; the written paths in the order above).
    """
    arrays = {
        name: collect_dataset_arrays(DatasetCatalog.get(name), desc=f"statistics of {name}")
        for name in names
    }
    stats = {name: statistics_from_arrays(a) for name, a in arrays.items()}
    for name, split_stats in stats.items():
        split_stats["protocol"] = protocol_description(name, split_stats)
    os.makedirs(output, exist_ok=True)
    paths = []
    path = os.path.join(output, "statistics.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2)
    paths.append(path)
    path = os.path.join(output, "statistics.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(statistics_table(stats) + "\n")
    paths.append(path)
    paths.append(plot_box_heights(arrays, os.path.join(output, "box_heights.png")))
    paths.append(plot_boxes_per_image(arrays, os.path.join(output, "boxes_per_image.png")))
    paths.append(
        plot_appearances_per_identity(arrays, os.path.join(output, "appearances_per_identity.png"))
    )
    return stats, paths
