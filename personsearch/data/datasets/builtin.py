"""Registers the built-in splits under ``$DETECTRON2_DATASETS`` (default ``./datasets``).

==================  ============================================  =========================
name                files                                         protocol
==================  ============================================  =========================
cuhk_sysu_train     ``$DETECTRON2_DATASETS/CUHK-SYSU``            cuhk_sysu (TestG{N}.mat)
cuhk_sysu_test      same                                          cuhk_sysu
prw_train           ``$DETECTRON2_DATASETS/PRW``                  prw (all other frames)
prw_test            same                                          prw
synthetic_train     ``$DETECTRON2_DATASETS/synthetic`` (made by   cuhk_sysu
synthetic_test      ``datasets/prepare_synthetic.py``)            cuhk_sysu
==================  ============================================  =========================

The expected trees are in ``datasets/README.md``. Loading is lazy: nothing is read until
``DatasetCatalog.get(name)``. Nothing is generated either: a missing or stale synthetic folder is an
error that names it and the command that prepares it (``python datasets/prepare_synthetic.py``).
"""

import os

from .common import SPLITS, register_person_search_dataset
from .cuhk_sysu import load_cuhk_sysu, register_cuhk_sysu
from .prw import register_prw
from .synthetic import check_synthetic_dataset

CUHK_SYSU_DIR = "CUHK-SYSU"
PRW_DIR = "PRW"
SYNTHETIC_DIR = "synthetic"


def datasets_root() -> str:
    """``$DETECTRON2_DATASETS``, or ``datasets`` relative to the working directory."""
    return os.path.abspath(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))


def register_synthetic(name: str, root: str, split: str) -> None:
    """Register a split of the synthetic dataset prepared in ``root`` (loading it only loads:
    a missing or stale folder raises
    :class:`~personsearch.data.datasets.synthetic.SyntheticDatasetMissingError`, which names the
    folder and ``python datasets/prepare_synthetic.py``).

    Raises:
        ValueError: unknown split (checked now, not when the split is loaded), or ``name``
            already registered.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown synthetic split {split!r}; valid splits are {list(SPLITS)}.")

    def load(root=root, split=split):
        return load_cuhk_sysu(check_synthetic_dataset(root), split)

    register_person_search_dataset(name, load, protocol="cuhk_sysu", root=root, split=split)


def register_all(root: str) -> None:
    """Register every built-in split with its files under ``root``."""
    for split in ("train", "test"):
        register_cuhk_sysu(f"cuhk_sysu_{split}", os.path.join(root, CUHK_SYSU_DIR), split)
        register_prw(f"prw_{split}", os.path.join(root, PRW_DIR), split)
        register_synthetic(f"synthetic_{split}", os.path.join(root, SYNTHETIC_DIR), split)


if __name__.endswith(".builtin"):
    register_all(datasets_root())
