#!/usr/bin/env python
"""personsearch benchmarks, one subcommand each.

    python tools/benchmark.py search-eval [--protocol json|prw] [--num-images 6978] ...

Subcommands:
    search-eval   time the search/detection protocol scoring on a synthetic results set of full
                  CUHK-SYSU size (6978 images, 2900 queries x 100 gallery images, ~10 detections
                  per image, D=256), with and without CBGM.

Adding a subcommand: write ``add_<name>_arguments(parser)`` and ``run_<name>(args)`` and list them
in ``SUBCOMMANDS``.
"""

import argparse
import json
import sys
import time
from typing import Callable, Dict, Tuple

import numpy as np


# ------------------------------------------------------------------------------------------------
# search-eval
# ------------------------------------------------------------------------------------------------
def add_search_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--protocol",
        default="json",
        choices=["json", "prw"],
        help="json: CUHK-SYSU-like per-query gallery lists (default); prw: every image but the "
        "query's (use e.g. --num-images 6112 --num-queries 2057 --dets-per-image 4 for PRW size)",
    )
    parser.add_argument("--num-images", type=int, default=6978)
    parser.add_argument("--num-queries", type=int, default=2900)
    parser.add_argument("--gallery-size", type=int, default=100, help="entries per query (json)")
    parser.add_argument("--dets-per-image", type=float, default=10.0, help="mean detections")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cbgm-k1", type=int, default=10)
    parser.add_argument("--cbgm-k2", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="time each step this many times")
    parser.add_argument("--json", dest="json_out", default="", help="also write timings here")


def synthetic_search_set(
    num_images: int,
    num_queries: int,
    gallery_size: int,
    dets_per_image: float,
    dim: int,
    seed: int = 0,
    explicit_galleries: bool = True,
):
    """A random but well-formed results set with its records.

    Every query identity appears in its query image and in 1-3 other images; every image holds a
    few unlabeled people as well. Detections are jittered GT boxes plus clutter, with random scores
    in [0.3, 1) and random L2-normalised features (the true person's features lean towards the
    query's, so the metrics are not trivial).

    Returns:
        ``(results, records, metadata)`` ready for ``score_results``.
    """
    from personsearch.evaluation import build_results

    rng = np.random.default_rng(seed)
    if num_queries > num_images:
        raise ValueError("search-eval: need at least as many images as queries.")
    image_ids = [f"s{i:05d}.jpg" for i in range(num_images)]
    annotations = [[] for _ in range(num_images)]
    queries_of = [[] for _ in range(num_images)]
    identity_feats = rng.standard_normal((num_queries, dim)).astype(np.float32)

    def rand_box():
        w, h = rng.uniform(20, 120), rng.uniform(50, 300)
        x, y = rng.uniform(0, 800 - w), rng.uniform(0, 600 - h)
        return [float(x), float(y), float(x + w), float(y + h)]

    query_images = rng.permutation(num_images)[:num_queries]
    appearances = []
    for pid in range(num_queries):
        q_img = int(query_images[pid])
        others = rng.choice(num_images, size=int(rng.integers(1, 4)), replace=False)
        others = [int(o) for o in others if o != q_img]
        for img in [q_img] + others:
            annotations[img].append({"bbox": rand_box(), "person_id": pid, "category_id": 0})
        queries_of[q_img].append({"bbox": annotations[q_img][-1]["bbox"], "person_id": pid})
        appearances.append(others)
    for img in range(num_images):
        for _ in range(int(rng.integers(1, 5))):
            annotations[img].append({"bbox": rand_box(), "person_id": -1, "category_id": 0})

    gallery = {}
    for img in range(num_images):
        boxes, feats = [], []
        for a in annotations[img]:
            if rng.random() < 0.9:  # detected
                b = np.array(a["bbox"]) + rng.normal(0, 3, 4)
                boxes.append(b)
                f = rng.standard_normal(dim).astype(np.float32)
                if a["person_id"] >= 0:
                    f += 0.8 * identity_feats[a["person_id"]]
                feats.append(f)
        n_extra = max(0, int(rng.poisson(dets_per_image)) - len(boxes))
        for _ in range(n_extra):
            boxes.append(np.array(rand_box()))
            feats.append(rng.standard_normal(dim).astype(np.float32))
        n = len(boxes)
        feats = np.array(feats, np.float32).reshape(n, dim)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True).clip(1e-12)
        gallery[image_ids[img]] = {
            "boxes": np.array(boxes, np.float32).reshape(n, 4),
            "scores": rng.uniform(0.3, 1.0, n).astype(np.float32),
            "feats": feats,
        }

    records, queries = [], []
    qi = 0
    for img in range(num_images):
        rec_queries = []
        for q in queries_of[img]:
            pid = q["person_id"]
            entry = {"bbox": q["bbox"], "person_id": pid, "query_index": qi}
            if explicit_galleries:
                pos = appearances[pid]
                neg_pool = rng.choice(num_images, size=gallery_size + 8, replace=False)
                negs = [int(n) for n in neg_pool if n != img and n not in pos]
                negs = negs[: max(0, gallery_size - len(pos))]
                entry["gallery_image_ids"] = [image_ids[i] for i in pos + negs]
            rec_queries.append(entry)
            f = identity_feats[pid] + 0.5 * rng.standard_normal(dim).astype(np.float32)
            queries.append(
                {
                    "query_index": qi,
                    "image_id": image_ids[img],
                    "bbox": q["bbox"],
                    "person_id": pid,
                    "feat": f / np.linalg.norm(f),
                }
            )
            qi += 1
        record = {
            "file_name": image_ids[img],
            "image_id": image_ids[img],
            "height": 600,
            "width": 800,
            "annotations": annotations[img],
            "camera_id": img % 6,
        }
        if rec_queries:
            record["queries"] = rec_queries
        records.append(record)
    results = build_results("synthetic_benchmark", gallery, queries)
    protocol = "json" if explicit_galleries else "prw"
    return results, records, {"protocol": protocol}


def _time(fn: Callable, repeat: int) -> Tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run_search_eval(args: argparse.Namespace) -> Dict[str, float]:
    from personsearch.evaluation import (
        SearchOptions,
        evaluate_detections,
        pack_results,
        score_results,
        validate_results,
    )

    t0 = time.perf_counter()
    results, records, meta = synthetic_search_set(
        args.num_images,
        args.num_queries,
        args.gallery_size,
        args.dets_per_image,
        args.dim,
        args.seed,
        explicit_galleries=args.protocol == "json",
    )
    build_s = time.perf_counter() - t0
    num_dets = sum(int(len(d["scores"])) for d in results["gallery"].values())
    print(
        f"synthetic set ({args.protocol}): {args.num_images} images, {num_dets} detections, "
        f"{len(results['queries'])} queries, D={args.dim}; built in {build_s:.1f} s"
    )
    base = SearchOptions(cbgm_k1=args.cbgm_k1, cbgm_k2=args.cbgm_k2)
    timings: Dict[str, float] = {}
    timings["validate"], dim = _time(lambda: validate_results(results, records), args.repeat)
    timings["pack"], (dets, _, _) = _time(lambda: pack_results(results, records, dim), args.repeat)
    timings["search (all steps)"], plain = _time(
        lambda: score_results(results, records, meta, base, evaluate_detection=False), args.repeat
    )
    timings["search+cbgm (all steps)"], cbgm = _time(
        lambda: score_results(
            results, records, meta, base.with_(cbgm=True), evaluate_detection=False
        ),
        args.repeat,
    )
    gt_boxes = [np.array([a["bbox"] for a in r["annotations"]]).reshape(-1, 4) for r in records]
    det_boxes = [dets.boxes[dets.image(i)] for i in range(dets.num_images)]
    det_scores = [dets.scores[dets.image(i)] for i in range(dets.num_images)]
    timings["detection"], det = _time(
        lambda: evaluate_detections(gt_boxes, det_boxes, det_scores), args.repeat
    )
    print(f"{'step':<26}{'seconds':>10}")
    for k, v in timings.items():
        print(f"{k:<26}{v:>10.2f}")
    print("metrics without CBGM:", json.dumps(plain["search"]))
    print("metrics with CBGM:   ", json.dumps(cbgm["search"]))
    print("detection:           ", json.dumps({"AP": 100 * det.ap, "recall": 100 * det.recall}))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": vars(args), "timings_s": timings}, f, indent=2)
    return timings


# name -> (help, add_arguments, run)
SUBCOMMANDS = {
    "search-eval": (
        "time the search protocol scoring on a synthetic full-size results set",
        add_search_eval_arguments,
        run_search_eval,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        add_arguments(p)
        p.set_defaults(func=run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
