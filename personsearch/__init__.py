"""personsearch: one-step person search (OIM, NAE, SeqNet, UGAS) as a Detectron2 extension.

``import personsearch`` registers every dataset split and model component with Detectron2.
"""

# config
from .config import add_personsearch_config, get_person_search_cfg

# datasets and models (registration)
from . import data, modeling  # isort: skip

# evaluation and training
from .engine import PersonSearchTrainer
from .evaluation import PersonSearchEvaluator

__version__ = "0.1.0"
