"""Deprecated: the checkpointer moved to :mod:`personsearch.checkpoint` (this module's names
resolve there, with a ``DeprecationWarning``, until the next release)."""

import importlib
import warnings

# old name -> module of personsearch.checkpoint that defines it now
_MOVED = {
    "PersonSearchCheckpointer": "personsearch.checkpoint.checkpointer",
    "DETECTOR_KEY_RENAMES": "personsearch.checkpoint.model_zoo",
    "DetectorKeyMapping": "personsearch.checkpoint.model_zoo",
    "expand_shared_keys": "personsearch.checkpoint.model_zoo",
    "map_detector_checkpoint": "personsearch.checkpoint.model_zoo",
    "reshape_linear_to_conv1x1": "personsearch.checkpoint.model_zoo",
}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"personsearch.engine.checkpointer.{name} moved to {_MOVED[name]}.{name}; the old path "
        "will be removed in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(_MOVED[name]), name)
