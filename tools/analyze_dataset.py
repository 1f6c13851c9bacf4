#!/usr/bin/env python
"""Statistics and scale figures of registered person-search splits.

Prints a markdown table (images, boxes, labeled/unlabeled, identities, appearances per identity,
boxes per image, queries, image sizes, box and query heights in the bins [0,60), [60,100),
[100,200), [200,400), >=400 px with percentiles) and writes to ``--output``:

* ``statistics.json``: the statistics of every split (see
  :func:`personsearch.data.statistics.compute_dataset_statistics`);
* ``statistics.md``: the table;
* ``box_heights.png``: the "diverse scale" figure, box heights of all splits overlaid, query
  heights too (fractions per height bin, and a finer histogram);
* ``boxes_per_image.png`` and ``appearances_per_identity.png``.

Example::

    python tools/analyze_dataset.py --dataset cuhk_sysu_train cuhk_sysu_test --output out/cuhk
"""

import argparse
import json
import logging
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger
from matplotlib.figure import Figure

import personsearch  # noqa: F401  (registers the built-in splits)
from personsearch.data.datasets.cuhk_sysu import available_gallery_sizes
from personsearch.data.statistics import (
    HEIGHT_BIN_EDGES,
    HEIGHT_BIN_LABELS,
    PERCENTILES,
    DatasetArrays,
    collect_dataset_arrays,
    height_histogram,
    statistics_from_arrays,
)
from personsearch.utils.cli import (
    add_register_json_argument,
    register_json_datasets,
    unregistered_datasets_message,
)

logger = logging.getLogger("personsearch.tools.analyze_dataset")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", nargs="+", required=True, help="registered split(s), e.g. prw_train prw_test"
    )
    parser.add_argument("--output", default="output/dataset_analysis", help="output folder")
    add_register_json_argument(parser)
    args = parser.parse_args(argv)
    register_json_datasets(args.register_json)
    message = unregistered_datasets_message(args.dataset)
    if message:
        parser.error(message)
    if len(set(args.dataset)) != len(args.dataset):
        parser.error("a dataset is named twice")
    return args


# ----------------------------------------------------------------------------------------------
# table
# ----------------------------------------------------------------------------------------------
def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}f}"
    return str(int(value))


def _mmm(stats: Optional[Dict], digits: int = 2) -> str:
    if stats is None:
        return "-"
    return " / ".join(_fmt(stats[k], digits) for k in ("min", "mean", "max"))


def _bin(stats: Optional[Dict], label: str) -> str:
    if stats is None:
        return "-"
    return f"{stats['bins'][label]} ({100 * stats['bin_fractions'][label]:.1f}%)"


def _percentiles(stats: Optional[Dict]) -> str:
    if stats is None:
        return "-"
    return " / ".join(f"{stats['percentiles'][f'p{p}']:.1f}" for p in PERCENTILES)


def statistics_table(stats: Dict[str, Dict]) -> str:
    """Markdown table of the statistics of several splits (one column per split)."""
    pct = "/".join(f"p{p}" for p in PERCENTILES)
    rows: List[Tuple[str, Callable[[Dict], str]]] = [
        ("images", lambda s: _fmt(s["num_images"])),
        ("images without people", lambda s: _fmt(s["num_images_without_boxes"])),
        ("boxes (people)", lambda s: _fmt(s["num_boxes"])),
        ("labeled boxes", lambda s: _fmt(s["num_labeled_boxes"])),
        ("unlabeled boxes", lambda s: _fmt(s["num_unlabeled_boxes"])),
        ("identities", lambda s: _fmt(s["num_identities"])),
        ("appearances / identity (min/mean/max)", lambda s: _mmm(s["appearances_per_identity"])),
        ("boxes / image (min/mean/max)", lambda s: _mmm(s["boxes_per_image"])),
        ("cameras", lambda s: _fmt(s["num_cameras"])),
        ("queries", lambda s: _fmt(s["num_queries"])),
        ("images with queries", lambda s: _fmt(s["num_images_with_queries"])),
        ("query identities", lambda s: _fmt(s["num_query_identities"])),
        ("evaluation protocol", lambda s: s.get("protocol", "-")),
        ("per-query gallery size (min/mean/max)", lambda s: _mmm(s["gallery_size"])),
        ("image height (min/mean/max)", lambda s: _mmm(s["image_height"], 1)),
        ("image width (min/mean/max)", lambda s: _mmm(s["image_width"], 1)),
        ("distinct image sizes", lambda s: _fmt(s["num_distinct_image_sizes"])),
        (
            "most common image size (WxH)",
            lambda s: (
                f"{s['most_common_image_sizes'][0][0]} ({s['most_common_image_sizes'][0][1]})"
                if s["most_common_image_sizes"]
                else "-"
            ),
        ),
        ("box height (min/mean/max)", lambda s: _mmm(s["box_height"], 1)),
        (f"box height {pct}", lambda s: _percentiles(s["box_height"])),
    ]
    for label in HEIGHT_BIN_LABELS:
        rows.append((f"box height {label}", lambda s, lb=label: _bin(s["box_height"], lb)))
    rows.append(("query height (min/mean/max)", lambda s: _mmm(s["query_height"], 1)))
    rows.append((f"query height {pct}", lambda s: _percentiles(s["query_height"])))
    for label in HEIGHT_BIN_LABELS:
        rows.append((f"query height {label}", lambda s, lb=label: _bin(s["query_height"], lb)))

    names = list(stats)
    lines = ["| statistic | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for title, get in rows:
        lines.append(f"| {title} | " + " | ".join(get(stats[n]) for n in names) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------
def _height_series(arrays: Dict[str, DatasetArrays]) -> List[Tuple[str, np.ndarray, bool]]:
    """(label, heights, is_query) for every split's boxes and, where present, its queries."""
    series = []
    for name, a in arrays.items():
        if a.box_heights.size:
            series.append((f"{name} boxes", a.box_heights, False))
        if a.query_heights.size:
            series.append((f"{name} queries", a.query_heights, True))
    return series


def plot_box_heights(arrays: Dict[str, DatasetArrays], path: str) -> str:
    """The "diverse scale" figure: fraction of boxes per height bin (left) and a finer density
    histogram (right), every split's boxes and queries overlaid."""
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
    """Histogram of the number of people per image, one curve per split."""
    return _count_histogram(
        {n: a.boxes_per_image for n, a in arrays.items()},
        "people per image",
        "fraction of images",
        path,
    )


def plot_appearances_per_identity(arrays: Dict[str, DatasetArrays], path: str) -> str:
    """Histogram of the number of boxes per labeled identity, one curve per split."""
    return _count_histogram(
        {n: a.appearances_per_identity for n, a in arrays.items()},
        "boxes per identity",
        "fraction of identities",
        path,
    )


def protocol_description(name: str, stats: Dict) -> str:
    """How the split's queries are evaluated, from its metadata (``-`` without queries)."""
    if not stats["num_queries"]:
        return "-"
    meta = MetadataCatalog.get(name)
    protocol = meta.get("protocol", "")
    if protocol == "cuhk_sysu":
        sizes = available_gallery_sizes(meta.get("root", ""))
        return "cuhk_sysu: " + (", ".join(f"TestG{n}" for n in sizes) or "no TestG files")
    if protocol == "prw":
        return "prw: every other test frame"
    if stats["gallery_size"] is not None:
        return f"{protocol or 'json'}: per-query gallery lists"
    return f"{protocol or 'json'}: every other image"


def analyze(names: Sequence[str], output: str) -> Tuple[Dict[str, Dict], List[str]]:
    """Compute, print nothing, write everything: returns (statistics per split, written paths)."""
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


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict]:
    """Analyse the splits; prints the table and the written paths, returns the statistics."""
    setup_logger(name="personsearch", abbrev_name="ps")
    args = parse_args(argv)
    stats, paths = analyze(args.dataset, args.output)
    print(statistics_table(stats))
    print()
    for path in paths:
        print(path)
    return stats


if __name__ == "__main__":
    main(sys.argv[1:])
