"""The subcommands of ``tools/benchmark.py``: each ``run_<name>(args)`` takes the parsed
command-line arguments of its subcommand (the parsers are in :mod:`benchmarks.parser`), checks
them, runs the measurement and prints (and optionally writes) its report. The measurements
themselves live in the other modules of this package."""

import argparse
import json
import time
from typing import Callable, Dict, List, Tuple

import numpy as np


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
    from .search_eval import synthetic_search_set

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


def _model_setup(args: argparse.Namespace):
    from personsearch import get_person_search_cfg
    from personsearch.checkpoint import PersonSearchCheckpointer
    from personsearch.engine import PersonSearchTrainer
    from personsearch.utils.device import check_device

    from .timing import reset_peak_memory

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
    """Print (and with ``--json`` write) the timing summary of ``train`` / ``inference``."""
    from .tables import format_model_timing, model_timing
    from .timing import peak_memory_mb

    out = model_timing(unit, seconds, peak_memory_mb(cuda), extra)
    title = f"{name}: {args.config_file} {' '.join(map(str, args.opts))}"
    print("\n".join(format_model_timing(title, unit, out, cuda)))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": _args_dict(args), **out}, f, indent=2)
    return out


def run_train(args: argparse.Namespace) -> Dict:
    from .measure import run_training_steps
    from .timing import timed_runs

    cfg, model, trainer_cls, cuda = _model_setup(args)
    model.train()
    optimizer = trainer_cls.build_optimizer(cfg, model)
    loader = iter(trainer_cls.build_train_loader(cfg))
    batches = [next(loader) for _ in range(max(1, args.batches))]
    seconds, _ = run_training_steps(
        cfg,
        model,
        optimizer,
        batches,
        lambda step: timed_runs(step, args.iters, args.warmup, cuda, "train steps"),
    )
    return _report(
        "train", "iter", seconds, cuda, args, {"images_per_iter": cfg.SOLVER.IMS_PER_BATCH}
    )


def run_inference(args: argparse.Namespace) -> Dict:
    import itertools

    import torch

    from personsearch.modeling.inference_optimization import (
        InferenceOptions,
        optimize_for_inference,
    )

    from .timing import timed_runs

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


def run_search_index(args: argparse.Namespace) -> Dict[str, float]:
    import torch

    from personsearch.apps.search import ExactSearcher

    t0 = time.perf_counter()
    from .search_index import random_search_gallery

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


def run_search_scale(args: argparse.Namespace) -> Dict:
    from .search_scale import (
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


# values of the list options that are not config overrides (KEY VALUE pairs that follow them are)
_COMPARE_LIST_VALUES = {
    "configs": r".+\.ya?ml(=.*)?",
    "size": r"\d+[xX]\d+",
    "official": r"(seqnet|nae\+?)=.*",
    "official_weights": r"(seqnet|nae\+?)=.*",
    "measure": r"inference|query|train",
    "batch": r"-?\d+",
}


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

    from .compare import CompareError, CompareSettings
    from .compare import run_compare as compare
    from .inputs import parse_size

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


def run_throughput(args: argparse.Namespace) -> Dict:
    import os
    import re

    import torch

    from .inputs import parse_size
    from .models import PRECISIONS
    from .throughput import PLAIN_PREFIX, ThroughputRun, ThroughputSettings

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

    from .inputs import BenchmarkInputs, parse_size
    from .tolerance import format_differences, output_differences

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


def run_flops(args: argparse.Namespace) -> Dict:
    """GFLOP per image (forced mode: the full top-k through every head) by operator."""
    import torch

    from .inputs import BenchmarkInputs, parse_size
    from .measure import InferenceSession
    from .models import model_cfg, plain_detector_cfg

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


def run_official_weights(args: argparse.Namespace) -> Dict:
    import torch

    from .inputs import BenchmarkInputs, parse_size
    from .official_weights import write_official_weights

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
