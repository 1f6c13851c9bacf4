"""The renderer of the built-in synthetic person-search dataset (``datasets/prepare_synthetic.py``).

An annex of the repository, next to its prepare script and outside the installed ``personsearch``
package: the registered splits ``synthetic_train`` / ``synthetic_test`` only load a prepared
folder (:func:`personsearch.data.datasets.synthetic.check_synthetic_dataset`), they never render.
Scenes are drawn by the :mod:`.render` package; the other modules decide who appears where
(``layout``), write the images and the MATLAB annotation files (``generator``, through
:mod:`personsearch.data.datasets.cuhk_sysu_writer`, so the set loads with the real CUHK-SYSU loader
unchanged) and replace the prepared copy on disk atomically (``prepare``). The parameters, their
defaults and validation, the generator version and the staleness check are the core's
(:mod:`personsearch.data.datasets.synthetic`), shared with the loader. Design, parameters and
measured statistics: ``docs/SYNTHETIC.md``.

Example (from the repository root; the prepare script puts this folder on ``sys.path`` itself)::

    import sys; sys.path.insert(0, "datasets")
    from synthetic_generator import ensure_synthetic_dataset
    root = ensure_synthetic_dataset("datasets/synthetic")  # generated once (minutes), then cached
"""

from personsearch.data.datasets.synthetic import (
    GENERATOR_VERSION,
    INFO_FILE,
    SYNTHETIC_DEFAULTS,
    default_root,
)

from .generator import generate_synthetic_dataset
from .prepare import ensure_synthetic_dataset

__all__ = [
    "GENERATOR_VERSION",
    "INFO_FILE",
    "SYNTHETIC_DEFAULTS",
    "default_root",
    "ensure_synthetic_dataset",
    "generate_synthetic_dataset",
]
