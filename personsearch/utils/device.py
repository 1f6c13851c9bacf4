"""The device a config asks for, checked before anything is built on it."""

from typing import Callable, Optional

import torch

__all__ = ["check_device", "cuda_unavailable_message"]


def cuda_unavailable_message(device: str, source: str) -> Optional[str]:
    """The message for a CUDA ``MODEL.DEVICE`` on a machine without CUDA, else None.

    Args:
        device: ``MODEL.DEVICE`` ("cpu", "cuda", "cuda:1", ...).
        source: what asks for it, first in the message (a config file, a command).
    """
    if not str(device).startswith("cuda") or torch.cuda.is_available():
        return None
    return (
        f"{source}: MODEL.DEVICE is {device!r} but CUDA is not available; add 'MODEL.DEVICE cpu' "
        "to the command to run on the CPU."
    )


def check_device(
    device: str, source: str, error: Callable[[str], BaseException] = RuntimeError
) -> None:
    """Raise ``error`` (:func:`cuda_unavailable_message`) for a CUDA ``device`` without CUDA.

    Args:
        device: ``MODEL.DEVICE``.
        source: what asks for it, first in the message (a config file, a command).
        error: the exception type raised with the message (a command-line tool passes
            ``SystemExit``; one with a parser calls :func:`cuda_unavailable_message` and
            ``parser.error`` instead).
    """
    message = cuda_unavailable_message(device, source)
    if message is not None:
        raise error(message)
