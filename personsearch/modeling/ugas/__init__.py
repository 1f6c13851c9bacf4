"""UGAS: shallow fusion (SFM), self-distillation (SD) and uncertainty guidance (UG) modules that
extend the embedding path of any person-search RoI head."""

from .build import build_ugas
