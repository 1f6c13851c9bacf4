"""The test suite. The renderer of the synthetic dataset is an annex next to its prepare script
(``datasets/synthetic_generator/``, not installed): importing any test module makes it importable
as ``synthetic_generator``, also in the subprocesses that import a test module."""

import os
import sys

_GENERATOR_PARENT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets"
)
if _GENERATOR_PARENT not in sys.path:
    sys.path.append(_GENERATOR_PARENT)
