"""The outputs of a comparison: a description of the machine, one row per model, size and
precision (with ratios to the matching plain detector) and a markdown table."""

import datetime
import os
import platform
from typing import Dict, List, Optional

MODE_LEGEND = {
    "forced": "random weights, BatchNorm statistics calibrated on the benchmark images, RoI "
    "score threshold 0 and NMS 1.0 (every head processes the RPN's full top-k)",
    "forced+weights": "trained weights, RoI score threshold 0 and NMS 1.0",
    "weights": "trained weights, the config's own thresholds (--no-force)",
    "random": "random weights, the config's own thresholds (--no-force): few or no detections",
}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def system_info(device: str) -> Dict:
    """The machine and software a comparison ran on."""
    import detectron2
    import torch
    import torchvision

    cuda = device.startswith("cuda")
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count()
    return {
        "device": device,
        "device_name": torch.cuda.get_device_name(torch.device(device)) if cuda else cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "detectron2": getattr(detectron2, "__version__", "?"),
        "cuda": torch.version.cuda if cuda else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _ms(stats: Dict, key: str, per: int = 1) -> Optional[float]:
    return 1000.0 * stats[key] / per if stats and key in stats else None


def _measurement_summary(measure: str, result: Dict) -> Dict:
    """The numbers of one measurement that go into a row."""
    stats = result.get("stats") or {}
    per = max(1, int(result.get("items_per_call") or 1))
    base = {
        "runs": stats.get("runs", 0),
        "peak_memory_mb": result.get("peak_memory_mb"),
        "setup_peak_memory_mb": result.get("setup_peak_memory_mb"),
    }
    if measure == "train":
        base.update({f"s_{k}": stats.get(k) for k in ("median", "min", "max", "q1", "q3")})
        for k in ("images_per_iter", "proposals_per_image", "rois_per_image", "nonfinite_skips"):
            base[k] = result.get(k)
        return base
    base.update({f"ms_{k}": _ms(stats, k, per) for k in ("median", "min", "max", "q1", "q3")})
    if measure == "query":
        base["queries"] = per
        base["rois_per_call"] = result.get("rois_per_call")
    else:
        for k in ("proposals_per_image", "rois_per_image", "detections_per_image"):
            base[k] = result.get(k)
        base["expected_detections"] = result.get("expected_detections")
    return base


def build_rows(entries: List[Dict]) -> List[Dict]:
    """Rows of the table from the measurements.

    Args:
        entries: one per measurement: ``{"name", "kind", "size" ("HxW"), "precision",
            "measure", "plain" (the name of the matching plain-detector row, or None),
            "result"}``.

    Returns:
        One dict per (model, size, precision), in the order the models first appear, with the
        summaries ``inference`` / ``query`` / ``train`` (None if not measured), ``errors``,
        ``notes``, ``mode``, ``bn_calibrated`` and the ratios ``inference_ratio`` /
        ``train_ratio`` to the plain detector of the same size and precision.
    """
    rows: Dict[tuple, Dict] = {}
    for e in entries:
        key = (e["name"], e["size"], e["precision"])
        row = rows.setdefault(
            key,
            {
                "model": e["name"],
                "kind": e["kind"],
                "size": e["size"],
                "precision": e["precision"],
                "plain": e.get("plain"),
                "mode": None,
                "inference": None,
                "query": None,
                "train": None,
                "errors": {},
                "notes": [],
            },
        )
        result = e["result"]
        if result.get("error"):
            row["errors"][e["measure"]] = result["error"]
            continue
        row["mode"] = row["mode"] or result.get("mode")
        if result.get("bn_calibrated") is not None and e["measure"] != "train":
            row["bn_calibrated"] = result["bn_calibrated"]
            row["bn_frozen"] = result.get("bn_frozen", 0)
        for note in result.get("notes", []):
            if note not in row["notes"]:
                row["notes"].append(note)
        row[e["measure"]] = _measurement_summary(e["measure"], result)
    for row in rows.values():
        plain = rows.get((row["plain"], row["size"], row["precision"])) if row["plain"] else None
        row["inference_ratio"] = _ratio(row, plain, "inference", "ms_median")
        row["train_ratio"] = _ratio(row, plain, "train", "s_median")
    return list(rows.values())


def _ratio(row: Dict, plain: Optional[Dict], measure: str, key: str) -> Optional[float]:
    if plain is None or not row.get(measure) or not plain.get(measure):
        return None
    a, b = row[measure].get(key), plain[measure].get(key)
    return a / b if a is not None and b else None


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}f}"
    return f"{int(value)}" if float(value).is_integer() else f"{value}"


def _spread(m: Optional[Dict], prefix: str, digits: int) -> str:
    if not m or m.get(f"{prefix}median") is None:
        return "–"
    med, lo, hi = (m[f"{prefix}{k}"] for k in ("median", "min", "max"))
    text = f"{med:.{digits}f}"
    if m.get("runs", 0) > 1:
        text += f" [{lo:.{digits}f}–{hi:.{digits}f}]"
    return text


def _ratio_text(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _counts(row: Dict) -> str:
    inf = row.get("inference") or {}
    parts = [inf.get(k) for k in ("proposals_per_image", "rois_per_image", "detections_per_image")]
    text = " / ".join(_fmt(p, 0) for p in parts)
    train = row.get("train") or {}
    if train.get("rois_per_image") is not None:
        text += f" (train: {_fmt(train.get('proposals_per_image'), 0)} / "
        text += f"{_fmt(train.get('rois_per_image'), 0)})"
    return text


def _memory(row: Dict) -> str:
    values = [(row.get(m) or {}).get("peak_memory_mb") for m in ("inference", "query", "train")]
    return " / ".join("–" if v is None else f"{v:.0f}" for v in values)


def markdown_table(rows: List[Dict], info: Dict, settings: Dict) -> str:
    """The comparison as markdown: a header describing the machine and settings, the table, the
    legend of the modes and the notes of the rows."""
    cuda = str(info.get("device", "")).startswith("cuda")
    memory = "peak GPU memory allocated by torch" if cuda else "peak RSS of the process"
    if not cuda and settings.get("subprocess", True):
        memory += " (a fresh process per measurement)"
    elif not cuda:
        memory += " (in-process: includes every earlier measurement)"
    timing = (
        f"Timing: {settings.get('warmup')} warm-up + {settings.get('runs')} timed runs per "
        f"measurement, median [min–max]{'; CUDA-synchronised' if cuda else ''}."
    )
    if any(r.get("query") for r in rows):
        timing += f" Query: {settings.get('queries')} box(es) per call, ms per query."
    if any(r.get("train") for r in rows):
        timing += (
            f" Training: batch {settings.get('train_batch')} image(s), "
            f"{settings.get('gt_boxes')} random people per image."
        )
    lines = [
        f"Device: {info.get('device_name')} ({info.get('device')}); {info.get('cpus_available')} "
        f"CPUs available, {settings.get('threads') or info.get('torch_threads')} torch threads; "
        f"torch {info.get('torch')}, torchvision {info.get('torchvision')}, detectron2 "
        f"{info.get('detectron2')}; {info.get('date')}.",
        f"{timing} Memory: {memory}, MiB.",
        "",
        "| model | size | precision | mode | ms/image | × plain | ms/query | s/iter | × plain "
        "| peak MiB (inference / query / train) | proposals / RoIs / detections per image |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        errors = "; ".join(f"{k}: {v}" for k, v in r["errors"].items())
        lines.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    r["size"],
                    r["precision"],
                    r["mode"] or "–",
                    _spread(r["inference"], "ms_", 1),
                    _ratio_text(r["inference_ratio"]),
                    _spread(r["query"], "ms_", 2),
                    _spread(r["train"], "s_", 3),
                    _ratio_text(r["train_ratio"]),
                    _memory(r),
                    _counts(r) + (f" **error** {errors}" if errors else ""),
                ]
            )
            + " |"
        )
    modes = [m for m in MODE_LEGEND if any(r["mode"] == m for r in rows)]
    lines.append("")
    for m in modes:
        lines.append(f"- mode `{m}`: {MODE_LEGEND[m]}.")
    lines.append(
        "- × plain: time divided by the plain detectron2 Faster R-CNN C4 detector (same backbone, "
        "input size, proposals and RoI sampling; no re-ID) of the same size and precision. "
        "Proposals / RoIs: what the RPN returned and the boxes pooled by the RoI heads in every "
        "stage (SeqNet pools twice); in training, per image after sampling."
    )
    notes: Dict[str, List[str]] = {}
    for r in rows:
        for note in r["notes"]:
            if r["model"] not in notes.setdefault(note, []):
                notes[note].append(r["model"])
    for note, models in notes.items():
        lines.append(f"- {', '.join(models)}: {note}.")
    return "\n".join(lines) + "\n"
