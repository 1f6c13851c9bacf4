"""Mixed-precision helpers: one place that turns the AMP config keys into autocast contexts."""

import contextlib
from typing import ContextManager

import torch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast_dtype(name: str, device_type: str, key: str) -> torch.dtype:
    """The torch dtype for an AMP dtype name, checked against the device.

    Args:
        name: "bfloat16" or "float16".
        device_type: "cpu" or "cuda".
        key: the config key the name came from, for the error message.
    """
    if name not in DTYPES:
        raise ValueError(f"{key} must be one of {sorted(DTYPES)}, got {name!r}")
    if device_type == "cpu" and name != "bfloat16":
        raise ValueError(f"{key} {name!r}: autocast on the CPU supports only 'bfloat16'")
    return DTYPES[name]


def autocast(enabled: bool, device_type: str, dtype: torch.dtype) -> ContextManager:
    """``torch.autocast(device_type, dtype)`` when ``enabled``, else a null context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def full_precision(device_type: str) -> ContextManager:
    """A block that runs in float32 even inside an autocast region (OIM memories and logits)."""
    return torch.autocast(device_type=device_type, enabled=False)
