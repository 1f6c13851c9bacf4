"""Data: dataset loaders/registration and the dataset mapper."""

from . import datasets  # noqa: F401  (registers the built-in splits)
from .dataset_mapper import PersonSearchDatasetMapper
