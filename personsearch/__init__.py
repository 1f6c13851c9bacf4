"""personsearch: one-step person search (OIM, NAE, SeqNet, UGAS) as a Detectron2 extension.

``import personsearch`` first checks the platform (a missing or too-old PyTorch, torchvision or
Detectron2 raises :class:`~personsearch.compat.PlatformError` naming what was found and what is
needed), then registers every dataset split and model component with Detectron2.
"""

from .compat import check_platform

check_platform()

# config
from .config import add_personsearch_config, get_person_search_cfg  # isort: skip

# datasets and models (registration)
from . import data, modeling  # isort: skip

# evaluation and training
from .engine import PersonSearchTrainer  # isort: skip
from .evaluation import PersonSearchEvaluator  # isort: skip

__version__ = "0.1.0"
