"""``tools/search.py query``: embed query people, search an index, print the hits and write a
contact sheet and an HTML report per query."""

import argparse
import os
from typing import Dict, List

from ..filters import CompiledFilter
from ..gallery import GallerySearch
from ..index import SearchIndex
from ..report import write_query_report
from ..searcher import (
    QuerySpec,
    dataset_query_specs,
    embed_queries,
    load_hit_pictures,
    predictor_for_index,
)
from ..sources import check_image_file
from .options import dataset_records, search_filter


def _query_specs(args: argparse.Namespace) -> List[QuerySpec]:
    """The queries of ``--image`` (+ ``--box``) or of every ``--dataset-query NAME:I,J``."""
    if args.image:
        stem = os.path.splitext(os.path.basename(args.image))[0]
        return [QuerySpec(args.image, args.box, stem)]
    if args.box is not None:
        raise ValueError("--box goes with --image (dataset queries have their own boxes)")
    specs = []
    for spec in args.dataset_query:
        name, sep, indices = spec.rpartition(":")
        if not sep or not name or not indices:
            raise ValueError(f"--dataset-query {spec!r}: expected NAME:I or NAME:I,J,K")
        try:
            wanted = [int(i) for i in indices.split(",")]
        except ValueError:
            raise ValueError(f"--dataset-query {spec!r}: query indices must be integers") from None
        records = dataset_records(name, args.register_json)
        try:
            specs += dataset_query_specs(name, records, wanted)
        except ValueError as e:
            raise ValueError(f"--dataset-query: {e}") from None
    return specs


def _print_hits(label: str, query: Dict, hits: List, total: int, settings: str) -> None:
    """Print one query's ranked hits (:class:`~personsearch.apps.search.Hit`) as a table."""
    box = ", ".join(f"{v:.0f}" for v in query["box"])
    print(f"\nquery {label} ({query['spec'].image}, box [{box}]): top {len(hits)} of {total} "
          f"detections ({settings})")  # fmt: skip
    print(f"{'rank':>4} {'score':>7} {'cosine':>7} {'det':>5}  source")
    for h in hits:
        b = ", ".join(f"{v:.0f}" for v in h.box)
        mark = " (CBGM)" if h.cbgm else ""
        print(f"{h.rank:>4} {h.score:>7.4f} {h.cosine:>7.4f} {h.det_score:>5.2f}  {h.where} "
              f"[{b}]{mark}")  # fmt: skip


def run_query(args: argparse.Namespace) -> Dict:
    """Check the flags, the query images and the filter before the query model loads, then
    search and write the reports.

    Returns:
        ``{"queries": [{"label", "hits", "report", "contact_sheet"}, ...]}``.
    """
    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.cbgm and (args.cbgm_k1 < 1 or args.cbgm_k2 < 1):
        raise ValueError(f"CBGM needs --cbgm-k1 >= 1 and --cbgm-k2 >= 1, got {args.cbgm_k1}, "
                         f"{args.cbgm_k2}")  # fmt: skip
    specs = _query_specs(args)
    for s in specs:
        check_image_file(s.image, "--image")
        if args.cbgm and s.box is None:
            raise ValueError(
                "--cbgm needs a query box in a full scene image (--box x1 y1 x2 y2): the context "
                "is the other people of the query image"
            )
    filters = search_filter(args)
    for flag in ("nprobe", "rerank"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    index = SearchIndex.open(args.index)
    search = GallerySearch(
        index, backend=args.backend, cws=args.cws, verify=args.verify,
        nprobe=args.nprobe or None, rerank=args.rerank or None,
    )  # fmt: skip
    if not filters.is_empty:
        CompiledFilter(filters, index, search.columns)  # a bad filter fails before the model loads
    predictor = predictor_for_index(index, args.weights, args.device)
    queries = embed_queries(
        predictor,
        specs,
        with_context=args.cbgm,
        score_thresh=index.manifest["settings"]["score_thresh"],
        k2=args.cbgm_k2,
    )
    results = search.search(
        queries, args.top_k, args.cbgm, args.cbgm_k1, exclude_query_image=args.exclude_query_image,
        filters=filters,
    )  # fmt: skip
    num_dets = search.columns.num_live
    out_dir = args.output or os.path.join(args.index, "reports")
    os.makedirs(out_dir, exist_ok=True)
    mode = ("CWS" if args.cws else "cosine") + (
        f", CBGM k1={args.cbgm_k1} k2={args.cbgm_k2}" if args.cbgm else ""
    )
    settings = {
        "index": os.path.abspath(args.index),
        "detections in the index": num_dets,
        "images/frames": index.num_items,
        "model weights": index.manifest["model"]["weights"],
        "model fingerprint": index.manifest["model"]["fingerprint"][:16],
        "score": mode,
        "backend": f"{search.backend} ({search.last_strategy})",
        "filter": filters.describe(),
        "query image excluded": args.exclude_query_image,
    }
    reports = []
    for q, hits in zip(queries, results):
        label = q["spec"].label
        _print_hits(label, q, hits, num_dets, f"{search.backend}, {mode}, filter: "
                    f"{filters.describe()}")  # fmt: skip
        sheet, report = write_query_report(
            out_dir, q, hits, load_hit_pictures(search, hits), settings
        )
        print(f"contact sheet: {sheet}")
        print(f"report: {report}")
        reports.append({"label": label, "hits": hits, "report": report, "contact_sheet": sheet})
    return {"queries": reports}
