"""Training and scoring the runs of the model zoo: one run (a config and a seed) and a plan of runs.

Each run trains ``tools/train_net.py --config-file <config> SEED <s>`` in a subprocess into
``<output>/<config>/seed<s>`` (a run with a checkpoint but no result is continued with
``--resume``; a finished run, marked by its ``result.json``, is skipped), evaluates the final model
once more with ground-truth boxes as detections (``--eval-only TEST.SEARCH.USE_GT_BOXES True``) and
scores the saved ``search_results.pth`` offline under every published protocol (see
:func:`score_run`).

The functions take the parsed command line of ``tools/model_zoo.py`` (any object with the same
attributes): ``output``, ``opts`` (trailing ``KEY VALUE`` overrides), ``register_json``, ``jobs``,
``tables_only``, ``deadline``, ``dataset``, ``gallery_size`` and ``lowres_fraction``.
"""

import json
import logging
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
PREPARE_SYNTHETIC = os.path.join(REPO, "datasets", "prepare_synthetic.py")
logger = logging.getLogger(__name__)

# scoring reads the shared dataset caches: one run at a time
_SCORING = threading.Lock()


def run_dir(output: str, config: str, seed: int) -> str:
    """The output directory of one run: ``<output>/<config without .yaml>/seed<seed>``."""
    return os.path.join(output, os.path.splitext(config)[0], f"seed{seed}")


def is_finished(output: str, config: str, seed: int) -> bool:
    """Whether the run has its ``result.json`` (it was trained and scored)."""
    return os.path.isfile(os.path.join(run_dir(output, config, seed), "result.json"))


def train_net(args: Any, config: str, opts: Sequence[Any], log: str, *flags: str) -> float:
    """Run ``tools/train_net.py`` on a config in a subprocess, appending its output to a log.

    Args:
        args: The options of the zoo (``register_json`` is forwarded; with ``jobs`` > 1 the
            subprocess gets ``OMP_NUM_THREADS`` = CPU cores / ``jobs`` unless it is set).
        config: The config, a path under ``configs/``.
        opts: Trailing ``KEY VALUE`` config overrides.
        log: The file the command line and its output are appended to.
        *flags: Further flags of ``train_net.py`` (``--resume``, ``--eval-only``).

    Returns:
        The seconds the subprocess ran.

    Raises:
        RuntimeError: If it exits with a non-zero code.
    """
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
    """Prepare the built-in synthetic set (the registered splits only load it).

    Runs ``python datasets/prepare_synthetic.py`` in the repository (the working directory of the
    runs, so the same ``$DETECTRON2_DATASETS/synthetic``); a no-op when the set is current.

    Raises:
        RuntimeError: If the script fails (its output went to the console).
    """
    cmd = [sys.executable, PREPARE_SYNTHETIC, "--no-progress"]
    logger.info("$ %s", " ".join(cmd))
    if subprocess.call(cmd, cwd=REPO) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (see above)")


def training_minutes(out: str) -> Optional[float]:
    """Training time of a run in minutes.

    detectron2's "Total training time: H:MM:SS" of the run's log; a run that was interrupted and
    resumed logs that only for its last part, so for it the time is estimated as the number of
    iterations times the median seconds per iteration of its metrics.json rows.

    Args:
        out: The run's output directory.

    Returns:
        The minutes, or None if the log (or, for a resumed run, metrics.json) does not tell.
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


def run_device(out: str) -> str:
    """What a run trained on: "cpu", or the CUDA device's name (this machine's).

    Args:
        out: The run's output directory (its ``config.yaml`` gives ``MODEL.DEVICE``).
    """
    path = os.path.join(out, "config.yaml")
    device = "cpu"
    if os.path.isfile(path):
        match = re.search(r"^  DEVICE: (\S+)", open(path).read(), re.M)
        device = match.group(1) if match else device
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else device
    return device


def score_run(args: Any, out: str) -> Dict[str, Any]:
    """Every published number of one finished run.

    Scores the run's saved search results on ``args.dataset`` (``personsearch.evaluation``):
    the full split (gallery ``args.gallery_size``), the low-resolution subset (CUHK-SYSU-style
    ``Resolution.mat``, else the ``args.lowres_fraction`` smallest queries), without CWS, with
    CBGM, and the results of the ground-truth-box evaluation (under ``<out>/gt``).

    Args:
        args: The options of the zoo.
        out: The run's output directory.

    Returns:
        The numbers (percentages), the training minutes and the device, keyed as in
        ``result.json``.
    """
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
    res["train_minutes"] = training_minutes(out)
    res["device"] = run_device(out)
    return res


def run_one(args: Any, config: str, seed: int) -> Dict[str, Any]:
    """Train (or continue, or skip) one run and score it.

    Args:
        args: The options of the zoo; with ``args.tables_only`` nothing is trained.
        config: The config, a path under ``configs/``.
        seed: The training seed (``SEED``).

    Returns:
        The run's ``result.json`` (written here when the run is scored), or ``{}`` for an
        unfinished run with ``args.tables_only``.

    Raises:
        RuntimeError: If a ``train_net.py`` call fails.
    """
    out = run_dir(args.output, config, seed)
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
        train_net(args, config, opts, log, *(["--resume"] if resume else []))
    gt_opts = list(args.opts) + [
        "SEED", seed,
        "OUTPUT_DIR", os.path.join(out, "gt"),
        "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
        "TEST.SEARCH.USE_GT_BOXES", "True",
    ]  # fmt: skip
    train_net(args, config, gt_opts, log, "--eval-only")
    with _SCORING:
        res = score_run(args, out)
    res.update(config=config, seed=seed)
    from personsearch.utils.file_io import atomic_write

    with atomic_write(done, "w") as f:
        json.dump(res, f, indent=2)
    return res


def read_plan(path: str) -> List[Tuple[str, int]]:
    """The runs of a plan file: one ``CONFIG SEED`` per line, ``#`` comments, blank lines.

    Args:
        path: The plan file.

    Returns:
        The (config, seed) runs in file order.

    Raises:
        ValueError: Naming the file and line of a malformed line, or if the plan lists no runs.
    """
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


def run_plan(args: Any, plan: List[Tuple[str, int]], tqdm=None) -> List[Dict[str, Any]]:
    """:func:`run_one` for every (config, seed) of a plan, ``args.jobs`` at a time.

    No run is started that is not expected to finish within ``args.deadline`` minutes (if > 0) of
    the call: the expected duration is the median of the runs finished so far (before the first
    finishes, every run is started). A failed run does not stop the others; it is logged and
    listed in ``args.failures`` (set here).

    Args:
        args: The options of the zoo.
        plan: The (config, seed) runs, in priority order.
        tqdm: A progress-bar class (``tqdm.tqdm``), or None for no bar.

    Returns:
        The results in plan order: ``{}`` for a run not started or failed.
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
        done = is_finished(args.output, config, seed)
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
