"""Fixtures of the tool tests: a tiny synthetic dataset (tests.common.tiny_opts: a model on it)."""

import pytest

from tests.common import load_tool, tiny_synthetic_splits


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    return tiny_synthetic_splits(
        str(tmp_path_factory.mktemp("synthetic")), "tiny_synthetic_trainnet"
    )


@pytest.fixture(scope="module")
def run_benchmark():
    """``run_benchmark(argv)``: run a ``tools/benchmark.py`` subcommand in-process; its result."""
    tool = load_tool("benchmark")

    def run(argv):
        args = tool.build_parser().parse_args(argv)
        return args.func(args)

    return run
