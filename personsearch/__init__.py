"""personsearch: one-step person search (OIM, NAE, SeqNet, UGAS) as a Detectron2 extension.

``import personsearch`` registers every dataset split and model component with Detectron2.
"""
# config
from .config import add_personsearch_config

__version__ = "0.1.0"
