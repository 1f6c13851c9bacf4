"""Batched inference throughput in one process (``tools/benchmark.py throughput``, run on a GPU
by ``tools/gpu_bench.sh``): images/s and model FLOPs utilisation of several models at several
batch sizes, precisions and memory layouts, inside a time budget.

``compare`` gives every measurement a fresh process, which costs seconds of start-up and BatchNorm
calibration each time; on a lent GPU with minutes of time that is too slow for a sweep of
models x precisions x layouts x batches. Here each model is built and calibrated once per
precision (forced mode, :mod:`.forcing`); every layout variant is a copy of it with
``TEST.OPTIMIZE`` applied (BatchNorm folded; channels_last on or off); the FLOPs per image are
counted once per model (:mod:`.flops`). Measurements run in the order given (most important
first) and stop being started once ``budget_s`` has passed; the JSON and the markdown table are
rewritten after every measurement, so a run cut short still leaves its results.

Besides the sweep it can record, per model, ``today``: the unoptimised batch-1 path (what the
issue's numbers measured), a ``torch.profiler`` table of the busiest GPU kernels and the number
of host synchronisations per call (``torch.cuda.set_sync_debug_mode``), for the overhead
questions (what makes NAE+ slower than NAE on a GPU).
"""

import copy
import gc
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from personsearch.utils.file_io import atomic_write

from .inputs import BenchmarkInputs
from .measure import InferenceSession, prepare_for_inference
from .models import model_cfg, plain_detector_cfg
from .peak import device_peak
from .tables import system_info
from .timing import peak_memory_mb, reset_peak_memory, timed_call

PLAIN_PREFIX = "plain:"
# budget a torch.compile row needs left before it starts (compilation of the backbone and heads)
COMPILE_RESERVE_S = 60.0
NO_OPTIMIZE = ["TEST.OPTIMIZE.FOLD_BATCHNORM", False, "TEST.OPTIMIZE.CHANNELS_LAST", "off"]


@dataclass
class ThroughputSettings:
    """What ``throughput`` measures.

    Attributes:
        models: yaml configs; ``plain:<config>`` is the plain Faster R-CNN C4 detector of that
            config (:func:`~.models.plain_detector_cfg`).
        height, width: the input size.
        batches: images per call.
        precisions: "float32", "bfloat16", "float16".
        layouts: "on" / "off": channels_last variants (BatchNorm always folded).
        runs, warmup: timed and untimed calls per measurement.
        budget_s: no measurement starts after this many seconds.
        opts: config overrides for every model (e.g. ``MODEL.DEVICE cuda``).
        out_dir: where ``throughput.json`` and ``throughput.md`` go ("" = nowhere).
        today: also time the unoptimised path at batch 1 in every precision.
        profile: models (as named in ``models``) whose batch-1 float32 call is profiled.
        sync_batch: batch size of the host-synchronisation count of the first model (0: none).
        compile_batch: > 0: one extra row per model with ``TEST.OPTIMIZE.COMPILE`` at this batch,
            in the last precision and layout "on" (after everything else).
        peak_tflops: > 0: the device rate for MFU instead of the measured one.
        calib_images, seed: forced mode's BatchNorm calibration images and seed.
        pairs: ``(A, B)`` model pairs whose time ratio A / B is tabulated at every precision,
            variant and batch both have (e.g. UGAS over SeqNet, NAE+ over NAE).
        cudnn_benchmark: turn on cuDNN's autotuner. Off by default: in forced mode every call
            has the same shapes, but real galleries give a different number of RoIs per batch,
            and the autotuner would then re-tune at almost every call.
    """

    models: List[str]
    height: int = 900
    width: int = 1500
    batches: List[int] = field(default_factory=lambda: [1, 8, 16, 32])
    precisions: List[str] = field(default_factory=lambda: ["bfloat16", "float32"])
    layouts: List[str] = field(default_factory=lambda: ["on", "off"])
    runs: int = 3
    warmup: int = 1
    budget_s: float = 220.0
    opts: List = field(default_factory=list)
    out_dir: str = ""
    today: bool = True
    profile: List[str] = field(default_factory=list)
    sync_batch: int = 0
    compile_batch: int = 0
    peak_tflops: float = 0.0
    calib_images: int = 1
    seed: int = 0
    pairs: List[Tuple[str, str]] = field(default_factory=list)
    cudnn_benchmark: bool = False


def _model_cfg(name: str, opts, precision: str):
    if name.startswith(PLAIN_PREFIX):
        return plain_detector_cfg(model_cfg(name[len(PLAIN_PREFIX) :], opts, "", True, precision))
    return model_cfg(name, opts, "", True, precision)


def display(name: str) -> str:
    """A model's row name: the config's path from ``configs/`` on (``plain: ...`` kept)."""
    prefix = PLAIN_PREFIX if name.startswith(PLAIN_PREFIX) else ""
    path = name[len(prefix) :]
    parts = os.path.normpath(path).split(os.sep)
    if "configs" in parts:
        path = "/".join(parts[len(parts) - parts[::-1].index("configs") :])
    return ("plain detector of " if prefix else "") + path


class ThroughputRun:
    """One sweep: see the module docstring. Call :meth:`run`; results in :attr:`rows`."""

    def __init__(self, settings: ThroughputSettings, log=print):
        self.s = settings
        self.log = log
        self.rows: List[Dict] = []
        self.extras: Dict[str, Dict] = {}
        self.t0 = time.perf_counter()
        self.peaks: Dict[str, Dict] = {}
        self.flops: Dict[str, float] = {}
        self.device: Optional[torch.device] = None
        self.info: Dict = {}

    # ---- bookkeeping ----

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def over_budget(self) -> bool:
        return self.elapsed() > self.s.budget_s

    def _write(self) -> None:
        if not self.s.out_dir:
            return
        os.makedirs(self.s.out_dir, exist_ok=True)
        out = {
            "system": self.info,
            "settings": json.loads(json.dumps(vars(self.s), default=str)),
            "peaks": self.peaks,
            "gflop_per_image": {k: v / 1e9 for k, v in self.flops.items()},
            "rows": self.rows,
            "ratios": self.ratios(),
            "extras": self.extras,
            "elapsed_s": self.elapsed(),
        }
        for name, text in (("throughput.json", json.dumps(out, indent=2, default=str)),
                           ("throughput.md", self.markdown())):  # fmt: skip
            path = os.path.join(self.s.out_dir, name)
            with atomic_write(path, "w") as f:
                f.write(text)

    # ---- measuring ----

    def _prepare(self, name: str, precision: str, optimized: bool):
        """A calibrated model of ``name`` in ``precision`` without (or with) TEST.OPTIMIZE."""
        opts = list(self.s.opts) + ([] if optimized else NO_OPTIMIZE)
        cfg = _model_cfg(name, opts, precision)
        inputs = self._inputs(1)
        model, info = prepare_for_inference(cfg, inputs, True, "")
        return cfg, model, info

    def _inputs(self, batch: int) -> BenchmarkInputs:
        return BenchmarkInputs(
            height=self.s.height,
            width=self.s.width,
            seed=self.s.seed,
            calib_images=self.s.calib_images,
            batch=batch,
        )

    def _images(self, batch: int) -> List[torch.Tensor]:
        """The first ``batch`` benchmark images on the device (made once, for every model)."""
        have = getattr(self, "_image_cache", [])
        if len(have) < batch:
            made = self._inputs(batch).gallery_images()
            have = have + [img.to(self.device) for img in made[len(have) :]]
            self._image_cache = have
        return have[:batch]

    def _measure(self, cfg, prepared, batch: int, row: Dict) -> Dict:
        """Time ``batch`` images per call with an already prepared model; appends the row."""
        session = InferenceSession(
            cfg, self._inputs(batch), True, "", prepared=prepared, images=self._images(batch)
        )
        cuda = session.cuda
        try:
            for _ in range(self.s.warmup):
                session.step()
            reset_peak_memory(cuda)
            walls, cpus = [], []
            for _ in range(self.s.runs):
                wall, used = timed_call(session.step, cuda)
                walls.append(wall)
                cpus.append(used)
            result = session.result()
        finally:
            session.close()
        walls.sort()
        median = walls[len(walls) // 2]
        per_image = median / batch
        flops = self.flops.get(row["model"])
        peak = self.peaks.get(row["precision"], {})
        row.update(
            batch=batch,
            ms_per_image=1000 * per_image,
            images_per_s=1.0 / per_image,
            ms_per_call=[1000 * w for w in walls],
            cpu_ms_per_image=1000 * sorted(cpus)[len(cpus) // 2] / batch,
            gflop_per_image=flops / 1e9 if flops else None,
            mfu=(flops / per_image / peak["flops_per_s"]) if flops and peak else None,
            mfu_spec=(flops / per_image / peak["spec"]) if flops and peak.get("spec") else None,
            peak_memory_mb=peak_memory_mb(cuda),
            detections_per_image=result.get("detections_per_image"),
            rois_per_image=result.get("rois_per_image"),
            elapsed_s=self.elapsed(),
        )
        self.rows.append(row)
        self._write()
        self.log(
            f"  {row['model']} {row['precision']} {row['variant']} batch {batch}: "
            f"{row['ms_per_image']:.2f} ms/image, {row['images_per_s']:.1f} images/s"
            + (f", MFU {100 * row['mfu']:.1f} %" if row.get("mfu") else "")
            + f" [{self.elapsed():.0f} s]"
        )
        return row

    def _count_flops(self, name: str, cfg, prepared) -> None:
        if display(name) in self.flops:
            return
        session = InferenceSession(cfg, self._inputs(1), True, "", prepared=prepared)
        try:
            counts = session.count_flops()
        finally:
            session.close()
        self.flops[display(name)] = counts["gflop_per_item"] * 1e9
        self.extras.setdefault(display(name), {})["gflop_by_op"] = counts["gflop_by_op"]

    def _free(self) -> None:
        gc.collect()
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _sweep(self, name: str, precision: str, layouts: List[str], batches: List[int]) -> None:
        """The optimised variants of one model in one precision."""
        cfg, base, info = self._prepare(name, precision, optimized=False)
        self._count_flops(name, cfg, (base, info))
        if self.s.today and 1 in batches:
            self._measure(cfg, (base, info), 1, self._row(name, precision, "today"))
        for layout in layouts:
            if self.over_budget():
                return
            model = copy.deepcopy(base)
            from personsearch.modeling.inference_optimization import (
                InferenceOptions,
                optimize_for_inference,
            )

            summary = optimize_for_inference(
                model, InferenceOptions(channels_last=layout), amp=precision != "float32"
            )
            variant_info = dict(info, optimizations=summary)
            for batch in batches:
                if self.over_budget():
                    return
                row = self._row(name, precision, f"folded, channels_last {layout}")
                try:
                    self._measure(cfg, (model, variant_info), batch, row)
                except torch.cuda.OutOfMemoryError as e:  # a batch too large: note it, go on
                    self.rows.append(dict(row, batch=batch, error=f"out of memory: {e}"))
                    self._write()
                    self._free()
                    break
            del model
            self._free()
        del base
        self._free()

    def _row(self, name: str, precision: str, variant: str) -> Dict:
        return {"model": display(name), "precision": precision, "variant": variant}

    def _profile(self, name: str) -> None:
        """The busiest kernels of one unoptimised batch-1 float32 call (today's path)."""
        cfg, model, info = self._prepare(name, "float32", optimized=False)
        session = InferenceSession(cfg, self._inputs(1), True, "", prepared=(model, info))
        activities = [torch.profiler.ProfilerActivity.CPU]
        if session.cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        try:
            session.step()
            with torch.profiler.profile(activities=activities) as prof:
                session.step()
                if session.cuda:
                    torch.cuda.synchronize()
        finally:
            session.close()
        averages = prof.key_averages()
        key = "self_cpu_time_total"
        if session.cuda:  # the attribute's name depends on the torch version
            first = averages[0] if len(averages) else None
            key = "self_device_time_total"
            if first is not None and not hasattr(first, key):
                key = "self_cuda_time_total"
        table = averages.table(sort_by=key, row_limit=15)
        self.extras.setdefault(display(name), {})["profile_batch1_float32_today"] = table
        self._write()
        self.log(f"  profiled {display(name)} [{self.elapsed():.0f} s]")
        del model
        self._free()

    def _count_syncs(self, name: str, precision: str, batch: int) -> None:
        """Host synchronisations of one optimised call (CUDA only)."""
        cfg, model, info = self._prepare(name, precision, optimized=True)
        session = InferenceSession(cfg, self._inputs(batch), True, "", prepared=(model, info))
        try:
            session.step()
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    session.step()
                finally:
                    torch.cuda.set_sync_debug_mode("default")
        finally:
            session.close()
        syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
        self.extras.setdefault(display(name), {})[f"host_syncs_{precision}_batch{batch}"] = {
            "count": len(syncs),
            "per_image": len(syncs) / batch,
        }
        self._write()
        self.log(f"  {display(name)}: {len(syncs)} host syncs in a batch-{batch} call")
        del model
        self._free()

    def _compile(self, name: str, precision: str, batch: int) -> None:
        opts = list(self.s.opts) + ["TEST.OPTIMIZE.COMPILE", True, "TEST.OPTIMIZE.CHANNELS_LAST",
                                    "on"]  # fmt: skip
        cfg = _model_cfg(name, opts, precision)
        model, info = prepare_for_inference(cfg, self._inputs(1), True, "")
        row = self._row(name, precision, "folded, channels_last on, torch.compile")
        t0 = time.perf_counter()
        try:
            self._measure(cfg, (model, info), batch, row)
            row["compile_and_warmup_s"] = time.perf_counter() - t0
        except Exception as e:  # compilation problems are a result, not a crash
            self.rows.append(dict(row, batch=batch, error=f"{type(e).__name__}: {e}"))
            self._write()
        del model
        self._free()

    def run(self) -> List[Dict]:
        """Measure everything the budget allows, most important first: every model's optimised
        channels_last variant in each precision, then the profiles and synchronisation counts,
        then the other layouts, then torch.compile."""
        s = self.s
        cfg0 = _model_cfg(s.models[0], s.opts, "float32")
        self.device = torch.device(cfg0.MODEL.DEVICE)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = bool(s.cudnn_benchmark)
        self.info = system_info(cfg0.MODEL.DEVICE)
        self.info["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
        self.info["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
        for p in s.precisions:
            self.peaks[p] = device_peak(self.device, p, s.peak_tflops)
            self.log(f"device rate {p}: {self.peaks[p]['flops_per_s'] / 1e12:.1f} TFLOP/s "
                     f"({self.peaks[p]['source']})")  # fmt: skip
        self._write()
        first, rest = s.layouts[:1], s.layouts[1:]
        plan: List[Tuple] = []
        for p in s.precisions:
            for m in s.models:
                plan.append(("sweep", m, p, first))
        for m in s.profile:
            plan.append(("profile", m, None, None))
        if s.sync_batch > 0 and self.device.type == "cuda":
            plan.append(("syncs", s.models[0], s.precisions[0], None))
        for p in s.precisions:
            for m in s.models:
                if rest:
                    plan.append(("rest", m, p, rest))
        if s.compile_batch > 0:
            for m in s.models:
                plan.append(("compile", m, s.precisions[0], None))
        for kind, m, p, layouts in plan:
            # compiling takes tens of seconds: only with a minute of the budget left
            reserve = COMPILE_RESERVE_S if kind == "compile" else 0.0
            if self.elapsed() + reserve > s.budget_s:
                self.log(f"time budget of {s.budget_s:.0f} s reached: the rest is skipped")
                self.extras["skipped_after_budget"] = True
                break
            self.log(f"{kind} {display(m)} {p or ''} [{self.elapsed():.0f} s]")
            try:
                if kind == "sweep":
                    self._sweep(m, p, layouts, s.batches)
                elif kind == "rest":
                    saved, self.s.today = self.s.today, False
                    try:
                        self._sweep(m, p, layouts, s.batches)
                    finally:
                        self.s.today = saved
                elif kind == "profile":
                    self._profile(m)
                elif kind == "syncs":
                    self._count_syncs(m, p, s.sync_batch)
                else:
                    self._compile(m, p, s.compile_batch)
            except Exception as e:  # one model's failure is reported; the others still run
                self.extras.setdefault(display(m), {}).setdefault("errors", []).append(
                    f"{kind} {p}: {type(e).__name__}: {e}"
                )
                self.log(f"  FAILED {kind} {display(m)} {p}: {type(e).__name__}: {e}")
                self._free()
            self._write()
        self._write()
        return self.rows

    # ---- output ----

    def ratios(self) -> List[Dict]:
        """Time ratios of the ``pairs`` (A / B, per image) where both were measured alike."""
        index = {(r["model"], r["precision"], r["variant"], r.get("batch")): r
                 for r in self.rows if not r.get("error")}  # fmt: skip
        out = []
        for a, b in self.s.pairs:
            a, b = display(a), display(b)
            for (model, precision, variant, batch), ra in index.items():
                rb = index.get((b, precision, variant, batch))
                if model == a and rb is not None:
                    out.append({"a": a, "b": b, "precision": precision, "variant": variant,
                                "batch": batch,
                                "ratio": ra["ms_per_image"] / rb["ms_per_image"]})  # fmt: skip
        return out

    def _ratio_lines(self) -> List[str]:
        rows = self.ratios()
        if not rows:
            return []
        lines = ["", "| A / B (time per image) | precision | variant | batch | ratio |",
                 "|---|---|---|---|---|"]  # fmt: skip
        for r in rows:
            lines.append(f"| {r['a']} / {r['b']} | {r['precision']} | {r['variant']} | "
                         f"{r['batch']} | {r['ratio']:.2f}x |")  # fmt: skip
        return lines + [""]

    def markdown(self) -> str:
        """The rows as a markdown table, with the machine, the rates and the extras."""
        info = self.info
        lines = [
            f"Device: {info.get('device_name')}; torch {info.get('torch')}, torchvision "
            f"{info.get('torchvision')}; cuDNN benchmark {info.get('cudnn_benchmark')}, TF32 "
            f"convolutions {info.get('cudnn_allow_tf32')}; {info.get('date')}.",
            f"Input {self.s.height}x{self.s.width}, forced mode (random weights, BatchNorm "
            "calibrated, RoI score threshold 0, NMS 1.0: every head processes the RPN's full "
            f"top-k); {self.s.warmup} warm-up + {self.s.runs} timed calls per row, median "
            + ("CUDA-synchronised wall time." if info.get("cuda") else "wall time."),
        ]
        rates = []
        for p, peak in self.peaks.items():
            text = f"{p} ({peak.get('arithmetic')}): {peak['flops_per_s'] / 1e12:.3g} TFLOP/s "
            text += peak.get("source", "")
            if peak.get("spec"):
                text += f", vendor dense peak {peak['spec'] / 1e12:.0f}"
            rates.append(text)
        if rates:
            lines.append(
                "MFU = model FLOPs per image (convolutions and matrix products, "
                "torch.utils.flop_counter) x images/s / the rate of a large matrix product on "
                "this device (MFU spec: / the vendor's dense peak): " + "; ".join(rates) + "."
            )
        lines += [
            "",
            "| model | precision | variant | batch | ms/image | images/s | GFLOP/image | MFU | "
            "MFU spec | peak GiB | detections/image |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]

        def pct(v):
            return "–" if v is None else f"{100 * v:.1f} %"

        for r in self.rows:
            if r.get("error"):
                lines.append(f"| {r['model']} | {r['precision']} | {r['variant']} | "
                             f"{r.get('batch', '–')} | **error** {r['error'][:120]} |"
                             + " |" * 6)  # fmt: skip
                continue
            mem = r.get("peak_memory_mb")
            gflop = r.get("gflop_per_image")
            lines.append(
                f"| {r['model']} | {r['precision']} | {r['variant']} | {r['batch']} | "
                f"{r['ms_per_image']:.2f} | {r['images_per_s']:.1f} | "
                f"{'–' if gflop is None else f'{gflop:.0f}'} | {pct(r.get('mfu'))} | "
                f"{pct(r.get('mfu_spec'))} | {'–' if mem is None else f'{mem / 1024:.1f}'} | "
                f"{r.get('detections_per_image')} |"
            )
        lines += self._ratio_lines()
        for model, extra in self.extras.items():
            if not isinstance(extra, dict):
                continue
            for key, value in extra.items():
                if key == "gflop_by_op":
                    ops = ", ".join(f"{k} {v:.0f}" for k, v in sorted(value.items()))
                    lines.append(f"- {model}: GFLOP per image by operator: {ops}.")
                elif key.startswith("host_syncs"):
                    lines.append(f"- {model}: {value['count']} host synchronisations in one "
                                 f"call ({key}; {value['per_image']:.1f} per image).")  # fmt: skip
                elif key == "errors":
                    lines.append(f"- {model}: errors: {'; '.join(value)}.")
        if self.extras.get("skipped_after_budget"):
            lines.append(f"- The time budget ({self.s.budget_s:.0f} s) ended the run early.")
        for model, extra in self.extras.items():
            if isinstance(extra, dict) and extra.get("profile_batch1_float32_today"):
                lines += ["", f"Profile of {model}, batch 1, float32, unoptimised:", "```",
                          extra["profile_batch1_float32_today"].rstrip(), "```"]  # fmt: skip
        return "\n".join(lines) + "\n"
