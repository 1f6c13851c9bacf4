#!/usr/bin/env python
"""Statistics and scale figures of registered person-search splits.

Prints a markdown table (images, boxes, labeled/unlabeled, identities, appearances per identity,
boxes per image, queries, image sizes, box and query heights in the bins [0,60), [60,100),
[100,200), [200,400), >=400 px with percentiles) and writes to ``--output``:

* ``statistics.json``: the statistics of every split (see
  :func:`personsearch.data.statistics.compute_dataset_statistics`);
* ``statistics.md``: the table;
* ``box_heights.png``: the "diverse scale" figure, box heights of all splits overlaid, query
  heights too (fractions per height bin, and a finer histogram);
* ``boxes_per_image.png`` and ``appearances_per_identity.png``.

The table is :mod:`personsearch.data.statistics_report`, the figures and the report
:mod:`personsearch.visualization.dataset_plots`.

Example::

    python tools/analyze_dataset.py --dataset cuhk_sysu_train cuhk_sysu_test --output out/cuhk
"""

import argparse
import logging
import sys
from typing import Dict, Optional, Sequence

from detectron2.utils.logger import setup_logger

import personsearch  # noqa: F401  (registers the built-in splits)
from personsearch.data.statistics_report import statistics_table
from personsearch.utils.cli import (
    add_register_json_argument,
    register_json_datasets,
    unregistered_datasets_message,
)
from personsearch.visualization.dataset_plots import analyze

logger = logging.getLogger("personsearch.tools.analyze_dataset")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", nargs="+", required=True, help="registered split(s), e.g. prw_train prw_test"
    )
    parser.add_argument("--output", default="output/dataset_analysis", help="output folder")
    add_register_json_argument(parser)
    args = parser.parse_args(argv)
    register_json_datasets(args.register_json)
    message = unregistered_datasets_message(args.dataset)
    if message:
        parser.error(message)
    if len(set(args.dataset)) != len(args.dataset):
        parser.error("a dataset is named twice")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict]:
    """Analyse the splits; prints the table and the written paths, returns the statistics."""
    setup_logger(name="personsearch", abbrev_name="ps")
    args = parse_args(argv)
    stats, paths = analyze(args.dataset, args.output)
    print(statistics_table(stats))
    print()
    for path in paths:
        print(path)
    return stats


if __name__ == "__main__":
    main(sys.argv[1:])
