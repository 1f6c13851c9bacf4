"""Old import paths kept for one release after a module moved.

An alias module calls :func:`moved_module` with its own name and the new path. It gets the new
module (whose names it re-exports) and emits one ``DeprecationWarning`` that names the new path,
attributed to the code that imported the old path rather than to the import machinery. For an old
*package*, the submodules of the old path (``old.sub``) resolve to the very same module objects as
``new.sub``, so classes are not duplicated and ``isinstance`` checks keep working.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings
from types import ModuleType

__all__ = ["moved_module"]

_IMPORTLIB_DIR = os.path.dirname(importlib.__file__)


def _importer_stacklevel() -> int:
    """The ``stacklevel``, for :func:`warnings.warn` in :func:`moved_module`, of the code that
    imported the alias module. :func:`warnings.warn` itself skips the frames of
    ``importlib._bootstrap``; those of :func:`importlib.import_module` count."""
    frame, level = sys._getframe(3), 3  # 1: moved_module; 2: the alias module's body
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_IMPORTLIB_DIR):
            level += 1
        elif not ("importlib" in name and "_bootstrap" in name):
            break
        frame = frame.f_back
    return level


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``old.<sub>`` to the module ``new.<sub>``."""

    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.old + "."):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        # the module object of the new path itself (its name, spec and attributes unchanged)
        return importlib.import_module(self.new + spec.name[len(self.old) :])

    def exec_module(self, module):
        pass  # already executed under its new name


def moved_module(old: str, new: str) -> ModuleType:
    """Warn that ``old`` moved to ``new`` and return the module ``new``.

    Args:
        old: the deprecated dotted path (the alias module's ``__name__``).
        new: the dotted path of the module that replaces it.

    Returns:
        The module ``new``. When it is a package, ``import old.sub`` gives ``new.sub`` from then on.
    """
    module = importlib.import_module(new)
    if hasattr(module, "__path__") and not any(
        isinstance(f, _AliasFinder) and f.old == old for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _AliasFinder(old, new))
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; import {new} instead.",
        DeprecationWarning,
        stacklevel=_importer_stacklevel(),
    )
    return module
