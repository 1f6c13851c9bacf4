"""Which reader reads which checkpoint file, under the project's one unpickling policy.

The policy itself (weights-only ``torch.load``, restricted unpickling of allow-listed foreign
formats, ``PERSONSEARCH_TRUSTED_FILES``) is :mod:`personsearch.utils.serialization`; this module
only picks the reader for each checkpoint format detectron2 accepts and turns what it returns into
detectron2's checkpoint dict (``{"model": state dict, ...}``):

* ``.pth`` (personsearch and detectron2 checkpoints, official conversions):
  :func:`read_torch_checkpoint`, ``torch.load(weights_only=True)``;
* ``.pkl`` (detectron2 model zoo, Detectron1/Caffe2): :func:`read_model_zoo_pickle`, numpy arrays
  only;
* ``.pyth`` (pycls): :func:`read_pycls_checkpoint`, weights-only.

Every reader raises :class:`~personsearch.utils.serialization.FileReadError`,
:class:`~personsearch.utils.serialization.UntrustedFileError` or ``FileNotFoundError``, each naming
the file; :func:`checkpoint_read_errors` gives any other failure the file's name too.
"""

import contextlib
from typing import Any, Dict, Iterator

from personsearch.utils.serialization import (
    FileReadError,
    UntrustedFileError,
    load_pickle_file,
    load_torch_file,
)

__all__ = [
    "checkpoint_read_errors",
    "check_model_state",
    "read_model_zoo_pickle",
    "read_pycls_checkpoint",
    "read_torch_checkpoint",
]


def read_torch_checkpoint(filename: str) -> Dict[str, Any]:
    """A ``torch.save`` checkpoint, read weights-only; it must hold a dict."""
    loaded = load_torch_file(filename, "checkpoint")
    if not isinstance(loaded, dict):
        raise FileReadError(f"Checkpoint {filename!r} holds a {type(loaded).__name__}, not a dict")
    return loaded


def read_model_zoo_pickle(filename: str) -> Dict[str, Any]:
    """The checkpoint dict of a detectron2 model-zoo pickle: ``{"model", "__author__", ...}`` as
    it is; a Caffe2/Detectron1 file (its weights at the top level, or under ``"blobs"`` for
    detectors) becomes ``{"model": weights without the "_momentum" entries}``, loaded with
    detectron2's name-matching heuristics (as detectron2 reads them, without arbitrary
    unpickling)."""
    data = load_pickle_file(filename, "checkpoint")
    if not isinstance(data, dict):
        raise FileReadError(
            f"{filename!r}: a model-zoo pickle holds a dict, not a {type(data).__name__}"
        )
    if "model" in data and "__author__" in data:
        return data
    blobs = data.get("blobs", data)
    weights = {k: v for k, v in blobs.items() if not str(k).endswith("_momentum")}
    return {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}


def read_pycls_checkpoint(filename: str) -> Dict[str, Any]:
    """The checkpoint dict of a pycls ``.pyth`` file (its weights under ``"model_state"``, the
    BatchNorm counters left out), loaded with detectron2's name-matching heuristics."""
    data = load_torch_file(filename, "checkpoint")
    if not isinstance(data, dict) or "model_state" not in data:
        raise FileReadError(f"{filename!r}: a pycls .pyth checkpoint holds a 'model_state' dict")
    state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
    return {"model": state, "__author__": "pycls", "matching_heuristics": True}


@contextlib.contextmanager
def checkpoint_read_errors(filename: str) -> Iterator[None]:
    """Let the readers' own errors (which name the file) through; turn any other exception (torch
    and pickle raise many types for damaged files) into a ``ValueError`` naming ``filename``."""
    try:
        yield
    except (UntrustedFileError, FileReadError, FileNotFoundError):
        raise
    except Exception as e:
        raise ValueError(f"Cannot load checkpoint {filename!r}: {type(e).__name__}: {e}") from e


def check_model_state(loaded: Dict[str, Any], filename: str) -> Dict[str, Any]:
    """``loaded`` if it holds a model state dict under ``"model"``, else a ``ValueError``."""
    if not isinstance(loaded.get("model"), dict):
        raise ValueError(
            f"Checkpoint {filename!r} holds no model state dict (found "
            f"{type(loaded.get('model')).__name__} under 'model')"
        )
    return loaded
