"""One measurement as a JSON-able job, run in a fresh subprocess (default: its peak memory is its
own, and nothing one measurement allocated or compiled affects the next) or in this process."""

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from .inputs import BenchmarkInputs

KINDS = ("ours", "plain", "official")
# the repository root: the folder that holds the benchmarks package (and the personsearch one)
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASURES = ("inference", "query", "train")


@dataclass
class Job:
    """One measurement of one model at one size and precision.

    Attributes:
        kind: "ours" (a personsearch config), "plain" (the plain detector of a config) or
            "official".
        name: the row name in the table.
        measure: "inference", "query" or "train".
        inputs: the benchmark inputs (size, seeds, batch, ...), as a dict of
            :class:`~.inputs.BenchmarkInputs` fields.
        precision: "float32", "bfloat16" or "float16".
        runs, warmup: timed and untimed calls.
        force: forced mode (see :mod:`.forcing`).
        config_file, opts, weights: for "ours" and "plain" (the plain detector is derived from the
            config).
        official: for "official": ``{"impl", "path", "device", "pre_nms_topk", "post_nms_topk",
            "detections"}``.
        threads: torch intra-op threads (0: torch's default).
        flops: count the model FLOPs of an inference or query call (one warm-up call).
    """

    kind: str
    name: str
    measure: str
    inputs: Dict
    precision: str = "float32"
    runs: int = 5
    warmup: int = 1
    force: bool = True
    config_file: str = ""
    opts: List = field(default_factory=list)
    weights: str = ""
    official: Dict = field(default_factory=dict)
    threads: int = 0
    flops: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Job":
        return cls(**json.loads(text))


def run_job(job: Job) -> Dict:
    """Run a job in this process; the result dict (see :mod:`.measure`) plus ``threads``,
    ``wall_s`` and ``error`` (None, or the exception as text with ``traceback``)."""
    import torch

    if job.threads > 0:
        torch.set_num_threads(job.threads)
    t0 = time.perf_counter()
    try:
        result = _dispatch(job)
        result["error"] = None
    except Exception as e:  # reported in the row; the run goes on
        result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    result["threads"] = torch.get_num_threads()
    result["wall_s"] = time.perf_counter() - t0
    return result


def _check(job: Job) -> None:
    if job.kind not in KINDS:
        raise ValueError(f"unknown job kind {job.kind!r}")
    if job.measure not in MEASURES:
        raise ValueError(f"unknown measurement {job.measure!r}")


def _config(job: Job):
    """The config a job of ours or of the plain detector runs, its forced flag and weights."""
    from .models import check_device, model_cfg, plain_detector_cfg

    cfg = model_cfg(job.config_file, job.opts, job.weights, job.force, job.precision)
    if job.kind == "plain":  # no trained weights exist for it: always forced
        cfg = plain_detector_cfg(cfg)
    check_device(cfg, job.config_file)
    force = job.force or job.kind == "plain"
    # the weights the model loads: given, or (--no-force) those of the config; "" = random
    return cfg, force, cfg.MODEL.WEIGHTS


def _dispatch(job: Job) -> Dict:
    _check(job)
    inputs = BenchmarkInputs(**job.inputs)
    if job.kind == "official":
        from .measure_official import measure_official

        spec = dict(job.official, precision=job.precision)
        return measure_official(spec, job.measure, inputs, job.runs, job.warmup, job.flops)
    from .measure import MEASUREMENTS

    cfg, force, weights = _config(job)
    extra = {} if job.measure == "train" else {"flops": job.flops}
    return MEASUREMENTS[job.measure](cfg, inputs, job.runs, job.warmup, force, weights, **extra)


def open_session(job: Job):
    """The prepared :class:`~.measure.Session` of an inference or query job (for interleaved
    runs, :mod:`.interleave`)."""
    _check(job)
    inputs = BenchmarkInputs(**job.inputs)
    if job.kind == "official":
        from .measure_official import OfficialSession

        return OfficialSession(dict(job.official, precision=job.precision), job.measure, inputs)
    from .measure import SESSIONS

    if job.measure not in SESSIONS:
        raise ValueError(f"the {job.measure!r} measurement cannot run interleaved")
    cfg, force, weights = _config(job)
    return SESSIONS[job.measure](cfg, inputs, force, weights)


def run_job_in_subprocess(job: Job, python: Optional[str] = None, cwd: str = "") -> Dict:
    """Run a job in a fresh ``python -m benchmarks.worker`` process.

    Its output is captured; on failure the result's ``error`` holds the end of it.
    """
    with tempfile.TemporaryDirectory(prefix="ps-bench-") as tmp:
        job_path, out_path = os.path.join(tmp, "job.json"), os.path.join(tmp, "result.json")
        with open(job_path, "w") as f:
            f.write(job.to_json())
        cmd = [python or sys.executable, "-m", "benchmarks.worker", job_path, out_path]
        # the package importable even when it is not installed
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p
        )
        proc = subprocess.run(cmd, cwd=cwd or None, env=env, capture_output=True, text=True)
        if os.path.isfile(out_path):
            with open(out_path) as f:
                return json.load(f)
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        return {
            "error": f"worker exited with status {proc.returncode} without a result",
            "traceback": "\n".join(tail),
        }
