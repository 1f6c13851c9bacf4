"""Training: the trainer, its guarded training step and checkpointer."""

from .checkpointer import PersonSearchCheckpointer
from .train_loop import GuardedTrainLoop
from .trainer import PersonSearchTrainer, load_training_records
