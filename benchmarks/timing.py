"""Timing and memory: CUDA-synchronised wall-clock times, their median and spread, and the peak
memory of a measurement (peak RSS of the process on the CPU, peak allocated tensor memory on a
GPU)."""

import resource
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch


def timed_runs(
    step: Callable[[int], object], runs: int, warmup: int, cuda: bool, desc: str = ""
) -> List[float]:
    """Call ``step(i)`` ``warmup + runs`` times; the seconds of the last ``runs`` calls (with a
    tqdm progress bar named ``desc`` when given).

    On CUDA the device is synchronised before and after every call, so each time covers the
    kernels the call launched.
    """
    return timed_calls(step, runs, warmup, cuda, desc)[0]


def timed_call(step: Callable[[], object], cuda: bool) -> Tuple[float, float]:
    """One call of ``step()``: ``(wall seconds, CPU seconds of this process)``, CUDA-synchronised
    before and after. The CPU time (all threads of the process) hardly depends on what else runs
    on the machine, the wall time does."""
    if cuda:
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def timed_calls(
    step: Callable[[int], object], runs: int, warmup: int, cuda: bool, desc: str = ""
) -> Tuple[List[float], List[float]]:
    """:func:`timed_runs` that also returns the CPU seconds of the timed calls:
    ``(wall seconds, CPU seconds)``, one entry per timed call."""
    seconds, cpu = [], []
    calls = range(warmup + runs)
    if desc:
        from tqdm import tqdm

        calls = tqdm(calls, desc=desc)
    for i in calls:
        wall, used = timed_call(lambda: step(i), cuda)
        if i >= warmup:
            seconds.append(wall)
            cpu.append(used)
    return seconds, cpu


def measured_runs(
    step: Callable[[int], object], runs: int, warmup: int, cuda: bool, items_per_call: int
) -> Dict:
    """``timed_runs`` under a fresh memory peak: the timing and memory fields of a benchmark row.

    Returns:
        ``seconds`` (the ``runs`` times), ``stats`` (their ``summarize``), ``cpu_seconds`` and
        ``cpu_stats`` (the same for the CPU time of the process), ``items_per_call``,
        ``peak_memory_mb`` (during the runs) and ``setup_peak_memory_mb`` (before them: model
        building, inputs).
    """
    setup_mb = peak_memory_mb(cuda)
    reset_peak_memory(cuda)
    seconds, cpu = timed_calls(step, runs, warmup, cuda)
    return timing_fields(seconds, cpu, items_per_call, peak_memory_mb(cuda), setup_mb)


def timing_fields(
    seconds: List[float],
    cpu_seconds: List[float],
    items_per_call: int,
    peak_mb: float,
    setup_mb: float,
) -> Dict:
    """The timing and memory fields of a benchmark result (see :func:`measured_runs`)."""
    return {
        "seconds": seconds,
        "stats": summarize(seconds),
        "cpu_seconds": cpu_seconds,
        "cpu_stats": summarize(cpu_seconds),
        "items_per_call": items_per_call,
        "peak_memory_mb": peak_mb,
        "setup_peak_memory_mb": setup_mb,
    }


def summarize(seconds: List[float]) -> Dict[str, float]:
    """Median, min, max and quartiles of a list of times (seconds)."""
    if not seconds:
        return {}
    s = sorted(seconds)
    if len(s) >= 2:
        q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
    else:
        q1 = q3 = s[0]
    return {
        "median": statistics.median(s),
        "min": s[0],
        "max": s[-1],
        "q1": q1,
        "q3": q3,
        "mean": statistics.fmean(s),
        "runs": len(s),
    }


def reset_peak_memory(cuda: bool) -> None:
    """Start a new peak of GPU memory (no-op on the CPU: the RSS peak is per process)."""
    if cuda:
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(cuda: bool) -> float:
    """Peak GPU memory allocated by torch since the last reset, or the peak resident set size of
    this process (MiB)."""
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
