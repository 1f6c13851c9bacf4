"""The FLOP rate a device can reach, the denominator of model FLOPs utilisation (MFU).

Two numbers per device and precision:

* **measured**: the best rate of a large square matrix product on the same device, precision and
  threads, measured at the start of the run (CPU: 2048^3 float32 or bfloat16; GPU: 8192^3). That
  is the limit the model's convolutions could reach on this machine as it is (clock, cores given
  to the process), and the default denominator. On the CPU the rate is per second of *CPU time*
  of the process times its threads (``time.process_time``): on a machine shared with other jobs
  the wall-clock rate moves with their load, the CPU-time rate much less; MFU on the CPU is then
  computed from the CPU time of the model's calls as well;
* **spec**: the vendor's dense peak for known GPUs (no sparsity), reported beside it.

On a GPU, float32 rows use the TF32 rate when cuDNN may use TF32 (PyTorch's default,
``torch.backends.cudnn.allow_tf32``): the convolutions then run on tensor cores.
"""

import time
from typing import Dict, Optional

import torch

__all__ = ["SPEC_TFLOPS", "device_peak", "measure_matmul_peak", "rate_precision"]

# dense (non-sparse) peaks in TFLOP/s by GPU name fragment, most specific first
SPEC_TFLOPS = (
    ("H200 NVL", {"bfloat16": 835.0, "float16": 835.0, "tf32": 417.0, "float32": 60.0}),
    ("H200", {"bfloat16": 989.4, "float16": 989.4, "tf32": 494.7, "float32": 66.9}),
    ("H100 PCIe", {"bfloat16": 756.0, "float16": 756.0, "tf32": 378.0, "float32": 51.2}),
    ("H100 NVL", {"bfloat16": 835.0, "float16": 835.0, "tf32": 417.0, "float32": 60.0}),
    ("H100", {"bfloat16": 989.4, "float16": 989.4, "tf32": 494.7, "float32": 66.9}),
    ("A100", {"bfloat16": 312.0, "float16": 312.0, "tf32": 156.0, "float32": 19.5}),
    ("L40S", {"bfloat16": 362.0, "float16": 362.0, "tf32": 183.0, "float32": 91.6}),
    ("L4", {"bfloat16": 121.0, "float16": 121.0, "tf32": 60.0, "float32": 30.3}),
)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def rate_precision(device: torch.device, precision: str) -> str:
    """The arithmetic the model's convolutions use: ``precision``, or "tf32" for float32 on a GPU
    whose cuDNN may use TF32."""
    if device.type == "cuda" and precision == "float32" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return precision


def spec_peak(device: torch.device, precision: str) -> Optional[float]:
    """The vendor's dense peak in FLOP/s for a known GPU, else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    kind = rate_precision(device, precision)
    for fragment, peaks in SPEC_TFLOPS:
        if fragment in name:
            return peaks[kind] * 1e12
    return None


def measure_matmul_peak(device: torch.device, precision: str, repeats: int = 5) -> float:
    """The best FLOP/s of a large square matrix product (see the module docstring).

    Args:
        device: where to measure.
        precision: "float32", "bfloat16" or "float16" ("tf32" is used for float32 on a GPU with
            cuDNN TF32 allowed).
        repeats: timed products (after one warm-up); the fastest counts.

    Returns:
        FLOP/s: wall-clock on a GPU; on the CPU per CPU-second of the process divided by its torch
        threads (see the module docstring).
    """
    kind = rate_precision(device, precision)
    dtype = _DTYPES[precision]
    cuda = device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time
    per_thread = 1 if cuda else torch.get_num_threads()
    n = 8192 if cuda else 2048
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn((n, n), device=device, generator=g).to(dtype)
    b = torch.randn((n, n), device=device, generator=g).to(dtype)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = kind == "tf32"
    try:
        best = float("inf")
        for i in range(repeats + 1):
            if cuda:
                torch.cuda.synchronize(device)
            t0 = clock()
            torch.mm(a, b)
            if cuda:
                torch.cuda.synchronize(device)
            if i > 0:
                best = min(best, (clock() - t0) / per_thread)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return 2.0 * n**3 / max(best, 1e-9)


def device_peak(
    device: torch.device, precision: str, override_tflops: float = 0.0
) -> Dict[str, Optional[float]]:
    """The MFU denominator of a device and precision.

    Args:
        device: the device.
        precision: "float32", "bfloat16" or "float16".
        override_tflops: > 0: use this (TFLOP/s) instead of the measured rate.

    Returns:
        ``{"flops_per_s": the denominator, "source": "measured" | "given", "measured": FLOP/s or
        None, "spec": vendor peak FLOP/s or None, "arithmetic": "float32" | "tf32" | ...}``.
    """
    measured = None if override_tflops > 0 else measure_matmul_peak(device, precision)
    return {
        "flops_per_s": override_tflops * 1e12 if override_tflops > 0 else measured,
        "source": "given" if override_tflops > 0 else "measured",
        "measured": measured,
        "spec": spec_peak(device, precision),
        "arithmetic": rate_precision(device, precision),
    }
