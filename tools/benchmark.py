#!/usr/bin/env python
"""personsearch benchmarks, one subcommand each.

    python tools/benchmark.py search-eval [--protocol json|prw] [--num-images 6978] ...
    python tools/benchmark.py train --config-file configs/synthetic/OIM_R10.yaml [KEY VALUE ...]
    python tools/benchmark.py inference --config-file configs/synthetic/OIM_R10.yaml [KEY VALUE ...]
    python tools/benchmark.py search-index [--num-dets 1000000] [--dim 256] [--batch 64] [--faiss]
    python tools/benchmark.py search-scale --num-dets 10000000 --dim 512 --index-dir /tmp/sim10m

Subcommands:
    search-eval   time the search/detection protocol scoring on a synthetic results set of full
                  CUHK-SYSU size (6978 images, 2900 queries x 100 gallery images, ~10 detections
                  per image, D=256), with and without CBGM.
    train         seconds per training iteration (forward, backward, optimizer step) of a config's
                  model on a few cached batches of its training set, and peak memory.
    inference     seconds per test image (detections + embeddings, and the query embeddings) of a
                  config's model on its first test split (with TEST.OPTIMIZE), and peak memory.
    search-index  time the exact top-k search of tools/search.py on a random index of N float16
                  embeddings (default 1,000,000, D=256) for 1 query and a batch of queries;
                  --faiss also times FAISS IndexFlatIP and checks it returns the same hits.
    search-scale  build (or reuse) a simulated archive index of N detections on disk and its
                  approximate index (FAISS IVF-PQ), then time single queries exactly and
                  approximately (with exact re-ranking) and with filters, and print recall@10
                  against exact search and the bytes per detection on disk and in memory
                  (benchmarks/search_scale.py).

The model benchmarks exclude data loading (detectron2's ``data_time`` shows it during training).
On a GPU they synchronise CUDA around every timed step; memory is the peak allocated by torch on the
GPU, or the peak resident set size of the process on the CPU.

This script only parses the arguments and dispatches: the harness is the repository's top-level
``benchmarks`` package (not installed with personsearch). Adding a subcommand: write
``add_<name>_arguments(parser)`` in ``benchmarks/parser.py`` and ``run_<name>(args)`` in
``benchmarks/cli.py``, and list them in ``benchmarks.parser.SUBCOMMANDS``.
"""

import argparse
import os
import sys

# the harness is a top-level package of the repository (benchmarks/), not part of the installed
# personsearch package: import it from the repository root
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from benchmarks import parser  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The parser of the subcommands (:mod:`benchmarks.parser`)."""
    return parser.build_parser(description=__doc__)


def main(argv=None) -> int:
    """Run one benchmark subcommand (exit code 0; errors raise)."""
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
