#!/usr/bin/env python
"""Re-score a saved person-search results file (``search_results.pth``) without the model.

Examples::

    # the standard protocol of the dataset the file was produced on
    python tools/evaluate_search.py --results output/search_results.pth --dataset cuhk_sysu_test
    # CUHK-SYSU: another gallery size, the full gallery (-1), CBGM, a query subset
    python tools/evaluate_search.py --results R.pth --dataset cuhk_sysu_test --gallery-size 500
    python tools/evaluate_search.py --results R.pth --dataset cuhk_sysu_test --cbgm
    python tools/evaluate_search.py --results R.pth --dataset cuhk_sysu_test --subset resolution
    # every available CUHK-SYSU gallery size, with a plot of mAP / top-1 vs gallery size
    python tools/evaluate_search.py --results R.pth --dataset cuhk_sysu_test --all --output out/
    # your own data in the person-search JSON format
    python tools/evaluate_search.py --results R.pth --dataset mine \\
        --register-json mine my_test.json my_images/
    # PRW: cross-camera galleries, low-resolution queries
    python tools/evaluate_search.py --results R.pth --dataset prw_test --cross-camera
    python tools/evaluate_search.py --results R.pth --dataset prw_test --subset lowres

Scoring goes through ``personsearch.evaluation.score_results``, the code path of
``PersonSearchEvaluator``, so the numbers match the ones printed after training.
"""

import argparse
import json
import logging
import os
import sys
from typing import Dict, List, Optional

logger = logging.getLogger("personsearch.evaluate_search")


def build_parser() -> argparse.ArgumentParser:
    from personsearch.utils.cli import add_register_json_argument

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--results", required=True, help="results file (search_results.pth)")
    p.add_argument("--dataset", required=True, help="registered test split, e.g. cuhk_sysu_test")
    p.add_argument(
        "--gallery-size",
        type=int,
        default=100,
        help="CUHK-SYSU gallery size (a TestG{N}.mat present; -1: full gallery). Default 100",
    )
    p.add_argument("--cbgm", action="store_true", help="CBGM re-ranking (SeqNet)")
    p.add_argument("--cbgm-k1", type=int, default=None, help="default: CUHK-SYSU 10, PRW 30")
    p.add_argument("--cbgm-k2", type=int, default=None, help="default: CUHK-SYSU 3, PRW 4")
    p.add_argument("--no-cws", action="store_true", help="do not weight gallery features by score")
    p.add_argument("--cross-camera", action="store_true", help="PRW-style: drop the query camera")
    p.add_argument("--subset", default="", choices=["", "resolution", "occlusion", "lowres"])
    p.add_argument("--lowres-fraction", type=float, default=0.1)
    p.add_argument("--det-thresh", type=float, default=0.5, help="gallery detection threshold")
    p.add_argument(
        "--all",
        action="store_true",
        help="CUHK-SYSU: score every available gallery size and plot mAP / top-1 against it",
    )
    p.add_argument("--output", default="", help="folder for metrics.json (and the --all plot)")
    add_register_json_argument(p)  # to score results on your own data
    return p


def _dataset(name: str, register_json: List[List[str]]):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import personsearch  # noqa: F401  (registers the built-in datasets)
    from personsearch.utils.cli import register_json_datasets, unregistered_datasets_message

    register_json_datasets(register_json)
    message = unregistered_datasets_message([name])
    if message:
        raise ValueError(message)
    return DatasetCatalog.get(name), MetadataCatalog.get(name)


def _options(args: argparse.Namespace):
    from personsearch.evaluation import SearchOptions

    # k1/k2 = -1 resolve to the protocol's reference values when scoring
    return SearchOptions(
        gallery_size=args.gallery_size,
        subset=args.subset,
        lowres_fraction=args.lowres_fraction,
        det_thresh=args.det_thresh,
        cws=not args.no_cws,
        cross_camera=args.cross_camera,
        cbgm=args.cbgm,
        cbgm_k1=args.cbgm_k1 if args.cbgm_k1 is not None else -1,
        cbgm_k2=args.cbgm_k2 if args.cbgm_k2 is not None else -1,
    )


def _print_scores(title: str, scores: Dict) -> None:
    from detectron2.utils.logger import create_small_table

    info = scores["info"]
    print(f"{title}: {info['num_queries']} queries", end="")
    if info["num_queries_without_match"]:
        print(
            f" ({info['num_queries_without_match']} without a gallery match, not counted)", end=""
        )
    if "lowres_height_threshold" in info:
        print(f", query height <= {info['lowres_height_threshold']:.1f} px", end="")
    print("\nsearch:\n" + create_small_table(scores["search"]))
    if "detection" in scores:
        print("detection:\n" + create_small_table(scores["detection"]))


def _plot(rows: List[Dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sizes = [r["gallery_size"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sizes, [r["mAP"] for r in rows], "o-", label="mAP")
    ax.plot(sizes, [r["top1"] for r in rows], "s--", label="top-1")
    ax.set_xscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no "3x10^1" labels
    ax.set_xlabel("gallery size")
    ax.set_ylabel("%")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> Dict:
    from personsearch.evaluation import load_results, score_results

    results = load_results(args.results)
    records, metadata = _dataset(args.dataset, args.register_json)
    if results.get("dataset") and results["dataset"] != args.dataset:
        logger.warning(
            "%s was produced on %r; scoring it as %r.",
            args.results,
            results["dataset"],
            args.dataset,
        )
    protocol = metadata.get("protocol")
    options = _options(args)
    out_dir = args.output or os.path.dirname(os.path.abspath(args.results))
    if not args.all:
        scores = score_results(results, records, metadata, options)
        _print_scores(f"{args.dataset} ({protocol})", scores)
        summary = {k: scores[k] for k in ("search", "detection")}
        summary["info"] = {k: v for k, v in scores["info"].items() if k != "per_query_ap"}
    else:
        summary = _run_all(args, results, records, metadata, options, out_dir)
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        with open(os.path.join(args.output, "metrics.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary


def _run_all(args, results, records, metadata, options, out_dir) -> Dict:
    from personsearch.evaluation import score_results

    if metadata.get("protocol") != "cuhk_sysu":
        raise ValueError("--all needs a CUHK-SYSU-style dataset (several TestG{N}.mat files).")
    from personsearch.data.datasets.cuhk_sysu import available_gallery_sizes

    sizes = available_gallery_sizes(metadata.get("root"))
    if not sizes:
        raise ValueError(f"no TestG{{N}}.mat protocol file under {metadata.get('root')!r}.")
    rows = []
    for n, size in enumerate(sizes):
        scores = score_results(
            results, records, metadata, options.with_(gallery_size=size), evaluate_detection=n == 0
        )
        rows.append({"gallery_size": size, **scores["search"]})
        if n == 0:
            detection = scores["detection"]
    header = f"{'gallery':>8} {'mAP':>8} {'top1':>8} {'top5':>8} {'top10':>8}"
    print(header)
    for r in rows:
        print(
            f"{r['gallery_size']:>8} {r['mAP']:>8.2f} {r['top1']:>8.2f} {r['top5']:>8.2f} "
            f"{r['top10']:>8.2f}"
        )
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "gallery_size.png")
    _plot(rows, path)
    print(f"plot: {path}")
    return {"gallery_sizes": rows, "detection": detection, "plot": path}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(args)
    except (ValueError, OSError) as e:  # OSError: missing files, an unwritable --output
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
