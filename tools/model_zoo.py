#!/usr/bin/env python
"""Reproduce the synthetic model zoo: train every synthetic config over several seeds, score each
run under every protocol we publish, and write the tables and the ablation chart.

    python tools/model_zoo.py                       # every group, seeds 0 1 2 (resumable)
    python tools/model_zoo.py --groups ablation --seeds 0 1 2 3
    python tools/model_zoo.py --tables-only         # rebuild tables/plots from finished runs
    python tools/model_zoo.py --update MODEL_ZOO.md # also replace the marked section there

Each run trains ``tools/train_net.py --config-file <config> SEED <s>`` into
``<output>/<config>/seed<s>`` (a run with a checkpoint but no result is continued with
``--resume``; a finished run, marked by its ``result.json``, is skipped), then scores the saved
``search_results.pth`` offline (``personsearch.evaluation.score_results``): the full test split
(gallery 100), the low-resolution subset (CUHK-SYSU(L)-style ``Resolution.mat``), without CWS,
with CBGM, and once more with ground-truth boxes as detections (``--eval-only
TEST.SEARCH.USE_GT_BOXES True``). Tables report mean +- standard deviation (n - 1) over seeds.
Before the first run, the synthetic set is prepared (``python datasets/prepare_synthetic.py``, a
no-op when it is current) when the runs are scored on a built-in synthetic split.
"""

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
PREPARE_SYNTHETIC = os.path.join(REPO, "datasets", "prepare_synthetic.py")
logger = logging.getLogger("model_zoo")

# (row label, config under configs/) per group; a config listed in several groups is run once
GROUPS: Dict[str, List[Tuple[str, str]]] = {
    "methods": [
        ("OIM", "synthetic/OIM_R10.yaml"),
        ("NAE", "synthetic/NAE_R10.yaml"),
        ("NAE+", "synthetic/NAE+_R10.yaml"),
        ("SeqNet", "synthetic/SeqNet_R10.yaml"),
        ("UGAS on NAE", "synthetic/UGAS-NAE_R10.yaml"),
        ("UGAS on SeqNet", "synthetic/UGAS_R10.yaml"),
    ],
    "fpn": [
        ("NAE, C4 (res5 head)", "synthetic/NAE_R10.yaml"),
        ("NAE, FPN (box head on p2-p5)", "synthetic/NAE_R10_FPN.yaml"),
    ],
    "ablation": [
        ("(a) SeqNet", "synthetic/SeqNet_R10.yaml"),  # = ablations/a_SeqNet.yaml (same model)
        ("(b) + SFM", "synthetic/ablations/b_SFM.yaml"),
        ("(c) + SFM + SD", "synthetic/ablations/c_SFM_SD.yaml"),
        ("(d) + UG", "synthetic/ablations/d_UG.yaml"),
        ("(e) + SFM + SD + UG", "synthetic/UGAS_R10.yaml"),
    ],
    "ug": [  # UG variants, alone on SeqNet and within the full UGAS
        ("SeqNet + UG (Gaussian, quality-guided: default)", "synthetic/ablations/d_UG.yaml"),
        ("SeqNet + UG (Gaussian, loss weighting only)", "synthetic/ablations/d_UG_fit.yaml"),
        ("SeqNet + UG (UAL: no sampling)", "synthetic/ablations/d_UG_ual.yaml"),
        ("SeqNet + UG (DSU)", "synthetic/ablations/d_UG_dsu.yaml"),
        (
            "SeqNet + UG (first reconstruction: collapses)",
            "synthetic/ablations/d_UG_collapsed.yaml",
        ),
        ("UGAS (quality-guided UG: default)", "synthetic/UGAS_R10.yaml"),
        ("UGAS (UG with loss weighting only)", "synthetic/ablations/e_UGAS_fit.yaml"),
    ],
    "sd": [  # SD variants
        ("SFM + SD (mutual: default)", "synthetic/ablations/c_SFM_SD.yaml"),
        ("SFM + SD (one-way deep -> shallow)", "synthetic/ablations/c_SFM_SD_oneway.yaml"),
        (
            "SFM + SD (gradient stopped at each branch)",
            "synthetic/ablations/c_SFM_SD_stopgrad.yaml",
        ),
        ("UGAS (mutual SD: default)", "synthetic/UGAS_R10.yaml"),
        ("UGAS (one-way SD)", "synthetic/ablations/e_UGAS_oneway.yaml"),
    ],
    "sfm": [  # SFM variants
        ("SFM (no attention: default)", "synthetic/ablations/b_SFM.yaml"),
        ("SFM with spatial + level attention", "synthetic/ablations/b_SFM_attention.yaml"),
    ],
    "fusion": [
        ("deep", "synthetic/ablations/fusion_deep.yaml"),
        ("shallow", "synthetic/ablations/fusion_shallow.yaml"),
        ("mean", "synthetic/ablations/fusion_mean.yaml"),
        ("concat", "synthetic/ablations/b_SFM.yaml"),  # FUSION concat: the default
        ("deep + SD", "synthetic/ablations/fusion_deep_SD.yaml"),
        ("shallow + SD", "synthetic/ablations/fusion_shallow_SD.yaml"),
        ("mean + SD", "synthetic/ablations/fusion_mean_SD.yaml"),
        ("concat + SD", "synthetic/ablations/c_SFM_SD.yaml"),
    ],
    "nae": [  # the current UGAS on the NAE head (NAE itself: the methods group)
        ("UGAS on NAE", "synthetic/UGAS-NAE_R10.yaml"),
    ],
}
# (column title, key in result.json); the keys are filled by _score_run
COLUMNS = [
    ("mAP", "mAP"),
    ("top-1", "top1"),
    ("det. AP", "det_AP"),
    ("recall", "det_recall"),
    ("mAP (L)", "lowres_mAP"),
    ("mAP w/o CWS", "nocws_mAP"),
    ("mAP +CBGM", "cbgm_mAP"),
    ("mAP GT boxes", "gt_mAP"),
    ("train min", "train_minutes"),
]
# (bar offset, key in result.json, legend) of the chart: the full split, the low-resolution
# subset, and ground-truth boxes (re-identification alone, without the detector's noise)
PLOTTED = ((-0.27, "mAP", "mAP"), (0.0, "lowres_mAP", "mAP (L)"), (0.27, "gt_mAP", "mAP GT boxes"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    # which groups of GROUPS to run and tabulate
    p.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    # run these configs (paths under configs/) instead of the groups, in one table
    p.add_argument("--configs", nargs="+", default=None)
    # training seeds (SEED); every config is trained once per seed
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    # where runs, tables and plots go
    p.add_argument("--output", default="output/model_zoo")
    # the test split the runs are scored on (registered name)
    p.add_argument("--dataset", default="synthetic_test")
    # CUHK-SYSU-style gallery size of the published tables
    p.add_argument("--gallery-size", type=int, default=100)
    # low-resolution subset of non-CUHK-SYSU protocols: this fraction of the smallest queries
    # (CUHK-SYSU-style sets use their Resolution.mat)
    p.add_argument("--lowres-fraction", type=float, default=0.1)
    # do not train; rebuild tables and plots from finished runs
    p.add_argument("--tables-only", action="store_true")
    # print the planned runs and exit
    p.add_argument("--dry-run", action="store_true")
    # replace the section between the model-zoo markers of this markdown file with the tables
    p.add_argument("--update", default="")
    # the name in the markers: <!-- model-zoo:NAME:begin --> ... <!-- model-zoo:NAME:end -->
    p.add_argument("--section", default="synthetic")
    # forwarded to every train_net.py call (e.g. --register-json NAME JSON ROOT); repeatable
    p.add_argument("--register-json", nargs=3, action="append", default=[], metavar="X")
    # runs trained at the same time (separate processes; e.g. several per GPU). With more than one
    # each run gets OMP_NUM_THREADS = CPU cores / JOBS unless the variable is set.
    p.add_argument("--jobs", type=int, default=1)
    # minutes by which every run should be finished (0: no limit): a run is started only if it
    # is expected to finish in time (the median duration of the runs finished so far; before the
    # first finishes, every run is started). For a fixed time budget, e.g. a lent GPU; order the
    # plan by priority with --configs/--seeds/--by-config.
    p.add_argument("--deadline", type=float, default=0.0)
    # a file of "CONFIG SEED" lines: exactly these runs, in this order (a priority order for
    # --deadline), tabulated as one table; replaces --groups/--configs/--seeds
    p.add_argument("--plan", default="")
    # trailing KEY VALUE config overrides for every run (e.g. SOLVER.MAX_ITER 10 for a quick look)
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    return p


def _run_dir(output: str, config: str, seed: int) -> str:
    return os.path.join(output, os.path.splitext(config)[0], f"seed{seed}")


def _train_net(args: argparse.Namespace, config: str, opts: Sequence[str], log: str, *flags):
    cmd = [sys.executable, TRAIN_NET, "--config-file", os.path.join(REPO, "configs", config)]
    for r in args.register_json:
        cmd += ["--register-json", *r]
    cmd += list(flags) + [str(o) for o in opts]
    env = dict(os.environ)
    if args.jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        t0 = time.perf_counter()
        code = subprocess.call(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {code}; see {log}")
    return time.perf_counter() - t0


def prepare_synthetic() -> None:
    """Prepare the built-in synthetic set (the registered splits only load it) with
    ``python datasets/prepare_synthetic.py`` in the repository (the working directory of the runs,
    so the same ``$DETECTRON2_DATASETS/synthetic``); a no-op when it is current."""
    cmd = [sys.executable, PREPARE_SYNTHETIC, "--no-progress"]
    logger.info("$ %s", " ".join(cmd))
    if subprocess.call(cmd, cwd=REPO) != 0:
        raise SystemExit(f"model_zoo: {' '.join(cmd)} failed (see above)")


def _training_minutes(out: str) -> Optional[float]:
    """Training time of the run in minutes.

    detectron2's "Total training time: H:MM:SS" of the run's log; a run that was interrupted and
    resumed logs that only for its last part, so for it the time is estimated as the number of
    iterations times the median seconds per iteration of its metrics.json rows.
    """
    path = os.path.join(out, "log.txt")
    if not os.path.isfile(path):
        return None
    log = open(path, errors="replace").read()
    found = re.findall(r"Total training time: (\d+):(\d+):(\d+)", log)
    if not found:
        return None
    starts = re.findall(r"Starting training from iteration (\d+)", log)
    if any(int(i) > 0 for i in starts):  # resumed
        metrics = os.path.join(out, "metrics.json")
        if not os.path.isfile(metrics):
            return None
        rows = [json.loads(line) for line in open(metrics) if line.strip()]
        times = [r["time"] for r in rows if "time" in r]
        iters = max((r["iteration"] for r in rows if "iteration" in r), default=-1) + 1
        return statistics.median(times) * iters / 60 if times else None
    h, m, s = map(int, found[-1])
    return h * 60 + m + s / 60


def _score_run(args: argparse.Namespace, out: str) -> Dict[str, float]:
    """Every published number of one finished run (see the module docstring)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from personsearch.evaluation import SearchOptions, load_results, score_results

    records = DatasetCatalog.get(args.dataset)
    meta = MetadataCatalog.get(args.dataset)
    base = SearchOptions(gallery_size=args.gallery_size, lowres_fraction=args.lowres_fraction)
    raw = load_results(os.path.join(out, "inference", args.dataset, "search_results.pth"))
    full = score_results(raw, records, meta, base)
    res = {
        "mAP": full["search"]["mAP"],
        "top1": full["search"]["top1"],
        "top5": full["search"]["top5"],
        "det_AP": full["detection"]["AP"],
        "det_recall": full["detection"]["recall"],
    }
    subset = "resolution" if meta.get("protocol") == "cuhk_sysu" else "lowres"
    low = score_results(raw, records, meta, base.with_(subset=subset), evaluate_detection=False)
    res["lowres_mAP"] = low["search"]["mAP"]
    res["lowres_queries"] = low["info"]["num_queries"]
    nocws = score_results(raw, records, meta, base.with_(cws=False), evaluate_detection=False)
    res["nocws_mAP"] = nocws["search"]["mAP"]
    cbgm = score_results(raw, records, meta, base.with_(cbgm=True), evaluate_detection=False)
    res["cbgm_mAP"] = cbgm["search"]["mAP"]
    gt_raw = load_results(os.path.join(out, "gt", "inference", args.dataset, "search_results.pth"))
    gt = score_results(gt_raw, records, meta, base, evaluate_detection=False)
    res["gt_mAP"] = gt["search"]["mAP"]
    res["gt_top1"] = gt["search"]["top1"]
    res["train_minutes"] = _training_minutes(out)
    res["device"] = _device(out)
    return res


def _device(out: str) -> str:
    """What the run trained on: "cpu", or the CUDA device's name (this machine's)."""
    path = os.path.join(out, "config.yaml")
    device = "cpu"
    if os.path.isfile(path):
        match = re.search(r"^  DEVICE: (\S+)", open(path).read(), re.M)
        device = match.group(1) if match else device
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else device
    return device


_SCORING = threading.Lock()


def run_one(args: argparse.Namespace, config: str, seed: int) -> Dict[str, float]:
    """Train (or continue, or skip) one run and score it; returns its ``result.json``."""
    out = _run_dir(args.output, config, seed)
    done = os.path.join(out, "result.json")
    if os.path.isfile(done):
        return json.load(open(done))
    if args.tables_only:
        return {}
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "model_zoo.log")
    opts = ["SEED", seed, "OUTPUT_DIR", out] + list(args.opts)
    if not os.path.isfile(os.path.join(out, "model_final.pth")):
        resume = os.path.isfile(os.path.join(out, "last_checkpoint"))
        logger.info("train %s seed %d%s -> %s", config, seed, " (resumed)" if resume else "", out)
        _train_net(args, config, opts, log, *(["--resume"] if resume else []))
    gt_opts = list(args.opts) + [
        "SEED", seed,
        "OUTPUT_DIR", os.path.join(out, "gt"),
        "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
        "TEST.SEARCH.USE_GT_BOXES", "True",
    ]  # fmt: skip
    _train_net(args, config, gt_opts, log, "--eval-only")
    with _SCORING:  # scoring reads the shared dataset caches; one run at a time
        res = _score_run(args, out)
    res.update(config=config, seed=seed)
    from personsearch.utils.file_io import atomic_write

    with atomic_write(done, "w") as f:
        json.dump(res, f, indent=2)
    return res


def _read_plan(path: str) -> List[Tuple[str, int]]:
    """The (config, seed) runs of a ``--plan`` file; a malformed line is an error naming it."""
    plan = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split("#")[0].split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{n}: expected 'CONFIG SEED', got {line.strip()!r}")
            plan.append((parts[0], int(parts[1])))
    if not plan:
        raise ValueError(f"{path}: the plan lists no runs")
    return plan


def run_plan(args: argparse.Namespace, plan: List[Tuple[str, int]], tqdm=None) -> List[Dict]:
    """:func:`run_one` for every (config, seed) of the plan, ``args.jobs`` at a time, starting no
    run that is not expected to finish within ``args.deadline`` minutes (those runs give ``{}``,
    as do failed runs, which are logged and listed in ``args.failures``).

    Returns:
        The results in plan order.
    """
    start = time.monotonic()
    failures: List[str] = []
    durations: List[float] = []
    bar = tqdm(total=len(plan), desc="model zoo runs") if tqdm else None

    def job(item):
        config, seed = item
        now = time.monotonic()
        expected = statistics.median(durations) if durations else 0.0
        late = args.deadline > 0 and now + expected - start > 60 * args.deadline
        done = os.path.isfile(os.path.join(_run_dir(args.output, config, seed), "result.json"))
        res = {}
        if late and not done:
            logger.info("deadline: %s seed %d not started", config, seed)
        else:
            try:
                res = run_one(args, config, seed)
                if not done:
                    durations.append(time.monotonic() - now)
            except RuntimeError as e:  # a failed run does not stop the others
                logger.error("%s seed %d failed: %s", config, seed, e)
                failures.append(f"{config} seed {seed}")
        if bar is not None:
            bar.update(1)
        return res

    if args.jobs <= 1:
        out = [job(item) for item in plan]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.jobs) as pool:  # each job waits on its subprocesses
            out = list(pool.map(job, plan))
    if bar is not None:
        bar.close()
    if failures:
        logger.error("%d run(s) failed (see their model_zoo.log): %s", len(failures), failures)
    args.failures = failures
    return out


def _mean_std(values: List[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(rows: List[Tuple[str, str]], results: Dict[str, List[Dict]], seeds) -> str:
    """A markdown table: one row per (label, config), mean ± std over its finished seeds."""
    head = "| model | config | seeds | " + " | ".join(c for c, _ in COLUMNS) + " | device |"
    lines = [head, "|" + "---|" * (4 + len(COLUMNS))]
    for label, config in rows:
        runs = [r for r in results.get(config, []) if r]
        cells = [_mean_std([r.get(k) for r in runs]) for _, k in COLUMNS]
        devices = ", ".join(sorted({str(r.get("device", "?")) for r in runs})) or "-"
        lines.append(
            f"| {label} | `{config}` | {len(runs)}/{len(seeds)} | "
            + " | ".join(cells)
            + f" | {devices} |"
        )
    return "\n".join(lines)


def plot(groups: Dict[str, List[Tuple[str, str]]], results, path: str) -> None:
    """Bar chart of ``PLOTTED`` (mean, std error bars over the seeds), one panel per group."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt
    import numpy as np

    cols = min(3, len(groups))
    nrows = -(-len(groups) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 5.2 * nrows), squeeze=False)
    for ax in axes.flat[len(groups) :]:
        ax.axis("off")
    for ax, (name, rows) in zip(axes.flat, groups.items()):
        ran = [any(results.get(c, [])) for _, c in rows]
        labels = [
            textwrap.fill(label if r else f"{label} (not run)", 22)
            for (label, _), r in zip(rows, ran)
        ]
        x = np.arange(len(rows))
        for off, key, title in PLOTTED:
            vals = [[r[key] for r in results.get(c, []) if r and r.get(key) is not None]
                    for _, c in rows]  # fmt: skip
            mean = [np.mean(v) if v else np.nan for v in vals]  # no bar for a config not run
            std = [np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals]
            ax.bar(x + off, mean, 0.27, yerr=std, capsize=3, label=title)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize="small")
        ax.set_title(name)
        ax.set_ylabel("%")
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_ylim(top=ax.get_ylim()[1] * 1.25)  # room for the legend above the bars
        ax.legend(loc="upper left", ncol=len(PLOTTED), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import personsearch  # noqa: F401  (registers the built-in datasets)
    from personsearch.utils.cli import register_json_datasets

    register_json_datasets(args.register_json)
    plan = _read_plan(args.plan) if args.plan else None
    if plan:
        args.configs = list(dict.fromkeys(c for c, _ in plan))
        args.seeds = sorted({s for _, s in plan})
    if args.configs:
        groups = {"configs": [(os.path.splitext(os.path.basename(c))[0], c) for c in args.configs]}
    else:
        groups = {g: GROUPS[g] for g in args.groups}
    configs = list(dict.fromkeys(c for rows in groups.values() for _, c in rows))
    missing = [c for c in configs if not os.path.isfile(os.path.join(REPO, "configs", c))]
    if missing:
        raise FileNotFoundError(f"config(s) not found under configs/: {missing}")
    if not plan:
        plan = [(c, s) for s in args.seeds for c in configs]  # every config once per seed first
    if args.dry_run:
        for c, s in plan:
            state = (
                "done"
                if os.path.isfile(os.path.join(_run_dir(args.output, c, s), "result.json"))
                else "to run"
            )
            print(f"{c} seed {s}: {state}")
        return 0
    if args.dataset in ("synthetic_train", "synthetic_test") and not args.tables_only:
        prepare_synthetic()
    results: Dict[str, List[Dict]] = {c: [] for c in configs}
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    for (c, _), res in zip(plan, run_plan(args, plan, tqdm)):
        results[c].append(res)
    os.makedirs(args.output, exist_ok=True)
    text = [f"Synthetic model zoo, seeds {args.seeds}, gallery size {args.gallery_size}, "
            f"`python tools/model_zoo.py {' '.join(argv or sys.argv[1:])}`"]  # fmt: skip
    for name, rows in groups.items():
        text.append(f"\n**{name}**\n\n" + table(rows, results, args.seeds))
    md = "\n".join(text) + "\n"
    with open(os.path.join(args.output, "model_zoo.md"), "w") as f:
        f.write(md)
    png = os.path.join(args.output, "ablation.png")
    plot(groups, results, png)
    print(md)
    print(f"tables: {os.path.join(args.output, 'model_zoo.md')}\nplot: {png}")
    if args.update:
        begin, end = (
            f"<!-- model-zoo:{args.section}:begin -->",
            f"<!-- model-zoo:{args.section}:end -->",
        )
        doc = open(args.update).read()
        if begin not in doc or end not in doc:
            raise ValueError(f"{args.update} has no {begin} ... {end} section to replace")
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        with open(args.update, "w") as f:
            f.write(head + begin + "\n" + md + end + tail)
        print(f"updated {args.update}")
    return 1 if getattr(args, "failures", None) else 0


if __name__ == "__main__":
    sys.exit(main())
