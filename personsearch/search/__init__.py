"""Deprecated: the search application moved to :mod:`personsearch.apps.search`.

This alias is kept for one release. Importing it warns (``DeprecationWarning``) and gives the same
objects as the new path, submodules included (``personsearch.search.index`` is
``personsearch.apps.search.index``).
"""

from personsearch.utils.deprecation import moved_module

_new = moved_module(__name__, "personsearch.apps.search")
globals().update({k: v for k, v in vars(_new).items() if not k.startswith("__")})
del _new
