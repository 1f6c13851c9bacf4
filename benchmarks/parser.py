"""The command line of ``tools/benchmark.py``: one ``add_<name>_arguments(parser)`` per subcommand
(a comment on each flag) and :data:`SUBCOMMANDS`, which binds each to its ``run_<name>(args)`` in
:mod:`benchmarks.cli`. Adding a subcommand: write both and list them in :data:`SUBCOMMANDS`."""

import argparse

from .cli import (
    run_compare,
    run_flops,
    run_inference,
    run_official_weights,
    run_optimize_check,
    run_search_eval,
    run_search_index,
    run_search_scale,
    run_throughput,
    run_train,
)


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


def add_flops_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", nargs="+", required=True, metavar="CONFIG")
    parser.add_argument("--size", default="900x1500", metavar="HxW")
    # also the plain detector of the first config
    parser.add_argument("--plain", action="store_true", help="add the plain detector")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", dest="json_out", default="")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")


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


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    """The parser of ``tools/benchmark.py``: one subcommand per :data:`SUBCOMMANDS` entry, bound to
    its ``run_*`` function of :mod:`benchmarks.cli` (``args.func``).

    Args:
        description: the help text above the subcommands (the tool passes its docstring).
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        add_arguments(p)
        p.set_defaults(func=run)
    return parser
