"""The platform personsearch supports, checked once at ``import personsearch``.

A missing or too-old PyTorch, torchvision or Detectron2 gives one :class:`PlatformError` that names
what was found (version and location) and what is needed, instead of an ``AttributeError`` deep
inside a model later. The two tested combinations (the reference lane and the newest PyTorch) are
in ``docs/INSTALL.md``.

This module imports nothing but the standard library at module level, so that the check can run
before anything that needs the checked packages.
"""

import importlib
import importlib.util
import re
import sys
from typing import List, Optional, Tuple

#: the oldest versions personsearch runs on: (distribution, import name, minimum version)
MINIMUM_VERSIONS: Tuple[Tuple[str, str, Tuple[int, ...]], ...] = (
    ("torch", "torch", (2, 3)),
    ("torchvision", "torchvision", (0, 18)),
    # upstream detectron2 reports 0.6 for its latest release and for builds of its main branch
    ("detectron2", "detectron2", (0, 6)),
)
MINIMUM_PYTHON = (3, 10)

_INSTALL_HINT = (
    "See docs/INSTALL.md: `make venv` installs the reference environment (Python 3.10, "
    "torch 2.3.1, sal-detectron2), or install PyTorch >= 2.3 and torchvision, then detectron2 "
    "from source (pip install --no-build-isolation "
    "'git+https://github.com/facebookresearch/detectron2.git'), then `pip install -e .`."
)


class PlatformError(ImportError):
    """The installed Python, PyTorch, torchvision or Detectron2 cannot run personsearch."""


def parse_version(text: str) -> Optional[Tuple[int, ...]]:
    """The leading release numbers of a version string: ``"2.6.0a0+git12ab"`` -> ``(2, 6, 0)``.

    Returns:
        None when the string does not start with a number.
    """
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(text))
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def _dotted(version: Tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def platform_problems(import_module=importlib.import_module) -> List[str]:
    """What in the running interpreter prevents personsearch from working (empty: nothing).

    Args:
        import_module: imports a package by name (replaceable in tests).

    Returns:
        One sentence per problem, each naming what was found and what is needed.
    """
    problems = []
    if sys.version_info[:2] < MINIMUM_PYTHON:
        problems.append(
            f"Python >= {_dotted(MINIMUM_PYTHON)} is needed, this is Python "
            f"{sys.version.split()[0]} ({sys.executable})"
        )
    torch_ok = False
    for dist, name, minimum in MINIMUM_VERSIONS:
        need = f"{dist} >= {_dotted(minimum)}"
        if name != "torch" and not torch_ok:
            # importing it would import torch first; only say whether it is there at all
            if importlib.util.find_spec(name) is None:
                problems.append(f"{need} is needed, but {name} is not installed")
            continue
        try:
            module = import_module(name)
        except ImportError as e:
            missing = isinstance(e, ModuleNotFoundError) and e.name == name
            found = "is not installed" if missing else f"cannot be imported ({e})"
            problems.append(f"{need} is needed, but {name} {found}")
            continue
        version = getattr(module, "__version__", "")
        parsed = parse_version(version)
        where = getattr(module, "__file__", None) or "?"
        if parsed is None or parsed[: len(minimum)] < minimum:
            found = f"{name} {version or '(no version)'} at {where}"
            problems.append(f"{need} is needed, found {found}")
            continue
        torch_ok = torch_ok or name == "torch"
    return problems


def check_platform(import_module=importlib.import_module) -> None:
    """Raise :class:`PlatformError` listing every problem :func:`platform_problems` finds."""
    problems = platform_problems(import_module)
    if problems:
        raise PlatformError(
            "personsearch cannot run in this environment: "
            + "; ".join(problems)
            + f". Python: {sys.executable}. "
            + _INSTALL_HINT
        )
