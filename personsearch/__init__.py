"""personsearch: one-step person search (OIM, NAE, SeqNet, UGAS) as a Detectron2 extension.

``import personsearch`` registers every model component (and, once the dataset modules are in
place, every dataset split) with Detectron2.
"""
# config
from .config import add_personsearch_config, get_person_search_cfg

# models (registration)
from . import modeling  # isort: skip

__version__ = "0.1.0"
