"""The prepared copy on disk: whether a folder holds the synthetic set of this generator version
and parameters (the staleness check), and the error that tells how to prepare it.

The set itself is made by ``python datasets/prepare_synthetic.py`` (the renderer is next to that
script, outside the installed package); the registered splits only load it."""

import json
import os
from typing import Dict, Optional

from personsearch.data.datasets.synthetic.params import (
    GENERATOR_VERSION,
    IMAGE_DIR,
    INFO_FILE,
    normalize_params,
    params_from_record,
)

PREPARE_COMMAND = "python datasets/prepare_synthetic.py"


class SyntheticDatasetMissingError(FileNotFoundError):
    """The synthetic dataset folder is missing, incomplete or stale (another generator version or
    other parameters); the message names the folder and the command that prepares it."""


def read_info(root: str) -> Optional[Dict]:
    """The contents of ``root/synthetic_info.json``, or None when it is missing or unreadable."""
    try:
        with open(os.path.join(root, INFO_FILE)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def is_current(root: str, params: Dict) -> bool:
    """Whether ``root`` holds a complete set made by this generator version with ``params``.

    A recorded parameter dict without ``extra_train_images`` / ``extra_train_ids`` (a set made with
    them at 0, or before they existed) counts as having them at 0.

    Args:
        root: the dataset folder.
        params: normalized parameters (see ``params.normalize_params``).
    """
    info = read_info(root)
    if not isinstance(info, dict) or not isinstance(info.get("params"), dict):
        return False
    return bool(
        info.get("version") == GENERATOR_VERSION
        and params_from_record(info["params"]) == params
        and os.path.isdir(os.path.join(root, IMAGE_DIR))
    )


def default_root() -> str:
    """``$DETECTRON2_DATASETS/synthetic`` (default ``datasets/synthetic`` relative to the working
    directory), as an absolute path: where ``synthetic_train`` / ``synthetic_test`` are
    registered and where the prepare script writes by default."""
    base = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    return os.path.abspath(os.path.join(base, "synthetic"))


def prepare_command(root: str) -> str:
    """The exact command that prepares ``root`` (``--output`` only when it is not the default)."""
    root = os.path.abspath(root)
    if root == default_root():
        return PREPARE_COMMAND
    return f"{PREPARE_COMMAND} --output {root}"


def check_synthetic_dataset(root: str, **params) -> str:
    """Make sure ``root`` holds the synthetic dataset of these parameters; never generates it.

    Args:
        root: the dataset folder, e.g. ``$DETECTRON2_DATASETS/synthetic``.
        **params: keys of :data:`SYNTHETIC_DEFAULTS` to override (default: the default set).

    Returns:
        ``root`` as an absolute path.

    Raises:
        TypeError, ValueError: bad parameters.
        SyntheticDatasetMissingError: (a ``FileNotFoundError``) the folder is missing, is not a
            complete synthetic set, or was made by another generator version or with other
            parameters; the message names the folder and the command to run.
    """
    p = normalize_params(params)
    root = os.path.abspath(root)
    if is_current(root, p):
        return root
    info = read_info(root)
    if not os.path.isdir(root):
        state = "is missing"
    elif not isinstance(info, dict):
        state = f"is not a prepared synthetic dataset (no readable {INFO_FILE})"
    elif info.get("version") != GENERATOR_VERSION:
        state = (
            f"is stale: made by generator version {info.get('version')!r}, this code expects "
            f"{GENERATOR_VERSION!r}"
        )
    elif not os.path.isdir(os.path.join(root, IMAGE_DIR)):
        state = f"is incomplete (no {IMAGE_DIR}/ folder)"
    else:
        state = "is stale: it was made with other generator parameters"
    raise SyntheticDatasetMissingError(
        f"The synthetic dataset folder {root} {state}. Prepare it (once, about a minute on 2 CPU "
        f"cores) with:\n    {prepare_command(root)}"
    )
