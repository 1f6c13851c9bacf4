"""Fixtures of the tool tests: a tiny synthetic dataset (tests.common.tiny_opts: a model on it)."""

import pytest

from tests.common import tiny_synthetic_splits


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    return tiny_synthetic_splits(
        str(tmp_path_factory.mktemp("synthetic")), "tiny_synthetic_trainnet"
    )
