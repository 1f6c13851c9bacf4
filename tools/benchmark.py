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
                  (personsearch/benchmark/search_scale.py).

The model benchmarks exclude data loading (detectron2's ``data_time`` shows it during training).
On a GPU they synchronise CUDA around every timed step; memory is the peak allocated by torch on the
GPU, or the peak resident set size of the process on the CPU.

Adding a subcommand: write ``add_<name>_arguments(parser)`` and ``run_<name>(args)`` and list them
in ``SUBCOMMANDS``.
"""

import argparse
import json
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

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


def _args_dict(args: argparse.Namespace) -> Dict:
    """The command-line arguments, JSON-serialisable (without the subcommand's function)."""
    return {k: v for k, v in vars(args).items() if k != "func"}


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
            json.dump({"args": _args_dict(args), "timings_s": timings}, f, indent=2)
    return timings


# ------------------------------------------------------------------------------------------------
# train / inference: the model of a config
# ------------------------------------------------------------------------------------------------
def add_model_arguments(parser: argparse.ArgumentParser, train: bool) -> None:
    parser.add_argument("--config-file", required=True, help="a personsearch config")
    if train:
        parser.add_argument("--iters", type=int, default=50, help="timed iterations")
        parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
        parser.add_argument(
            "--batches", type=int, default=4, help="training batches loaded once and cycled"
        )
    else:
        parser.add_argument("--images", type=int, default=50, help="timed test images")
        parser.add_argument("--warmup", type=int, default=3, help="untimed images first")
    parser.add_argument("--json", dest="json_out", default="", help="also write the numbers here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")


def _model_setup(args: argparse.Namespace):
    from personsearch import get_person_search_cfg
    from personsearch.benchmark.timing import reset_peak_memory
    from personsearch.checkpoint import PersonSearchCheckpointer
    from personsearch.engine import PersonSearchTrainer
    from personsearch.utils.device import check_device

    cfg = get_person_search_cfg(args.config_file, args.opts)
    check_device(cfg.MODEL.DEVICE, args.config_file, SystemExit)
    cfg.freeze()
    model = PersonSearchTrainer.build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        PersonSearchCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    cuda = cfg.MODEL.DEVICE.startswith("cuda")
    reset_peak_memory(cuda)
    return cfg, model, PersonSearchTrainer, cuda


def _report(name: str, unit: str, seconds: List[float], cuda: bool, args, extra: Dict) -> Dict:
    from personsearch.benchmark.timing import peak_memory_mb

    peak_mb = peak_memory_mb(cuda)
    memory = "peak GPU memory allocated" if cuda else "peak resident memory of the process"
    out = {
        f"seconds_per_{unit}_mean": statistics.fmean(seconds),
        f"seconds_per_{unit}_median": statistics.median(seconds),
        "timed": len(seconds),
        "peak_memory_mb": peak_mb,
        **extra,
    }
    print(f"{name}: {args.config_file} {' '.join(map(str, args.opts))}".rstrip())
    print(f"  {out[f'seconds_per_{unit}_median']:.4f} s/{unit} median, "
          f"{out[f'seconds_per_{unit}_mean']:.4f} s/{unit} mean over {len(seconds)}")  # fmt: skip
    print(f"  {memory}: {peak_mb:.0f} MiB")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": _args_dict(args), **out}, f, indent=2)
    return out


def run_train(args: argparse.Namespace) -> Dict:
    import torch
    from detectron2.utils.events import EventStorage

    from personsearch.benchmark.timing import timed_runs

    cfg, model, trainer_cls, cuda = _model_setup(args)
    model.train()
    optimizer = trainer_cls.build_optimizer(cfg, model)
    loader = iter(trainer_cls.build_train_loader(cfg))
    batches = [next(loader) for _ in range(max(1, args.batches))]

    def step(i):
        losses = model(batches[i % len(batches)])
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"benchmark train: non-finite loss at step {i}: {losses}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with EventStorage(0):
        seconds = timed_runs(step, args.iters, args.warmup, cuda, "train steps")
    return _report(
        "train", "iter", seconds, cuda, args, {"images_per_iter": cfg.SOLVER.IMS_PER_BATCH}
    )


def run_inference(args: argparse.Namespace) -> Dict:
    import itertools

    import torch

    from personsearch.benchmark.timing import timed_runs
    from personsearch.modeling.inference_optimization import (
        InferenceOptions,
        optimize_for_inference,
    )

    cfg, model, trainer_cls, cuda = _model_setup(args)
    if not cfg.DATASETS.TEST:
        raise SystemExit("benchmark inference: the config has no DATASETS.TEST split.")
    model.eval()
    # the inference fast path of the predictor (TEST.OPTIMIZE)
    optimizations = optimize_for_inference(model, InferenceOptions.from_config(cfg))
    loader = trainer_cls.build_test_loader(cfg, cfg.DATASETS.TEST[0])
    inputs = list(itertools.islice(loader, args.warmup + args.images))
    if len(inputs) < args.warmup + 1:
        raise SystemExit(f"benchmark inference: {cfg.DATASETS.TEST[0]} has too few images.")

    def step(i):
        with torch.no_grad():
            model(inputs[i])

    seconds = timed_runs(step, len(inputs) - args.warmup, args.warmup, cuda, "test images")
    extra = {"dataset": cfg.DATASETS.TEST[0], "optimizations": optimizations}
    return _report("inference", "image", seconds, cuda, args, extra)


# ------------------------------------------------------------------------------------------------
# search-index: top-k search over a search index's embeddings (tools/search.py query)
# ------------------------------------------------------------------------------------------------
def add_search_index_arguments(parser: argparse.ArgumentParser) -> None:
    # gallery detections in the random index
    parser.add_argument("--num-dets", type=int, default=1_000_000, help="gallery detections")
    # embedding size
    parser.add_argument("--dim", type=int, default=256)
    # queries of the batched measurement (the single-query one always runs)
    parser.add_argument("--batch", type=int, default=64, help="queries searched together")
    # hits per query
    parser.add_argument("--top-k", type=int, default=10)
    # gallery rows per matrix product of the exact backend
    parser.add_argument("--chunk-size", type=int, default=4096)
    # threads of the exact backend (default: the CPU cores)
    parser.add_argument("--workers", type=int, default=0, help="exact search threads")
    # plain cosine instead of CWS (cosine x detection score)
    parser.add_argument("--no-cws", action="store_true", help="rank by cosine only")
    # also time FAISS IndexFlatIP (pip install faiss-cpu) and compare its top-k with exact search
    parser.add_argument("--faiss", action="store_true", help="compare the FAISS backend")
    parser.add_argument("--seed", type=int, default=0)
    # time each search this many times and keep the best
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", dest="json_out", default="", help="also write timings here")


def random_search_gallery(num: int, dim: int, seed: int = 0, chunk: int = 65536):
    """A random index's arrays: (N, D) float16 L2-normalised embeddings and (N,) scores in
    [0.5, 1), generated chunk by chunk (no (N, D) float32 array)."""
    rng = np.random.default_rng(seed)
    feats = np.empty((num, dim), dtype=np.float16)
    for s in range(0, num, chunk):
        x = rng.standard_normal((min(chunk, num - s), dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        feats[s : s + len(x)] = x
    return feats, rng.uniform(0.5, 1.0, num).astype(np.float32)


def run_search_index(args: argparse.Namespace) -> Dict[str, float]:
    import torch

    from personsearch.apps.search import ExactSearcher

    t0 = time.perf_counter()
    feats, scores = random_search_gallery(args.num_dets, args.dim, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    queries = rng.standard_normal((max(1, args.batch), args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    weights = None if args.no_cws else scores
    print(
        f"random index: {args.num_dets} detections, D={args.dim}, float16 "
        f"({feats.nbytes / 2**20:.0f} MiB), built in {time.perf_counter() - t0:.1f} s; "
        f"{args.workers or torch.get_num_threads()} threads; top-{args.top_k}, "
        f"{'cosine' if args.no_cws else 'CWS'}"
    )
    timings: Dict[str, float] = {}
    exact = ExactSearcher(feats, weights, args.chunk_size, args.workers or None)
    timings["exact: 1 query"], _ = _time(lambda: exact.search(queries[:1], args.top_k), args.repeat)
    timings[f"exact: batch of {len(queries)}"], ref = _time(
        lambda: exact.search(queries, args.top_k), args.repeat
    )
    if args.faiss:
        from personsearch.apps.search.faiss_backend import FaissSearcher

        t0 = time.perf_counter()
        fs = FaissSearcher(feats, weights)
        timings["faiss: build (float32 copy + add)"] = time.perf_counter() - t0
        timings["faiss: 1 query"], _ = _time(
            lambda: fs.search(queries[:1], args.top_k), args.repeat
        )
        timings[f"faiss: batch of {len(queries)}"], got = _time(
            lambda: fs.search(queries, args.top_k), args.repeat
        )
        same = float(np.mean(np.sort(got[1], axis=1) == np.sort(ref[1], axis=1)))
        print(f"faiss top-{args.top_k} == exact top-{args.top_k}: {100 * same:.2f} % of the hits")
        timings["faiss == exact (fraction of hits)"] = same
    print(f"{'step':<36}{'seconds':>10}{'s/query':>10}")
    for k, v in timings.items():
        if k.startswith("faiss =="):
            continue
        per = "" if "build" in k else f"{v / len(queries) if 'batch' in k else v:>10.4f}"
        print(f"{k:<36}{v:>10.4f}{per}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": _args_dict(args), "timings_s": timings}, f, indent=2)
    return timings


# ------------------------------------------------------------------------------------------------
# search-scale: a simulated archive index, exact vs approximate search, filters, memory
# ------------------------------------------------------------------------------------------------
def add_search_scale_arguments(parser: argparse.ArgumentParser) -> None:
    # where the simulated index is built (reused by the next run with the same simulation)
    parser.add_argument("--index-dir", required=True, help="folder of the simulated index")
    parser.add_argument("--num-dets", type=int, default=1_000_000, help="simulated detections")
    # embedding size: 512 = the fused UGAS R50 embedding (256 deep + 256 shallow)
    parser.add_argument("--dim", type=int, default=512)
    # clustered: identities near a low-dimensional subspace; uniform: no structure (worst case)
    parser.add_argument("--sim", default="clustered", choices=("clustered", "uniform"))
    parser.add_argument("--dets-per-id", type=int, default=20, help="mean detections per person")
    parser.add_argument("--noise", type=float, default=0.03, help="per-dimension detection noise")
    parser.add_argument("--kind", default="ivf-pq", choices=("ivf-pq", "ivf-flat"))
    parser.add_argument("--nlist", type=int, default=0, help="cells (default ~2 sqrt(N))")
    parser.add_argument("--pq-m", type=int, default=0, help="PQ codes per vector (default D/8)")
    # approximate settings measured: comma-separated cells visited and candidates re-scored
    parser.add_argument("--nprobe", default="16,32,64", help="cells visited (comma-separated)")
    parser.add_argument("--rerank", default="256", help="candidates re-scored (comma-separated)")
    parser.add_argument("--queries", type=int, default=100, help="queries (recall, latency)")
    parser.add_argument("--exact-queries", type=int, default=5, help="single exact queries timed")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--no-filters", action="store_true", help="skip the filtered searches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_out", default="", help="also write the results here")


def run_search_scale(args: argparse.Namespace) -> Dict:
    from personsearch.benchmark.search_scale import (
        SimulationSpec,
        measure_search_scale,
        print_report,
    )

    def ints(text: str, flag: str) -> List[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise SystemExit(f"benchmark search-scale: {flag} expects integers, got {text!r}")
        if not values or min(values) < 1:
            raise SystemExit(f"benchmark search-scale: {flag} expects integers >= 1, got {text!r}")
        return values

    if args.num_dets < 1000 or args.dim < 8 or args.queries < 1 or args.top_k < 1:
        raise SystemExit("benchmark search-scale: need --num-dets >= 1000, --dim >= 8, "
                         "--queries >= 1, --top-k >= 1")  # fmt: skip
    spec = SimulationSpec(
        num_dets=args.num_dets, dim=args.dim, sim=args.sim, dets_per_id=args.dets_per_id,
        noise=args.noise, seed=args.seed,
    )  # fmt: skip
    res = measure_search_scale(
        args.index_dir, spec, args.kind, ints(args.nprobe, "--nprobe"),
        ints(args.rerank, "--rerank"), args.queries, args.exact_queries, args.top_k, args.nlist,
        args.pq_m, filters=not args.no_filters,
    )  # fmt: skip
    print_report(res)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": _args_dict(args), "results": res}, f, indent=2)
    return res


# ------------------------------------------------------------------------------------------------
# compare: several configs side by side with the plain detector (and the official code)
# ------------------------------------------------------------------------------------------------
COMPARE_DESCRIPTION = """\
Measure several models in one run, on the same input: gallery inference (ms/image), query
embedding (ms/query, from the gallery pass's backbone features), one training iteration (s/iter)
and peak memory, always with the plain detectron2 Faster R-CNN C4 detector of the same backbone,
input size and proposal counts (the "x plain" ratios), optionally with the official SeqNet / NAE /
NAE+ code (--official). Each measurement runs in a fresh process (CPU memory is its own peak RSS).

--batch N [N ...] measures gallery inference with N images per call (one row per value; images/s
and MFU columns: model FLOPs per image x images/s over the device's measured matrix-product rate).
Our models and the plain detectors run with the configs' TEST.OPTIMIZE (BatchNorm folding,
channels_last; --no-optimize: today's unoptimised path). --interleave prepares the models of a
size, precision and batch together (one process each) and alternates their timed calls in rounds,
so that a shared machine's changing load hits all alike; CPU time per call is reported beside the
wall time.

Forced mode (default; --no-force turns it off): without trained weights a model starts from random
weights with its BatchNorm statistics calibrated on the benchmark images, and the RoI score
threshold is 0 and NMS 1.0, so that every head processes the RPN's full top-k (300 boxes per image
for the R50 configs); the table reports the proposals, RoIs and detections actually processed.

    python tools/benchmark.py compare --configs configs/synthetic/NAE_R10.yaml \\
        configs/synthetic/SeqNet_R10.yaml --size 384x512 --runs 5 --md table.md
    python tools/benchmark.py compare --configs configs/NAE_R50.yaml=model.pth \\
        --official nae=/path/to/NAE4PS --size 900x1500 MODEL.DEVICE cpu
"""
# values of the list options that are not config overrides (KEY VALUE pairs that follow them are)
_COMPARE_LIST_VALUES = {
    "configs": r".+\.ya?ml(=.*)?",
    "size": r"\d+[xX]\d+",
    "official": r"(seqnet|nae\+?)=.*",
    "official_weights": r"(seqnet|nae\+?)=.*",
    "measure": r"inference|query|train",
    "batch": r"-?\d+",
}


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = COMPARE_DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    # the models: yaml configs, each optionally with trained weights (CONFIG=WEIGHTS)
    parser.add_argument(
        "--configs",
        nargs="+",
        required=True,
        metavar="CONFIG[=WEIGHTS]",
        help="personsearch yaml configs; CONFIG=WEIGHTS loads trained weights for that one",
    )
    # input sizes; every model is measured at each (one table row per model and size)
    parser.add_argument(
        "--size", nargs="+", default=["900x1500"], metavar="HxW", help="input sizes (900x1500)"
    )
    # timed calls per measurement (median and min/max are reported)
    parser.add_argument("--runs", type=int, default=5, help="timed calls per measurement")
    # untimed calls first (the BatchNorm calibration passes come before them)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    # images per training iteration
    parser.add_argument("--train-batch", type=int, default=2, help="images per training iteration")
    # query boxes embedded per query call; the time is divided by it
    parser.add_argument("--queries", type=int, default=1, help="query boxes per query call")
    # random ground-truth people per training image (all labeled, random person ids)
    parser.add_argument("--gt-boxes", type=int, default=5, help="random people per train image")
    # images of the BatchNorm calibration of forced mode (the benchmark image is the first)
    parser.add_argument("--calib-images", type=int, default=2, help="BatchNorm calibration images")
    # which measurements to run
    parser.add_argument(
        "--measure",
        nargs="+",
        default=["inference", "query", "train"],
        metavar="NAME",
        help="some of: inference query train (default: all)",
    )
    # also measure every model in mixed precision (TEST.AMP / SOLVER.AMP), as extra rows
    parser.add_argument(
        "--amp", default="", choices=["", "bfloat16", "float16"], help="extra mixed-precision rows"
    )
    # keep the configs' thresholds and weights as they are (see "Forced mode" above)
    parser.add_argument("--no-force", action="store_true", help="do not force the work per image")
    # the official implementations, loaded from these clones at run time: seqnet=, nae=, nae+=
    parser.add_argument(
        "--official",
        nargs="+",
        default=[],
        metavar="NAME=PATH",
        help="official code to measure too: seqnet=/path/to/SeqNet nae=/path/to/NAE4PS "
        "nae+=/path/to/NAE4PS",
    )
    # official-layout weights for the official models (tools/benchmark.py official-weights)
    parser.add_argument(
        "--official-weights",
        nargs="+",
        default=[],
        metavar="NAME=FILE",
        help="weights for the official models instead of calibrated random ones: seqnet=FILE",
    )
    # measure in this process (tests; CPU peak memory then includes earlier measurements)
    parser.add_argument(
        "--no-subprocess", action="store_true", help="run the measurements in this process"
    )
    # images per inference call (one row per value; query and training use the first)
    parser.add_argument(
        "--batch", nargs="+", default=["1"], metavar="N", help="images per inference call"
    )
    # alternate the timed inference/query calls of the models in rounds (a shared machine)
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="prepare the models of a size/precision/batch together and alternate their calls",
    )
    # measure today's unoptimised path: no BatchNorm folding, no channels_last (TEST.OPTIMIZE)
    parser.add_argument(
        "--no-optimize", action="store_true", help="no TEST.OPTIMIZE inference optimisations"
    )
    # the device's rate for the MFU column (default: a large matrix product measured first)
    parser.add_argument(
        "--peak-tflops", type=float, default=0.0, help="device TFLOP/s for MFU (default: measured)"
    )
    # skip the FLOP count (and the MFU column)
    parser.add_argument("--no-flops", action="store_true", help="do not count model FLOPs")
    # torch intra-op threads of the measurements (0: torch's default, one per core)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    # seed of the benchmark image, boxes, targets and random weights
    parser.add_argument("--seed", type=int, default=0)
    # only list the planned measurements
    parser.add_argument("--dry-run", action="store_true", help="list the measurements and exit")
    # outputs: the full results (rows, raw times, machine) and the markdown table (also printed)
    parser.add_argument("--json", dest="json_out", default="", help="write the results here")
    parser.add_argument("--md", dest="md_out", default="", help="write the markdown table here")
    # config overrides applied to every config, e.g. MODEL.DEVICE cpu
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")


def _split_compare_lists(args: argparse.Namespace) -> None:
    """Move config overrides that a list option swallowed (``--configs a.yaml KEY VALUE``) to
    ``args.opts``."""
    import re

    moved = []
    for name, pattern in _COMPARE_LIST_VALUES.items():
        values = getattr(args, name)
        for i, v in enumerate(values):
            if not re.fullmatch(pattern, v):
                if i == 0:
                    flag = name.replace("_", "-")
                    raise SystemExit(f"benchmark compare: bad --{flag} value {v!r}")
                moved += values[i:]
                setattr(args, name, values[:i])
                break
    args.opts = moved + list(args.opts)


def run_compare(args: argparse.Namespace) -> Dict:
    import os

    from personsearch.benchmark.compare import CompareError, CompareSettings
    from personsearch.benchmark.compare import run_compare as compare
    from personsearch.benchmark.inputs import parse_size

    _split_compare_lists(args)
    late = [o for o in args.opts if str(o).startswith("--")]
    if late:
        raise SystemExit(f"benchmark compare: flags must come before the KEY VALUE config "
                         f"overrides; got {late} after them")  # fmt: skip
    if len(args.opts) % 2:
        raise SystemExit(f"benchmark compare: config overrides come in KEY VALUE pairs; got "
                         f"{args.opts}")  # fmt: skip
    try:
        sizes = [parse_size(s) for s in args.size]
    except ValueError as e:
        raise SystemExit(f"benchmark compare: {e}") from None
    configs = [tuple(c.split("=", 1)) if "=" in c else (c, "") for c in args.configs]
    official = {}
    for item in args.official:
        impl, _, path = item.partition("=")
        official[impl] = path
    official_weights = dict(item.partition("=")[::2] for item in args.official_weights)
    settings = CompareSettings(
        configs=configs,
        opts=list(args.opts),
        sizes=sizes,
        runs=args.runs,
        warmup=args.warmup,
        train_batch=args.train_batch,
        queries=args.queries,
        gt_boxes=args.gt_boxes,
        calib_images=args.calib_images,
        seed=args.seed,
        measures=list(args.measure),
        amp=args.amp,
        force=not args.no_force,
        official=official,
        subprocess=not args.no_subprocess,
        threads=args.threads,
        batches=[int(b) for b in args.batch],
        interleave=args.interleave,
        optimize=not args.no_optimize,
        peak_tflops=args.peak_tflops,
        flops=not args.no_flops,
        official_weights=official_weights,
        configs_root=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "configs"),  # fmt: skip
    )
    try:
        out = compare(settings, dry_run=args.dry_run)
    except CompareError as e:
        raise SystemExit(f"benchmark compare: {e}") from None
    if args.dry_run:
        return out
    print()
    print(out["markdown"])
    for path in (args.md_out, args.json_out):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    if args.md_out:
        with open(args.md_out, "w") as f:
            f.write(out["markdown"])
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": _args_dict(args), **out}, f, indent=2, default=str)
    failed = [e for e in out["measurements"] if e["result"].get("error")]
    if failed:
        for e in failed:
            print(f"FAILED {e['name']} {e['size']} {e['precision']} {e['measure']}: "
                  f"{e['result']['error']}\n{e['result'].get('traceback', '')}")  # fmt: skip
        raise SystemExit(f"benchmark compare: {len(failed)} of {len(out['measurements'])} "
                         "measurements failed (see above)")  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------------
# throughput: batched inference sweep in one process (the GPU script)
# ------------------------------------------------------------------------------------------------
THROUGHPUT_DESCRIPTION = """\
Images/s and model FLOPs utilisation of several models at several batch sizes, precisions and
channels_last settings, in one process and inside a time budget (tools/gpu_bench.sh runs it on a
GPU). Each model is built and calibrated once per precision (forced mode: random weights, every
head processes the RPN's full top-k), its FLOPs per image counted once; the optimised variants
(TEST.OPTIMIZE: BatchNorm folded, channels_last on/off) are copies of it. The JSON and markdown
outputs are rewritten after every row, so a run cut short keeps what it measured.

    python tools/benchmark.py throughput --models configs/UGAS_R50.yaml configs/NAE_R50.yaml \\
        --size 900x1500 --batch 1 8 16 32 --precision bfloat16 float32 --out OUT MODEL.DEVICE cuda
"""


def add_throughput_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = THROUGHPUT_DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    # yaml configs; plain:CONFIG is the plain Faster R-CNN C4 detector of CONFIG
    parser.add_argument("--models", nargs="+", required=True, metavar="CONFIG")
    parser.add_argument("--size", default="900x1500", metavar="HxW")
    # images per call, one row each
    parser.add_argument("--batch", nargs="+", default=["1", "8", "16", "32"], metavar="N")
    # precisions, in the order they are measured
    parser.add_argument("--precision", nargs="+", default=["bfloat16", "float32"])
    # channels_last variants (BatchNorm is always folded); the first is measured first
    parser.add_argument("--channels-last", nargs="+", default=["on", "off"], metavar="on|off")
    parser.add_argument("--runs", type=int, default=3, help="timed calls per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    # no new measurement starts after this many seconds
    parser.add_argument("--budget", type=float, default=220.0, help="seconds")
    # skip the unoptimised batch-1 rows ("today")
    parser.add_argument("--no-today", action="store_true")
    # models whose unoptimised batch-1 float32 call is profiled (kernel table)
    parser.add_argument("--profile", nargs="*", default=[], metavar="CONFIG")
    # count the host synchronisations of one call at this batch (CUDA; 0: no)
    parser.add_argument("--sync-batch", type=int, default=0)
    # one torch.compile row per model at this batch after everything else (0: none)
    parser.add_argument("--compile-batch", type=int, default=0)
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="device TFLOP/s for MFU")
    # cuDNN's autotuner (off: real galleries change the RoI count, hence the shapes, every call)
    parser.add_argument("--cudnn-benchmark", action="store_true", help="cuDNN autotuner on")
    # A=B: tabulate the time ratio of model A over model B (e.g. UGAS over SeqNet)
    parser.add_argument("--pairs", nargs="*", default=[], metavar="A=B")
    parser.add_argument("--calib-images", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    # output folder: throughput.json and throughput.md
    parser.add_argument("--out", default="", help="output folder")
    # config overrides for every model, e.g. MODEL.DEVICE cuda
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")


def run_throughput(args: argparse.Namespace) -> Dict:
    import os
    import re

    import torch

    from personsearch.benchmark.inputs import parse_size
    from personsearch.benchmark.models import PRECISIONS
    from personsearch.benchmark.throughput import PLAIN_PREFIX, ThroughputRun, ThroughputSettings

    def fail(message):
        raise SystemExit(f"benchmark throughput: {message}")

    # KEY VALUE overrides swallowed by a list option move to the overrides
    moved = []
    yaml = r".+\.ya?ml"
    for name, pattern in (("batch", r"\d+"), ("precision", r"float32|bfloat16|float16"),
                          ("channels_last", r"on|off"), ("models", yaml), ("profile", yaml),
                          ("pairs", yaml + "=" + yaml)):  # fmt: skip
        values = getattr(args, name)
        for i, v in enumerate(values):
            if not re.fullmatch(pattern, v.replace(PLAIN_PREFIX, "", 1)):
                if i == 0 and name not in ("profile", "pairs"):
                    fail(f"bad --{name.replace('_', '-')} value {v!r}")
                moved += values[i:]
                setattr(args, name, values[:i])
                break
    opts = moved + list(args.opts)
    if len(opts) % 2:
        fail(f"config overrides come in KEY VALUE pairs; got {opts}")
    try:
        h, w = parse_size(args.size)
    except ValueError as e:
        fail(str(e))
    batches = [int(b) for b in args.batch]
    if min(batches) < 1:
        fail(f"--batch values must be >= 1, got {batches}")
    for p in args.precision:
        if p not in PRECISIONS:
            fail(f"--precision must be among {PRECISIONS}, got {p!r}")
    for m in args.models + args.profile:
        path = m[len(PLAIN_PREFIX) :] if m.startswith(PLAIN_PREFIX) else m
        if not os.path.isfile(path):
            fail(f"config file not found: {path!r}")
    if args.runs < 1 or args.warmup < 0:
        fail(f"--runs must be >= 1 and --warmup >= 0, got {args.runs} and {args.warmup}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    settings = ThroughputSettings(
        models=list(args.models),
        height=h,
        width=w,
        batches=batches,
        precisions=list(args.precision),
        layouts=list(args.channels_last),
        runs=args.runs,
        warmup=args.warmup,
        budget_s=args.budget,
        opts=opts,
        out_dir=args.out,
        today=not args.no_today,
        profile=list(args.profile),
        sync_batch=args.sync_batch,
        compile_batch=args.compile_batch,
        peak_tflops=args.peak_tflops,
        calib_images=args.calib_images,
        seed=args.seed,
        pairs=[tuple(p.split("=", 1)) for p in args.pairs],
        cudnn_benchmark=args.cudnn_benchmark,
    )
    try:
        run = ThroughputRun(settings)
        run.run()
    except AssertionError as e:  # yacs: an unknown key
        fail(str(e))
    print()
    print(run.markdown())
    return {"rows": run.rows, "extras": run.extras, "peaks": run.peaks, "markdown": run.markdown()}


# ------------------------------------------------------------------------------------------------
# optimize-check / flops: what the inference optimisations change; FLOPs per image
# ------------------------------------------------------------------------------------------------
def add_optimize_check_arguments(parser: argparse.ArgumentParser) -> None:
    # a personsearch config, optionally with trained weights (CONFIG=WEIGHTS); without weights
    # the model has random weights, calibrated BatchNorm and forced thresholds
    parser.add_argument("--config", required=True, metavar="CONFIG[=WEIGHTS]")
    parser.add_argument("--size", default="900x1500", metavar="HxW")
    parser.add_argument("--queries", type=int, default=5, help="query boxes embedded")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    # an override of the optimised run only, repeatable: --fast TEST.AMP.ENABLED=True
    parser.add_argument("--fast", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", dest="json_out", default="")
    # overrides of both runs, e.g. MODEL.DEVICE cpu
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")


def _config_and_weights(text: str, command: str):
    import os

    config, _, weights = text.partition("=")
    if not os.path.isfile(config):
        raise SystemExit(f"benchmark {command}: config file not found: {config!r}")
    if weights and not os.path.isfile(weights):
        raise SystemExit(f"benchmark {command}: weights file not found: {weights!r}")
    return config, weights


def run_optimize_check(args: argparse.Namespace) -> Dict:
    import torch

    from personsearch.benchmark.inputs import BenchmarkInputs, parse_size
    from personsearch.benchmark.tolerance import format_differences, output_differences

    config, weights = _config_and_weights(args.config, "optimize-check")
    try:
        h, w = parse_size(args.size)
    except ValueError as e:
        raise SystemExit(f"benchmark optimize-check: {e}") from None
    if len(args.opts) % 2:
        raise SystemExit(f"benchmark optimize-check: config overrides come in KEY VALUE pairs; "
                         f"got {args.opts}")  # fmt: skip
    fast_opts = []
    for item in args.fast:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"benchmark optimize-check: --fast takes KEY=VALUE, got {item!r}")
        fast_opts += [key, value]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    inputs = BenchmarkInputs(height=h, width=w, seed=args.seed, num_queries=args.queries,
                             calib_images=1)  # fmt: skip
    try:
        out = output_differences(config, weights, inputs, args.opts, fast_opts)
    except (AssertionError, KeyError, ValueError) as e:  # yacs: unknown keys, bad values
        raise SystemExit(f"benchmark optimize-check: {e}") from None
    print("\n".join(format_differences(out)))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": _args_dict(args), **out}, f, indent=2, default=str)
    return out


def add_flops_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", nargs="+", required=True, metavar="CONFIG")
    parser.add_argument("--size", default="900x1500", metavar="HxW")
    # also the plain detector of the first config
    parser.add_argument("--plain", action="store_true", help="add the plain detector")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", dest="json_out", default="")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")


def run_flops(args: argparse.Namespace) -> Dict:
    """GFLOP per image (forced mode: the full top-k through every head) by operator."""
    import torch

    from personsearch.benchmark.inputs import BenchmarkInputs, parse_size
    from personsearch.benchmark.measure import InferenceSession
    from personsearch.benchmark.models import model_cfg, plain_detector_cfg

    try:
        h, w = parse_size(args.size)
    except ValueError as e:
        raise SystemExit(f"benchmark flops: {e}") from None
    configs = [_config_and_weights(c, "flops")[0] for c in args.configs]
    if len(args.opts) % 2:
        raise SystemExit(f"benchmark flops: config overrides come in KEY VALUE pairs; got "
                         f"{args.opts}")  # fmt: skip
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    inputs = BenchmarkInputs(height=h, width=w, calib_images=1)
    jobs = [(c, model_cfg(c, args.opts)) for c in configs]
    if args.plain:
        jobs.insert(0, ("plain detector", plain_detector_cfg(jobs[0][1])))
    out = {}
    for name, cfg in jobs:
        session = InferenceSession(cfg, inputs, True)
        counts = session.count_flops()
        session.close()
        out[name] = counts
        ops = ", ".join(f"{k} {v:.1f}" for k, v in sorted(counts["gflop_by_op"].items()))
        print(f"{name}: {counts['gflop_per_item']:.1f} GFLOP/image at {h}x{w} ({ops})")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": _args_dict(args), "gflop": out}, f, indent=2)
    return out


# ------------------------------------------------------------------------------------------------
# official-weights: the same weights for an official model and our converted one
# ------------------------------------------------------------------------------------------------
OFFICIAL_WEIGHTS_DESCRIPTION = """\
Write the weights that make `compare --official` time the official code and our converted model
on the same numbers: the official model with random weights, configured for --size (forced
thresholds) and its BatchNorm statistics calibrated on the benchmark images (as compare does),
saved in the official checkpoint layout, and converted (as tools/convert_checkpoint.py) for
configs/official/<method>_R50.yaml. It prints the compare command that uses them.

    python tools/benchmark.py official-weights --official seqnet=/path/to/SeqNet \\
        --size 896x1504 --out output/benchmark/weights
"""


def add_official_weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = OFFICIAL_WEIGHTS_DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    # the official clone: seqnet=PATH (nae=, nae+= likewise)
    parser.add_argument("--official", required=True, metavar="NAME=PATH")
    # the benchmark size the statistics are calibrated at
    parser.add_argument("--size", default="900x1500", metavar="HxW")
    # images of the BatchNorm calibration (the benchmark image is the first)
    parser.add_argument("--calib-images", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    # the RPN's test top-k (the R50 configs' values)
    parser.add_argument("--pre-nms-topk", type=int, default=6000)
    parser.add_argument("--post-nms-topk", type=int, default=300)
    # torch threads (0: torch's default)
    parser.add_argument("--threads", type=int, default=0)
    # output folder for official_<name>.pth and converted_<name>.pth
    parser.add_argument("--out", required=True, help="output folder")


def run_official_weights(args: argparse.Namespace) -> Dict:
    import torch

    from personsearch.benchmark.inputs import BenchmarkInputs, parse_size
    from personsearch.benchmark.official_weights import write_official_weights

    impl, _, path = args.official.partition("=")
    try:
        h, w = parse_size(args.size)
    except ValueError as e:
        raise SystemExit(f"benchmark official-weights: {e}") from None
    if args.calib_images < 1:
        raise SystemExit(f"benchmark official-weights: --calib-images must be >= 1, got "
                         f"{args.calib_images}")  # fmt: skip
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    inputs = BenchmarkInputs(height=h, width=w, seed=args.seed, calib_images=args.calib_images)
    try:
        out = write_official_weights(
            impl, path, inputs, args.out, args.pre_nms_topk, args.post_nms_topk
        )
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"benchmark official-weights: {e}") from None
    print(f"official weights:  {out['official']}")
    print(f"converted weights: {out['converted']} (for {out['config']})")
    print("compare them with:")
    print(f"  python tools/benchmark.py compare --configs {out['config']}={out['converted']} "
          f"--official {impl}={path} --official-weights {impl}={out['official']} "
          f"--size {args.size} --interleave MODEL.DEVICE cpu")  # fmt: skip
    return out


# name -> (help, add_arguments, run)
SUBCOMMANDS = {
    "search-eval": (
        "time the search protocol scoring on a synthetic full-size results set",
        add_search_eval_arguments,
        run_search_eval,
    ),
    "train": (
        "seconds per training iteration and peak memory of a config's model",
        lambda p: add_model_arguments(p, train=True),
        run_train,
    ),
    "inference": (
        "seconds per test image and peak memory of a config's model",
        lambda p: add_model_arguments(p, train=False),
        run_inference,
    ),
    "search-index": (
        "time top-k search over a random search index (tools/search.py query), 1M detections",
        add_search_index_arguments,
        run_search_index,
    ),
    "search-scale": (
        "a simulated archive index: exact vs approximate search, recall, filters, memory",
        add_search_scale_arguments,
        run_search_scale,
    ),
    "compare": (
        "several configs side by side with the plain detector (and the official code): "
        "ms/image, ms/query, s/iter, memory",
        add_compare_arguments,
        run_compare,
    ),
    "throughput": (
        "images/s and MFU of several models x batch sizes x precisions x layouts in one process "
        "(the GPU script)",
        add_throughput_arguments,
        run_throughput,
    ),
    "optimize-check": (
        "largest output differences between a model as built and with TEST.OPTIMIZE",
        add_optimize_check_arguments,
        run_optimize_check,
    ),
    "flops": (
        "model GFLOP per image (forced mode) of configs, by operator",
        add_flops_arguments,
        run_flops,
    ),
    "official-weights": (
        "calibrated official weights and their conversion, for compare --official on the same "
        "numbers",
        add_official_weights_arguments,
        run_official_weights,
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
