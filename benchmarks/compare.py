"""The comparison itself: plan every measurement of every model (ours, the matching plain
detectors, the official implementations) at every size and precision, run them one by one, and
assemble the rows, the JSON and the markdown table."""

import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .inputs import BenchmarkInputs
from .interleave import run_interleaved
from .jobs import MEASURES, Job, run_job, run_job_in_subprocess
from .models import (
    check_device,
    config_num_pids,
    display_name,
    is_reference_resnet50,
    model_cfg,
    plain_detector_cfg,
    plain_detector_key,
)
from .official_code import DISPLAY_NAMES, IMPLEMENTATIONS, check_official_path
from .tables import build_rows, markdown_table, system_info

PLAIN_NAME = "plain Faster R-CNN C4"
# the measurements --interleave alternates between models (training runs one after the other)
INTERLEAVED = ("inference", "query")
# the identities of the official OIM memories (CUHK-SYSU)
OFFICIAL_NUM_PIDS = 5532


class CompareError(ValueError):
    """A bad comparison request (unknown config, missing official code, ...)."""


@dataclass
class CompareSettings:
    """What to compare and how (the ``compare`` subcommand's options).

    Attributes:
        configs: ``(config_file, weights)`` pairs (weights "" = none).
        opts: ``KEY VALUE`` overrides applied to every config.
        sizes: ``(height, width)`` input sizes.
        runs, warmup: timed and untimed calls per measurement.
        train_batch, queries, gt_boxes, calib_images, seed: see
            :class:`~.inputs.BenchmarkInputs`.
        measures: a subset of ("inference", "query", "train").
        amp: "" or "bfloat16" / "float16": also measure every model in that precision.
        force: forced mode (see :mod:`.forcing`).
        official: ``{impl: clone root}`` of the official implementations to measure.
        subprocess: a fresh process per measurement (else in this process).
        threads: torch threads of the measurements (0: torch's default).
        configs_root: the repository's ``configs/`` folder (shorter row names).
        batches: images per inference call; one row per value (query and training are
            measured with the first).
        interleave: time the inference and query calls of the models of a size, precision and
            batch in alternating rounds (:mod:`.interleave`).
        optimize: apply the configs' ``TEST.OPTIMIZE`` (BatchNorm folding, channels_last) to
            our models and the plain detectors; False turns both off.
        peak_tflops: > 0: the device's FLOP rate for MFU (else measured, :mod:`.peak`).
        flops: count the model FLOPs (MFU column).
        official_weights: ``{impl: checkpoint}`` weights for official models (official layout,
            e.g. ``tools/benchmark.py official-weights``) instead of calibrated random ones.
    """

    configs: List[Tuple[str, str]]
    opts: List = field(default_factory=list)
    sizes: List[Tuple[int, int]] = field(default_factory=lambda: [(900, 1500)])
    runs: int = 5
    warmup: int = 1
    train_batch: int = 2
    queries: int = 1
    gt_boxes: int = 5
    calib_images: int = 2
    seed: int = 0
    measures: List[str] = field(default_factory=lambda: list(MEASURES))
    amp: str = ""
    force: bool = True
    official: Dict[str, str] = field(default_factory=dict)
    subprocess: bool = True
    threads: int = 0
    configs_root: str = ""
    batches: List[int] = field(default_factory=lambda: [1])
    interleave: bool = False
    optimize: bool = True
    peak_tflops: float = 0.0
    flops: bool = True
    official_weights: Dict[str, str] = field(default_factory=dict)


# config overrides of --no-optimize
NO_OPTIMIZE = ["TEST.OPTIMIZE.FOLD_BATCHNORM", False, "TEST.OPTIMIZE.CHANNELS_LAST", "off"]


@dataclass
class PlannedModel:
    """One row source: a model and how to build it."""

    name: str
    kind: str
    config_file: str = ""
    weights: str = ""
    plain: Optional[str] = None
    official: Dict = field(default_factory=dict)


def validate(settings: CompareSettings) -> None:
    """Check the request before anything is measured.

    Raises:
        CompareError: naming the bad config, weights file, official path or value.
    """
    if not settings.configs:
        raise CompareError("give at least one config (--configs A.yaml [B.yaml=weights.pth ...])")
    for config_file, weights in settings.configs:
        if not config_file.endswith((".yaml", ".yml")):
            raise CompareError(f"{config_file!r}: compare takes yaml configs (CONFIG[=WEIGHTS])")
        if not os.path.isfile(config_file):
            raise CompareError(f"config file not found: {config_file!r}")
        if weights and not os.path.isfile(weights):
            raise CompareError(f"weights file not found: {weights!r} (given for {config_file})")
    for name, value in (("--runs", settings.runs), ("--train-batch", settings.train_batch),
                        ("--queries", settings.queries), ("--gt-boxes", settings.gt_boxes),
                        ("--calib-images", settings.calib_images)):  # fmt: skip
        if value < 1:
            raise CompareError(f"{name} must be >= 1, got {value}")
    if settings.warmup < 0:
        raise CompareError(f"--warmup must be >= 0, got {settings.warmup}")
    if not settings.batches or min(settings.batches) < 1:
        raise CompareError(f"--batch values must be >= 1, got {settings.batches}")
    if settings.peak_tflops < 0:
        raise CompareError(f"--peak-tflops must be > 0, got {settings.peak_tflops}")
    if settings.interleave and not settings.subprocess:
        raise CompareError("--interleave runs every model in its own process; drop --no-subprocess")
    unknown = [m for m in settings.measures if m not in MEASURES]
    if unknown or not settings.measures:
        raise CompareError(f"--measure: use some of {list(MEASURES)}, got {settings.measures}")
    if settings.amp not in ("", "bfloat16", "float16"):
        raise CompareError(f"--amp must be bfloat16 or float16, got {settings.amp!r}")
    for impl, path in settings.official.items():
        try:
            check_official_path(impl, path)
        except (ValueError, FileNotFoundError) as e:
            raise CompareError(str(e)) from None
    for impl, path in settings.official_weights.items():
        if impl not in settings.official:
            raise CompareError(
                f"--official-weights {impl}=...: no --official {impl}=PATH to load them into"
            )
        if not os.path.isfile(path):
            raise CompareError(f"--official-weights {impl}: file not found: {path!r}")


def job_opts(settings: CompareSettings) -> List:
    """The config overrides of every job: the user's, then ``NO_OPTIMIZE`` without
    optimisation."""
    return list(settings.opts) + ([] if settings.optimize else list(NO_OPTIMIZE))


def plan_models(settings: CompareSettings) -> Tuple[List[PlannedModel], Dict]:
    """The rows' models, plain detectors first, and facts shared by the jobs.

    Returns:
        ``(models, shared)`` with shared ``{"device", "num_pids"}``.
    """
    cfgs = []
    for config_file, weights in settings.configs:
        try:
            cfg = model_cfg(config_file, job_opts(settings), weights, settings.force)
        except Exception as e:  # an unknown key (yacs asserts), a bad value: name the config
            what = str(e) if isinstance(e, AssertionError) else f"{type(e).__name__}: {e}"
            raise CompareError(f"{config_file}: {what}") from None
        cfgs.append((config_file, weights, cfg))
    devices = sorted({cfg.MODEL.DEVICE for _, _, cfg in cfgs})
    if len(devices) > 1:
        raise CompareError(
            f"every config must run on the same device; got MODEL.DEVICE {devices} (override it "
            "for all with MODEL.DEVICE cpu or MODEL.DEVICE cuda)"
        )
    try:
        check_device(cfgs[0][2], "the configs")
    except SystemExit as e:
        raise CompareError(str(e)) from None
    groups: Dict[str, List[int]] = {}
    for i, (_, _, cfg) in enumerate(cfgs):
        groups.setdefault(plain_detector_key(plain_detector_cfg(cfg)), []).append(i)
    plain_names = {}
    for key, members in groups.items():
        first = display_name(cfgs[members[0]][0], settings.configs_root)
        plain_names[key] = PLAIN_NAME if len(groups) == 1 else f"{PLAIN_NAME} ({first})"
    models, names = [], set()
    for key, members in groups.items():
        config_file = cfgs[members[0]][0]
        models.append(PlannedModel(plain_names[key], "plain", config_file, "", plain_names[key]))
    for config_file, weights, cfg in cfgs:
        name = display_name(config_file, settings.configs_root)
        if weights:
            name += f" ({os.path.basename(weights)})"
        while name in names:
            name += "'"
        names.add(name)
        plain = plain_names[plain_detector_key(plain_detector_cfg(cfg))]
        models.append(PlannedModel(name, "ours", config_file, weights, plain))
    ref = next((c for _, _, c in cfgs if is_reference_resnet50(c)), None)
    ref_plain = plain_names[plain_detector_key(plain_detector_cfg(ref))] if ref else None
    topk_cfg = ref or cfgs[0][2]
    for impl in IMPLEMENTATIONS:
        if impl not in settings.official:
            continue
        spec = {
            "impl": impl,
            "path": check_official_path(impl, settings.official[impl]),
            "device": devices[0],
            "pre_nms_topk": int(topk_cfg.MODEL.RPN.PRE_NMS_TOPK_TEST),
            "post_nms_topk": int(topk_cfg.MODEL.RPN.POST_NMS_TOPK_TEST),
            "detections": int(topk_cfg.MODEL.RPN.POST_NMS_TOPK_TEST),
            "weights": (
                os.path.abspath(settings.official_weights.get(impl, ""))
                if impl in settings.official_weights
                else ""
            ),
        }
        models.append(PlannedModel(DISPLAY_NAMES[impl], "official", plain=ref_plain, official=spec))
    pids = [config_num_pids(c) for _, _, c in cfgs if config_num_pids(c) > 0]
    if settings.official:
        pids.append(OFFICIAL_NUM_PIDS)
    return models, {"device": devices[0], "num_pids": min(pids) if pids else 1}


def plan_jobs(settings: CompareSettings) -> Tuple[List[Tuple[Dict, Job]], Dict]:
    """Every measurement of the comparison as ``(entry, job)``; entry holds the row keys. Inference
    is measured at every batch size, query and training with the first."""
    models, shared = plan_models(settings)
    precisions = ["float32"] + ([settings.amp] if settings.amp else [])
    out = []
    for h, w in settings.sizes:
        for precision in precisions:
            for b, batch in enumerate(settings.batches):
                inputs = BenchmarkInputs(
                    height=h,
                    width=w,
                    seed=settings.seed,
                    num_queries=settings.queries,
                    train_batch=settings.train_batch,
                    gt_boxes=settings.gt_boxes,
                    num_pids=shared["num_pids"],
                    calib_images=settings.calib_images,
                    batch=batch,
                )
                for m in models:
                    for measure in settings.measures:
                        if measure == "query" and m.kind == "plain":
                            continue  # the plain detector embeds nothing
                        if measure != "inference" and b > 0:
                            continue  # batch-independent: measured once
                        job = Job(
                            kind=m.kind,
                            name=m.name,
                            measure=measure,
                            inputs=vars(inputs).copy(),
                            precision=precision,
                            runs=settings.runs,
                            warmup=settings.warmup,
                            force=settings.force,
                            config_file=m.config_file,
                            opts=[str(o) for o in job_opts(settings)],
                            weights=m.weights,
                            official=m.official,
                            threads=settings.threads,
                            flops=settings.flops,
                        )
                        entry = {
                            "name": m.name,
                            "kind": m.kind,
                            "size": f"{h}x{w}",
                            "precision": precision,
                            "batch": batch if measure == "inference" else settings.batches[0],
                            "measure": measure,
                            "plain": m.plain,
                        }
                        out.append((entry, job))
    return out, shared


def _one_line(entry: Dict, result: Dict) -> str:
    """A progress line for one finished measurement."""
    if result.get("error"):
        return f"error: {result['error']}"
    stats = result.get("stats") or {}
    if not stats:
        return "no timed runs"
    train = entry["measure"] == "train"
    per = max(1, int(result.get("items_per_call") or 1))
    scale = 1.0 if train else 1000.0 / per
    unit = "s/iter" if train else ("ms/query" if entry["measure"] == "query" else "ms/image")
    digits = 3 if train else 1
    text = f"{stats['median'] * scale:.{digits}f} {unit}"
    if stats.get("runs", 0) > 1:
        text += f" [{stats['min'] * scale:.{digits}f}-{stats['max'] * scale:.{digits}f}]"
    cpu = (result.get("cpu_stats") or {}).get("median")
    if cpu is not None and not train:
        text += f" (CPU {cpu * scale:.{digits}f})"
    if result.get("gflop_per_item"):
        text += f", {result['gflop_per_item']:.1f} GFLOP each"
    counts = [result.get(k) for k in ("proposals_per_image", "rois_per_image")]
    if None not in counts:
        text += f", {counts[0]:.0f} proposals / {counts[1]:.0f} RoIs per image"
    if result.get("detections_per_image") is not None:
        text += f", {result['detections_per_image']} detections"
    if result.get("peak_memory_mb") is not None:
        text += f", peak {result['peak_memory_mb']:.0f} MiB"
    return text


def _label(entry: Dict) -> str:
    batch = f" batch {entry['batch']}" if entry["measure"] == "inference" else ""
    return f"{entry['name']} {entry['size']} {entry['precision']}{batch} {entry['measure']}"


def measure_peaks(settings: CompareSettings, device: str) -> Dict[str, Dict]:
    """The device's FLOP rate per precision of the run (MFU denominators), measured in this
    process with the measurements' threads unless ``--peak-tflops`` gives it."""
    import torch

    from .peak import device_peak

    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    precisions = ["float32"] + ([settings.amp] if settings.amp else [])
    return {p: device_peak(torch.device(device), p, settings.peak_tflops) for p in precisions}


def _run_sequential(planned, settings, log, t_start) -> List[Dict]:
    entries = []
    for i, (entry, job) in enumerate(planned, 1):
        t0 = time.perf_counter()
        result = run_job_in_subprocess(job) if settings.subprocess else run_job(job)
        entries.append({**entry, "result": result})
        elapsed = time.perf_counter() - t_start
        log(f"  [{i}/{len(planned)}] {_label(entry)}: {_one_line(entry, result)} "
            f"[{time.perf_counter() - t0:.0f} s; {elapsed / 60:.1f} min so far]")  # fmt: skip
    return entries


def _run_interleaved(planned, settings, log, t_start) -> List[Dict]:
    """Inference and query measurements in interleaved groups, training one after the other."""
    groups: Dict[tuple, List[int]] = {}
    for i, (entry, _) in enumerate(planned):
        if entry["measure"] in INTERLEAVED:
            key = (entry["size"], entry["precision"], entry["measure"], entry["batch"])
            groups.setdefault(key, []).append(i)
    results: Dict[int, Dict] = {}
    for key, members in groups.items():
        t0 = time.perf_counter()
        log(f"  interleaved {' '.join(map(str, key))}: {len(members)} models")
        jobs = [planned[i][1] for i in members]
        for i, result in zip(members, run_interleaved(jobs, settings.runs, log=log)):
            results[i] = result
            entry = planned[i][0]
            log(f"    {_label(entry)}: {_one_line(entry, result)}")
        elapsed = time.perf_counter() - t_start
        log(f"  [{time.perf_counter() - t0:.0f} s; {elapsed / 60:.1f} min so far]")
    rest = [(i, p) for i, p in enumerate(planned) if i not in results]
    done = _run_sequential([p for _, p in rest], settings, log, t_start)
    for (i, _), e in zip(rest, done):
        results[i] = e["result"]
    return [{**entry, "result": results[i]} for i, (entry, _) in enumerate(planned)]


def run_compare(
    settings: CompareSettings,
    log: Callable[[str], None] = print,
    dry_run: bool = False,
) -> Dict:
    """Validate, plan and run the comparison.

    Args:
        settings: the request.
        log: where progress lines go.
        dry_run: only list the planned measurements.

    Returns:
        ``{"system", "settings", "peaks", "rows", "measurements", "markdown"}`` (``rows`` and
        ``markdown``: see :mod:`.tables`; ``peaks``: the MFU denominators; ``measurements``:
        every entry with its raw result).
    """
    validate(settings)
    planned, shared = plan_jobs(settings)
    where = "a fresh process each" if settings.subprocess else "in this process"
    if settings.interleave:
        where = "inference and query interleaved across processes"
    log(f"compare: {len(planned)} measurements on {shared['device']} ({where})")
    if dry_run:
        for i, (e, _) in enumerate(planned, 1):
            log(f"  [{i}/{len(planned)}] {_label(e)}")
        return {"planned": [e for e, _ in planned]}
    t_start = time.perf_counter()
    peaks = measure_peaks(settings, shared["device"]) if settings.flops else {}
    for precision, p in peaks.items():
        log(f"  device rate {precision} ({p['arithmetic']}): {p['flops_per_s'] / 1e12:.3g} "
            f"TFLOP/s {p['source']}")  # fmt: skip
    run = _run_interleaved if settings.interleave else _run_sequential
    entries = run(planned, settings, log, t_start)
    cuda = shared["device"].startswith("cuda")
    rows = build_rows(entries, peaks, cuda)
    info = system_info(shared["device"])
    table_settings = {
        "runs": settings.runs,
        "warmup": settings.warmup,
        "queries": settings.queries,
        "train_batch": settings.train_batch,
        "gt_boxes": settings.gt_boxes,
        "threads": settings.threads,
        "subprocess": settings.subprocess,
        "interleave": settings.interleave,
    }
    threads = sorted({e["result"]["threads"] for e in entries if "threads" in e["result"]})
    if threads:
        info["measurement_threads"] = threads
        table_settings["threads"] = ",".join(map(str, threads))
    md = markdown_table(rows, info, table_settings, peaks)
    return {
        "system": info,
        "settings": json.loads(json.dumps(vars(settings), default=str)),
        "peaks": peaks,
        "rows": rows,
        "measurements": entries,
        "markdown": md,
        "elapsed_s": time.perf_counter() - t_start,
    }
