"""Training: the trainer, its guarded training step, checkpointer and hooks."""

from .checkpointer import PersonSearchCheckpointer
from .hooks import OIMSyncCheckHook, StepSeedHook, check_oim_memories_in_sync
from .predictor import PersonSearchPredictor
from .train_loop import GuardedTrainLoop
from .trainer import PersonSearchTrainer, load_training_records
