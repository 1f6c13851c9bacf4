"""Errors of the search index. All are ``ValueError``s: ``tools/search.py`` prints them as
``error: <message>`` and exits with status 2."""

__all__ = ["IndexMismatchError", "MissingFieldError", "SearchIndexError"]


class SearchIndexError(ValueError):
    """An index folder that cannot be used: missing, corrupt, truncated, empty, locked, old."""


class IndexMismatchError(SearchIndexError):
    """An index built with another model, config or settings than the current run's."""


class MissingFieldError(ValueError):
    """A search filter on a field the index does not hold (e.g. uncertainty of a model without
    one, a time range on an index of still images)."""
