"""The outputs of the benchmarks: for a comparison, a description of the machine, one row per
model, size and precision (with ratios to the matching plain detector) and a markdown table; for
the ``train`` / ``inference`` subcommands, the timing summary of one model."""

import datetime
import os
import platform
import statistics
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


def _mfu(result: Dict, per: int, peak: Optional[Dict], cuda: bool) -> Optional[float]:
    """Model FLOPs utilisation of an inference or query measurement: FLOPs per item times items
    per second, over the device's rate (``peak``, :func:`~.peak.device_peak`). On the CPU both
    rates are per CPU-second of the process (see :mod:`.peak`)."""
    gflop = result.get("gflop_per_item")
    if not gflop or not peak or not peak.get("flops_per_s"):
        return None
    if cuda:
        seconds = (result.get("stats") or {}).get("median")
        threads = 1
    else:
        seconds = (result.get("cpu_stats") or {}).get("median")
        threads = max(1, int(result.get("threads") or 1))
    if not seconds:
        return None
    return gflop * 1e9 * per * threads / seconds / peak["flops_per_s"]


def _measurement_summary(
    measure: str, result: Dict, peak: Optional[Dict] = None, cuda: bool = False
) -> Dict:
    """The numbers of one measurement that go into a row."""
    stats = result.get("stats") or {}
    per = max(1, int(result.get("items_per_call") or 1))
    base = {
        "runs": stats.get("runs", 0),
        "peak_memory_mb": result.get("peak_memory_mb"),
        "setup_peak_memory_mb": result.get("setup_peak_memory_mb"),
        "interleaved": bool(result.get("interleaved")),
    }
    if measure == "train":
        base.update({f"s_{k}": stats.get(k) for k in ("median", "min", "max", "q1", "q3")})
        for k in ("images_per_iter", "proposals_per_image", "rois_per_image", "nonfinite_skips"):
            base[k] = result.get(k)
        return base
    base.update({f"ms_{k}": _ms(stats, k, per) for k in ("median", "min", "max", "q1", "q3")})
    base["cpu_ms_median"] = _ms(result.get("cpu_stats") or {}, "median", per)
    base["gflop_per_item"] = result.get("gflop_per_item")
    base["mfu"] = _mfu(result, per, peak, cuda)
    if measure == "query":
        base["queries"] = per
        base["rois_per_call"] = result.get("rois_per_call")
    else:
        base["batch"] = per
        median = base["ms_median"]
        base["images_per_s"] = 1000.0 / median if median else None
        for k in ("proposals_per_image", "rois_per_image", "detections_per_image"):
            base[k] = result.get(k)
        base["expected_detections"] = result.get("expected_detections")
        base["optimizations"] = result.get("optimizations")
    return base


def build_rows(
    entries: List[Dict], peaks: Optional[Dict[str, Dict]] = None, cuda: bool = False
) -> List[Dict]:
    """Rows of the table from the measurements.

    Args:
        entries: one per measurement: ``{"name", "kind", "size" ("HxW"), "precision",
            "batch" (images per inference call, default 1), "measure", "plain" (the name of the
            matching plain-detector row, or None), "result"}``.
        peaks: per precision, the device's rate (:func:`~.peak.device_peak`) for the MFU column.
        cuda: the measurements ran on a GPU (MFU from wall time; else from CPU time).

    Returns:
        One dict per (model, size, precision, batch), in the order the models first appear, with
        the summaries ``inference`` / ``query`` / ``train`` (None if not measured), ``errors``,
        ``notes``, ``mode``, ``bn_calibrated`` and the ratios ``inference_ratio`` /
        ``train_ratio`` to the plain detector of the same size, precision and batch.
    """
    peaks = peaks or {}
    rows: Dict[tuple, Dict] = {}
    for e in entries:
        batch = int(e.get("batch", 1))
        key = (e["name"], e["size"], e["precision"], batch)
        row = rows.setdefault(
            key,
            {
                "model": e["name"],
                "kind": e["kind"],
                "size": e["size"],
                "precision": e["precision"],
                "batch": batch,
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
        peak = peaks.get(e["precision"])
        row[e["measure"]] = _measurement_summary(e["measure"], result, peak, cuda)
    for row in rows.values():
        key = (row["plain"], row["size"], row["precision"], row["batch"])
        plain = rows.get(key) if row["plain"] else None
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


def _per_s(m: Optional[Dict]) -> str:
    return "–" if not m or m.get("images_per_s") is None else f"{m['images_per_s']:.2f}"


def _gflop(m: Optional[Dict]) -> str:
    return "–" if not m or m.get("gflop_per_item") is None else f"{m['gflop_per_item']:.0f}"


def _percent(m: Optional[Dict]) -> str:
    return "–" if not m or m.get("mfu") is None else f"{100 * m['mfu']:.1f} %"


def _cpu_ms(m: Optional[Dict]) -> str:
    return "–" if not m or m.get("cpu_ms_median") is None else f"{m['cpu_ms_median']:.1f}"


def _peaks_line(peaks: Dict[str, Dict], cuda: bool) -> str:
    if not peaks:
        return ""
    parts = []
    for precision, p in peaks.items():
        if not p or not p.get("flops_per_s"):
            continue
        text = f"{precision} ({p.get('arithmetic', precision)}) {p['flops_per_s'] / 1e12:.3g}"
        text += " TFLOP/s " + ("given" if p.get("source") == "given" else "measured")
        if p.get("spec"):
            text += f" (vendor dense peak {p['spec'] / 1e12:.4g})"
        parts.append(text)
    clock = "wall time" if cuda else "CPU time of the process (per thread)"
    return (
        "MFU: model FLOPs per image (convolutions and matrix products, counted by "
        "torch.utils.flop_counter) x images/s, divided by the rate of a large matrix product on "
        f"the same device and precision, both in {clock}: " + "; ".join(parts) + "."
    )


def markdown_table(
    rows: List[Dict], info: Dict, settings: Dict, peaks: Optional[Dict] = None
) -> str:
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
        f"measurement, median [min–max]{'; CUDA-synchronised' if cuda else ''}"
    )
    if settings.get("interleave"):
        timing += (
            ", interleaved (the models of a size/precision/batch prepared together, their timed "
            "calls alternating in rounds)"
        )
    timing += "."
    if any(r.get("query") for r in rows):
        timing += f" Query: {settings.get('queries')} box(es) per call, ms per query."
    if any(r.get("train") for r in rows):
        timing += (
            f" Training: batch {settings.get('train_batch')} image(s), "
            f"{settings.get('gt_boxes')} random people per image."
        )
    header = (
        "| model | size | precision | batch | mode | ms/image | images/s | × plain | "
        + ("" if cuda else "CPU ms/image | ")
        + "GFLOP/image | MFU | ms/query | s/iter | × plain "
        "| peak MiB (inference / query / train) | proposals / RoIs / detections per image |"
    )
    lines = [
        f"Device: {info.get('device_name')} ({info.get('device')}); {info.get('cpus_available')} "
        f"CPUs available, {settings.get('threads') or info.get('torch_threads')} torch threads; "
        f"torch {info.get('torch')}, torchvision {info.get('torchvision')}, detectron2 "
        f"{info.get('detectron2')}; {info.get('date')}.",
        f"{timing} Memory: {memory}, MiB.",
    ]
    peaks_line = _peaks_line(peaks or {}, cuda)
    if peaks_line:
        lines.append(peaks_line)
    lines += ["", header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        errors = "; ".join(f"{k}: {v}" for k, v in r["errors"].items())
        inf = r["inference"]
        cells = [
            r["model"],
            r["size"],
            r["precision"],
            str(r.get("batch", 1)),
            r["mode"] or "–",
            _spread(inf, "ms_", 1),
            _per_s(inf),
            _ratio_text(r["inference_ratio"]),
        ]
        if not cuda:
            cells.append(_cpu_ms(inf))
        cells += [
            _gflop(inf),
            _percent(inf),
            _spread(r["query"], "ms_", 2),
            _spread(r["train"], "s_", 3),
            _ratio_text(r["train_ratio"]),
            _memory(r),
            _counts(r) + (f" **error** {errors}" if errors else ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    modes = [m for m in MODE_LEGEND if any(r["mode"] == m for r in rows)]
    lines.append("")
    for m in modes:
        lines.append(f"- mode `{m}`: {MODE_LEGEND[m]}.")
    lines.append(
        "- × plain: time divided by the plain detectron2 Faster R-CNN C4 detector (same backbone, "
        "input size, proposals and RoI sampling; no re-ID) of the same size, precision and "
        "batch. Proposals / RoIs: what the RPN returned and the boxes pooled by the RoI heads in "
        "every stage (SeqNet pools twice); in training, per image after sampling."
    )
    optimized = [
        (r["model"], (r["inference"] or {}).get("optimizations"))
        for r in rows
        if (r["inference"] or {}).get("optimizations")
    ]
    if optimized:
        on = sorted({o["channels_last"] for _, o in optimized})
        folded = sum(1 for _, o in optimized if o["folded_batchnorm"])
        lines.append(
            f"- Inference optimisations (TEST.OPTIMIZE) on our models and the plain detector: "
            f"BatchNorm folded in {folded} of {len(optimized)} rows, channels_last "
            f"{'/'.join('on' if v else 'off' for v in on)}; the official code runs as it is."
        )
    notes: Dict[str, List[str]] = {}
    for r in rows:
        for note in r["notes"]:
            if r["model"] not in notes.setdefault(note, []):
                notes[note].append(r["model"])
    for note, models in notes.items():
        lines.append(f"- {', '.join(models)}: {note}.")
    return "\n".join(lines) + "\n"


def model_timing(unit: str, seconds: List[float], peak_mb: float, extra: Dict) -> Dict:
    """The summary of ``tools/benchmark.py train`` / ``inference``: mean and median seconds per
    ``unit`` ("iter" or "image"), the number of timed calls, the peak memory and ``extra``."""
    return {
        f"seconds_per_{unit}_mean": statistics.fmean(seconds),
        f"seconds_per_{unit}_median": statistics.median(seconds),
        "timed": len(seconds),
        "peak_memory_mb": peak_mb,
        **extra,
    }


def format_model_timing(title: str, unit: str, timing: Dict, cuda: bool) -> List[str]:
    """The printed lines of a :func:`model_timing` summary under ``title``."""
    memory = "peak GPU memory allocated" if cuda else "peak resident memory of the process"
    median, mean = timing[f"seconds_per_{unit}_median"], timing[f"seconds_per_{unit}_mean"]
    return [
        title.rstrip(),
        f"  {median:.4f} s/{unit} median, {mean:.4f} s/{unit} mean over {timing['timed']}",
        f"  {memory}: {timing['peak_memory_mb']:.0f} MiB",
    ]
