"""The built-in synthetic person-search dataset, written in CUHK-SYSU's original format: what the
registered splits need to load it.

It is the project's default dataset: every command (training, evaluation, search demo, tests) runs
on a laptop CPU with it, with no download. It is made once by ``python
datasets/prepare_synthetic.py`` (the renderer, ``datasets/synthetic_generator/``, is an annex of the
repository next to that script); the splits ``synthetic_train`` / ``synthetic_test`` only load the
prepared folder through the real CUHK-SYSU loader. Here: ``params`` (the defaults, their validation
and the generator version) and ``cache`` (the staleness check and the error that names the folder
and the command to run). Design, parameters and measured statistics: ``docs/SYNTHETIC.md``.

Example::

    from personsearch.data.datasets.synthetic import check_synthetic_dataset
    root = check_synthetic_dataset("datasets/synthetic")  # raises if missing or stale
"""

from .cache import (
    PREPARE_COMMAND,
    SyntheticDatasetMissingError,
    check_synthetic_dataset,
    default_root,
    is_current,
    prepare_command,
    read_info,
)
from .params import GENERATOR_VERSION, INFO_FILE, SYNTHETIC_DEFAULTS

__all__ = [
    "GENERATOR_VERSION",
    "INFO_FILE",
    "PREPARE_COMMAND",
    "SYNTHETIC_DEFAULTS",
    "SyntheticDatasetMissingError",
    "check_synthetic_dataset",
    "default_root",
    "is_current",
    "prepare_command",
    "read_info",
]
