"""The markdown tables of the model zoo: mean ± standard deviation over seeds, one row per config,
and the marked section of a markdown file they replace."""

import statistics
from typing import Any, Dict, List, Optional, Sequence, Tuple

# (column title, key in result.json); the keys are filled by runs.score_run
COLUMNS = [
    ("mAP", "mAP"),
    ("top-1", "top1"),
    ("det. AP", "det_AP"),
    ("recall", "det_recall"),
    ("mAP (L)", "lowres_mAP"),
    ("mAP w/o CWS", "nocws_mAP"),
    ("mAP +CBGM", "cbgm_mAP"),
    ("mAP GT boxes", "gt_mAP"),
    ("train min", "train_minutes"),
]


def mean_std(values: Sequence[Optional[float]]) -> str:
    """``"mean ± std"`` (sample standard deviation, n - 1) with one decimal.

    Args:
        values: One value per seed; None (not measured) is left out.

    Returns:
        The mean ± std; the value alone if there is one; ``"-"`` if there is none.
    """
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(
    rows: List[Tuple[str, str]], results: Dict[str, List[Dict[str, Any]]], seeds: Sequence[int]
) -> str:
    """A markdown table: one row per (label, config), mean ± std over its finished seeds.

    Args:
        rows: (row label, config) pairs.
        results: The ``result.json`` of each run per config (``{}`` for a run not finished).
        seeds: The seeds planned for each config (the "seeds" column is finished / planned).

    Returns:
        The table, with the :data:`COLUMNS` and the devices the runs trained on.
    """
    head = "| model | config | seeds | " + " | ".join(c for c, _ in COLUMNS) + " | device |"
    lines = [head, "|" + "---|" * (4 + len(COLUMNS))]
    for label, config in rows:
        runs = [r for r in results.get(config, []) if r]
        cells = [mean_std([r.get(k) for r in runs]) for _, k in COLUMNS]
        devices = ", ".join(sorted({str(r.get("device", "?")) for r in runs})) or "-"
        lines.append(
            f"| {label} | `{config}` | {len(runs)}/{len(seeds)} | "
            + " | ".join(cells)
            + f" | {devices} |"
        )
    return "\n".join(lines)


def zoo_markdown(
    groups: Dict[str, List[Tuple[str, str]]],
    results: Dict[str, List[Dict[str, Any]]],
    seeds: Sequence[int],
    gallery_size: int,
    command: str,
) -> str:
    """The model zoo's markdown: a line naming the seeds, gallery size and command, then one
    bold-titled :func:`table` per group.

    Args:
        groups: ``{group name: [(row label, config), ...]}``.
        results: The ``result.json`` of each run per config.
        seeds: The planned seeds.
        gallery_size: The gallery size the runs were scored with.
        command: The command line that made the tables.

    Returns:
        The text, ending with a newline.
    """
    text = [f"Synthetic model zoo, seeds {seeds}, gallery size {gallery_size}, `{command}`"]
    for name, rows in groups.items():
        text.append(f"\n**{name}**\n\n" + table(rows, results, seeds))
    return "\n".join(text) + "\n"


def replace_section(path: str, section: str, text: str) -> None:
    """Replace the marked section of a markdown file with a text.

    The section lies between ``<!-- model-zoo:SECTION:begin -->`` and
    ``<!-- model-zoo:SECTION:end -->``; the markers are kept, the rest of the file too.

    Args:
        path: The markdown file (rewritten in place).
        section: The name in the markers.
        text: The new content of the section (ending with a newline).

    Raises:
        ValueError: If the file lacks either marker.
    """
    begin, end = f"<!-- model-zoo:{section}:begin -->", f"<!-- model-zoo:{section}:end -->"
    doc = open(path).read()
    if begin not in doc or end not in doc:
        raise ValueError(f"{path} has no {begin} ... {end} section to replace")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(head + begin + "\n" + text + end + tail)
