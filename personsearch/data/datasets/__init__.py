"""Dataset loaders and registration; importing this module registers the built-in splits."""

from . import builtin  # noqa: F401  (registers cuhk_sysu_*, prw_*, synthetic_*)
from .cuhk_sysu import (
    available_gallery_sizes,
    load_cuhk_sysu,
    load_cuhk_sysu_protocol,
    register_cuhk_sysu,
)
from .json_format import load_person_search_json, register_person_search_json
from .json_writer import save_person_search_json
from .prw import load_prw, register_prw
from .synthetic import SYNTHETIC_DEFAULTS, SyntheticDatasetMissingError, check_synthetic_dataset
