"""Fixtures of the bad-input tests: temporary dataset registrations and clean logging state."""

import logging

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

# loggers that detectron2's setup_logger (called by the tools and train_net) reconfigures
_LOGGERS = ("personsearch", "detectron2", "fvcore")


@pytest.fixture(autouse=True)
def _isolated_logging():
    """Run each test with the package loggers as plain propagating loggers, and restore them.

    Tools' ``main`` call detectron2's ``setup_logger``, which stops propagation to the root logger
    (hiding warnings from ``caplog``) and adds a handler whose formatter renames records
    ("personsearch.x" -> "ps.x") and whose stream may be a closed capture of an earlier test.
    """
    saved = {}
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.propagate, logger.level)
        logger.handlers[:] = []
        logger.propagate = True
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)


class Catalog:
    """Registers datasets for one test and removes them afterwards."""

    def __init__(self):
        self.names = []

    def register(self, name: str, records, **metadata) -> str:
        self.forget(name)
        DatasetCatalog.register(name, lambda: records)
        MetadataCatalog.get(name).set(evaluator_type="person_search", **metadata)
        self.names.append(name)
        return name

    def track(self, name: str) -> str:
        """Remove ``name`` at the end of the test (registered by the code under test)."""
        self.names.append(name)
        return name

    @staticmethod
    def forget(name: str) -> None:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)


@pytest.fixture
def catalog():
    cat = Catalog()
    yield cat
    for name in cat.names:
        cat.forget(name)
