"""Training and inference: the trainer, its guarded training step, hooks and the predictor.

The checkpointer moved to :mod:`personsearch.checkpoint`; ``personsearch.engine.
PersonSearchCheckpointer`` still works, with a ``DeprecationWarning``, until the next release.
"""

import warnings

from .hooks import OIMSyncCheckHook, StepSeedHook, check_oim_memories_in_sync
from .predictor import PersonSearchPredictor
from .train_loop import GuardedTrainLoop
from .trainer import PersonSearchTrainer

# old name -> (new module, name); resolved on first use with a DeprecationWarning
_MOVED = {
    "PersonSearchCheckpointer": ("personsearch.checkpoint", "PersonSearchCheckpointer"),
    "load_training_records": ("personsearch.data.build", "load_training_records"),
}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module, attr = _MOVED[name]
    warnings.warn(
        f"personsearch.engine.{name} moved to {module}.{attr}; the old name will be removed in "
        "the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), attr)
