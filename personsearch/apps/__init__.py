"""Applications built on the person-search model, not part of the model.

The core of personsearch (``config``, ``data``, ``modeling``, ``evaluation``, ``engine``) trains,
evaluates and runs the model; its public inference API is
:class:`~personsearch.engine.PersonSearchPredictor`. A package under ``apps/`` is a product that
runs the model through that API only (it may reuse the core's pure helpers, e.g. CBGM):

* :mod:`personsearch.apps.search`: search your own images and videos at archive scale (an on-disk
  index, approximate search, filters, reports), the library behind ``tools/search.py``.

Why a separate ``apps`` package: the application has its own storage format, optional dependencies
(FAISS) and release concerns, and its old name (``personsearch.search``) was easily confused with
the benchmark protocol (:mod:`personsearch.evaluation.search_protocol`). ``import personsearch``
does not import anything under ``apps/``; import the application explicitly.
"""
