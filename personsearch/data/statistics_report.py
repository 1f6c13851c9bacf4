"""The statistics of :mod:`personsearch.data.statistics` as text: a markdown table with one column
per split, and the evaluation protocol of a split's queries. Plain text, no plotting (the figures
are :mod:`personsearch.visualization.dataset_plots`)::

    stats = {name: compute_dataset_statistics(DatasetCatalog.get(name)) for name in names}
    for name, s in stats.items():
        s["protocol"] = protocol_description(name, s)
    print(statistics_table(stats))
"""

from typing import Callable, Dict, List, Optional, Tuple

from detectron2.data import MetadataCatalog

from .datasets.cuhk_sysu import available_gallery_sizes
from .statistics import HEIGHT_BIN_LABELS, PERCENTILES

__all__ = ["protocol_description", "statistics_table"]


def _fmt(value, digits: int = 2) -> str:
    """A count or value: ``-`` for None, an integer without decimals, else ``digits`` decimals."""
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}f}"
    return str(int(value))


def _mmm(stats: Optional[Dict], digits: int = 2) -> str:
    """``min / mean / max`` of a :func:`~personsearch.data.statistics.describe` dict."""
    if stats is None:
        return "-"
    return " / ".join(_fmt(stats[k], digits) for k in ("min", "mean", "max"))


def _bin(stats: Optional[Dict], label: str) -> str:
    """``count (percent%)`` of one height bin of a height statistics dict."""
    if stats is None:
        return "-"
    return f"{stats['bins'][label]} ({100 * stats['bin_fractions'][label]:.1f}%)"


def _percentiles(stats: Optional[Dict]) -> str:
    """The :data:`~personsearch.data.statistics.PERCENTILES` of a height statistics dict."""
    if stats is None:
        return "-"
    return " / ".join(f"{stats['percentiles'][f'p{p}']:.1f}" for p in PERCENTILES)


def statistics_table(stats: Dict[str, Dict]) -> str:
    """Markdown table of the statistics of several splits (one column per split, in dict order).

    Args:
        stats: per split name, :func:`~personsearch.data.statistics.statistics_from_arrays`'s
            dict, optionally with a ``"protocol"`` entry (:func:`protocol_description`).
    """
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


def protocol_description(name: str, stats: Dict) -> str:
    """How the split's queries are evaluated, from its metadata (``-`` without queries).

    Args:
        name: the registered split.
        stats: its :func:`~personsearch.data.statistics.statistics_from_arrays` dict.
    """
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
