"""The built-in synthetic person-search dataset, written in CUHK-SYSU's original format.

It is the project's default dataset: every command (training, evaluation, search demo, tests) runs
on a laptop CPU with it, with no download. Scenes are rendered by the :mod:`.render` package; the
other modules decide who appears where (``layout``), write the images and the MATLAB annotation
files (``generator``, through :mod:`personsearch.data.datasets.cuhk_sysu_writer`, so the set loads
with the real CUHK-SYSU loader unchanged) and manage the cached copy on disk (``cache``);
``params`` holds the defaults and their validation. Design, parameters and measured statistics:
``docs/SYNTHETIC.md``.

Example::

    from personsearch.data.datasets.synthetic import ensure_synthetic_dataset
    root = ensure_synthetic_dataset("datasets/synthetic")  # generated once (seconds), then cached
"""

from .cache import ensure_synthetic_dataset
from .generator import generate_synthetic_dataset
from .params import GENERATOR_VERSION, INFO_FILE, SYNTHETIC_DEFAULTS

__all__ = [
    "GENERATOR_VERSION",
    "INFO_FILE",
    "SYNTHETIC_DEFAULTS",
    "ensure_synthetic_dataset",
    "generate_synthetic_dataset",
]
