"""Command-line flags -> library objects: the search filter, the approximate index's parameters,
the records of a registered split. Shared by the index and query commands."""

import argparse
from typing import Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog

from personsearch.utils.cli import register_json_datasets, unregistered_datasets_message

from ..filters import SearchFilter, parse_time


def search_filter(args: argparse.Namespace) -> SearchFilter:
    """The :class:`~personsearch.apps.search.SearchFilter` of the query flags."""
    return SearchFilter(
        cameras=args.camera,
        sources=args.source,
        time_from=None if args.time_from is None else parse_time(args.time_from, "--time-from"),
        time_to=None if args.time_to is None else parse_time(args.time_to, "--time-to"),
        path_prefix=args.path_prefix,
        min_score=args.min_score,
        max_uncertainty=args.max_uncertainty,
    )


def ann_params(args: argparse.Namespace) -> Dict[str, int]:
    """The approximate index parameters given on the command line."""
    for flag in ("nlist", "pq_m", "nprobe", "rerank"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    return {"nlist": args.nlist, "m": args.pq_m, "nprobe": args.nprobe, "rerank": args.rerank}


def dataset_records(name: str, register_json: Optional[Sequence]) -> List[Dict]:
    """The records of the registered split ``name`` (after registering ``--register-json``
    splits); a ``ValueError`` that lists the registered names if it is unknown."""
    register_json_datasets(register_json)
    message = unregistered_datasets_message([name])
    if message:
        raise ValueError(message)
    return DatasetCatalog.get(name)
