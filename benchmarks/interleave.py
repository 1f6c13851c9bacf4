"""Interleaved timing of several models (``tools/benchmark.py compare --interleave``).

On a machine shared with other jobs the load changes from minute to minute, so models measured one
after the other (each in its own process, the default) see different machines, and their ratio
moves with the load. Interleaved, every model of a group (same size, precision, measurement and
batch) is prepared at once in its own persistent process (:func:`serve`: build, calibrate,
optimise, count FLOPs, warm up), and the timed calls then alternate between them in rounds
(A B C, B C A, C A B, ...: the starting model rotates), one call at a time, so a change of load
hits every model alike. Peak memory is still each process's own. The CPU time of each call
(``time.process_time``) is recorded beside the wall time.

Protocol: the driver writes one command per line to a worker's stdin (``step``, ``finish``); the
worker answers each, and its readiness, with one line ``@@BENCH@@ <json>`` on stdout (anything
else the model code prints is ignored).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Dict, List, Optional, Sequence

from .jobs import _PACKAGE_PARENT, Job

PREFIX = "@@BENCH@@ "


def _reply(message: Dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(job: Job) -> int:
    """Worker side: prepare the job's session, then answer ``step`` / ``finish`` commands from
    stdin (see the module docstring). Returns the exit status."""
    import torch

    from .jobs import open_session
    from .timing import peak_memory_mb, reset_peak_memory, timed_call, timing_fields

    if job.threads > 0:
        torch.set_num_threads(job.threads)
    t_start = time.perf_counter()
    try:
        session = open_session(job)
        base = dict(session.info)
        warmup = job.warmup
        if job.flops:
            base.update(session.count_flops())  # the first warm-up call
            warmup = max(0, warmup - 1)
        for _ in range(warmup):
            session.step()
        setup_mb = peak_memory_mb(session.cuda)
        reset_peak_memory(session.cuda)
    except Exception as e:
        _reply({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        return 1
    _reply({"ready": True})
    seconds: List[float] = []
    cpu: List[float] = []
    for line in sys.stdin:
        command = line.strip()
        if command == "step":
            try:
                wall, used = timed_call(session.step, session.cuda)
            except Exception as e:
                _reply({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
                return 1
            seconds.append(wall)
            cpu.append(used)
            _reply({"seconds": wall, "cpu_seconds": used})
        elif command == "finish":
            result = dict(base)
            result.update(
                timing_fields(
                    seconds, cpu, session.items_per_call, peak_memory_mb(session.cuda), setup_mb
                )
            )
            result.update(session.result())
            session.close()
            result.update(
                error=None,
                interleaved=True,
                threads=torch.get_num_threads(),
                wall_s=time.perf_counter() - t_start,
            )
            _reply(result)
            return 0
    return 1


class _Worker:
    """A persistent worker process holding one prepared job."""

    def __init__(self, job: Job, python: Optional[str], tmp: str, index: int):
        self.job = job
        path = os.path.join(tmp, f"job{index}.json")
        with open(path, "w") as f:
            f.write(job.to_json())
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p
        )
        self.log = open(os.path.join(tmp, f"job{index}.log"), "w+")
        cmd = [python or sys.executable, "-m", "benchmarks.worker", "--serve", path]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        self.error: Optional[Dict] = None

    def read(self) -> Dict:
        """The next protocol message (an error dict if the process ends first)."""
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX) :])
        self.proc.wait()
        self.log.seek(0)
        tail = self.log.read().strip().splitlines()[-15:]
        return {
            "error": f"worker exited with status {self.proc.returncode} without a result",
            "traceback": "\n".join(tail),
        }

    def send(self, command: str) -> Dict:
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # read() reports the dead worker
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run_interleaved(
    jobs: Sequence[Job], runs: int, python: Optional[str] = None, log=None
) -> List[Dict]:
    """Prepare every job in its own worker, then run ``runs`` rounds of one timed call each.

    Args:
        jobs: inference or query jobs (one per model), each with its ``warmup``.
        runs: timed calls per job.
        python: the interpreter of the workers (default: this one).
        log: optional ``log(text)`` for progress.

    Returns:
        One result per job, in order: the fields of a sequential run (:mod:`.measure`) plus
        ``interleaved: True``, or ``{"error", "traceback"}`` for a job whose worker failed (the
        other jobs go on).
    """
    results: List[Optional[Dict]] = [None] * len(jobs)
    with tempfile.TemporaryDirectory(prefix="ps-bench-interleave-") as tmp:
        workers = [_Worker(job, python, tmp, i) for i, job in enumerate(jobs)]
        try:
            for i, w in enumerate(workers):  # preparation runs in parallel; wait for each
                ready = w.read()
                if not ready.get("ready"):
                    results[i] = ready
            live = [i for i in range(len(jobs)) if results[i] is None]
            for r in range(runs):
                order = live[r % len(live) :] + live[: r % len(live)] if live else []
                for i in order:
                    if results[i] is not None:
                        continue
                    answer = workers[i].send("step")
                    if "error" in answer:
                        results[i] = answer
                if log:
                    log(f"    round {r + 1}/{runs} done")
            for i in live:
                if results[i] is None:
                    results[i] = workers[i].send("finish")
        finally:
            for w in workers:
                w.close()
    return [r if r is not None else {"error": "no result"} for r in results]
