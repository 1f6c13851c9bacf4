"""Conversion of checkpoints from other implementations (the official SeqNet and NAE code)."""

from .official import (
    SOURCES,
    ConversionError,
    ConversionReport,
    convert_official_state_dict,
    load_official_state_dict,
)
