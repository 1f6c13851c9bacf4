"""Deprecated: renamed :mod:`personsearch.evaluation.search_protocol` (the benchmark protocol;
the search *application* is :mod:`personsearch.apps.search`).

This alias is kept for one release; importing it warns (``DeprecationWarning``).
"""

from personsearch.utils.deprecation import moved_module

_new = moved_module(__name__, "personsearch.evaluation.search_protocol")
globals().update({k: v for k, v in vars(_new).items() if not k.startswith("__")})
del _new
