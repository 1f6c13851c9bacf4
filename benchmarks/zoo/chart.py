"""The model zoo's chart: mAP bars per config with their spread over seeds, one panel per group."""

from typing import Any, Dict, List, Tuple

# (bar offset, key in result.json, legend) of the chart: the full split, the low-resolution
# subset, and ground-truth boxes (re-identification alone, without the detector's noise)
PLOTTED = ((-0.27, "mAP", "mAP"), (0.0, "lowres_mAP", "mAP (L)"), (0.27, "gt_mAP", "mAP GT boxes"))


def plot(
    groups: Dict[str, List[Tuple[str, str]]], results: Dict[str, List[Dict[str, Any]]], path: str
) -> None:
    """Bar chart of :data:`PLOTTED` (mean, std error bars over the seeds), one panel per group.

    A config without a finished run gets no bars and "(not run)" in its label.

    Args:
        groups: ``{group name: [(row label, config), ...]}``, at most three panels a row.
        results: The ``result.json`` of each run per config (``{}`` for a run not finished).
        path: The image file written (matplotlib's Agg backend; the format from the suffix).
    """
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt
    import numpy as np

    cols = min(3, len(groups))
    nrows = -(-len(groups) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 5.2 * nrows), squeeze=False)
    for ax in axes.flat[len(groups) :]:
        ax.axis("off")
    for ax, (name, rows) in zip(axes.flat, groups.items()):
        ran = [any(results.get(c, [])) for _, c in rows]
        labels = [
            textwrap.fill(label if r else f"{label} (not run)", 22)
            for (label, _), r in zip(rows, ran)
        ]
        x = np.arange(len(rows))
        for off, key, title in PLOTTED:
            vals = [[r[key] for r in results.get(c, []) if r and r.get(key) is not None]
                    for _, c in rows]  # fmt: skip
            mean = [np.mean(v) if v else np.nan for v in vals]  # no bar for a config not run
            std = [np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals]
            ax.bar(x + off, mean, 0.27, yerr=std, capsize=3, label=title)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize="small")
        ax.set_title(name)
        ax.set_ylabel("%")
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_ylim(top=ax.get_ylim()[1] * 1.25)  # room for the legend above the bars
        ax.legend(loc="upper left", ncol=len(PLOTTED), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
