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
import logging
import os
import sys
from typing import Dict, List, Optional

# the runs, tables and chart are benchmarks/zoo/, a subpackage of the repository's top-level
# benchmarks package (not part of the installed personsearch package): import it from the
# repository root
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks import zoo  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line of the tool (the module docstring is its description)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    # which groups of GROUPS to run and tabulate
    p.add_argument("--groups", nargs="+", default=list(zoo.GROUPS), choices=list(zoo.GROUPS))
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


def main(argv: Optional[List[str]] = None) -> int:
    """Run the planned runs (or list them with ``--dry-run``), then write the tables and the chart.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 1 if a run failed, else 0.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import personsearch  # noqa: F401  (registers the built-in datasets)
    from personsearch.utils.cli import register_json_datasets

    register_json_datasets(args.register_json)
    plan = zoo.read_plan(args.plan) if args.plan else None
    if plan:
        args.configs = list(dict.fromkeys(c for c, _ in plan))
        args.seeds = sorted({s for _, s in plan})
    groups = zoo.select_groups(args.groups, args.configs)
    configs = zoo.unique_configs(groups)
    missing = [c for c in configs if not os.path.isfile(os.path.join(REPO, "configs", c))]
    if missing:
        raise FileNotFoundError(f"config(s) not found under configs/: {missing}")
    if not plan:
        plan = [(c, s) for s in args.seeds for c in configs]  # every config once per seed first
    if args.dry_run:
        for c, s in plan:
            print(f"{c} seed {s}: {'done' if zoo.is_finished(args.output, c, s) else 'to run'}")
        return 0
    if args.dataset in ("synthetic_train", "synthetic_test") and not args.tables_only:
        try:
            zoo.prepare_synthetic()
        except RuntimeError as e:
            raise SystemExit(f"model_zoo: {e}") from e
    results: Dict[str, List[Dict]] = {c: [] for c in configs}
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    for (c, _), res in zip(plan, zoo.run_plan(args, plan, tqdm)):
        results[c].append(res)
    os.makedirs(args.output, exist_ok=True)
    command = f"python tools/model_zoo.py {' '.join(argv or sys.argv[1:])}"
    md = zoo.zoo_markdown(groups, results, args.seeds, args.gallery_size, command)
    with open(os.path.join(args.output, "model_zoo.md"), "w") as f:
        f.write(md)
    png = os.path.join(args.output, "ablation.png")
    zoo.plot(groups, results, png)
    print(md)
    print(f"tables: {os.path.join(args.output, 'model_zoo.md')}\nplot: {png}")
    if args.update:
        zoo.replace_section(args.update, args.section, md)
        print(f"updated {args.update}")
    return 1 if getattr(args, "failures", None) else 0


if __name__ == "__main__":
    sys.exit(main())
