"""Generation of the dataset into a folder: rendering (in worker processes), the MATLAB annotation
files in CUHK-SYSU's format, and the statistics."""

import json
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from personsearch.data.datasets import cuhk_sysu_writer as writer
from personsearch.data.datasets.synthetic.params import (
    GENERATOR_VERSION,
    IMAGE_DIR,
    INFO_FILE,
    MAT_HEADER,
    SYNTHETIC_DEFAULTS,
    normalize_params,
    recorded_params,
)

from . import render
from .layout import plan_layout
from .render.attributes import ATTRIBUTES
from .render.scene import PlacedPerson
from .render.worker import RenderResult, render_image_file


def image_name(index: int) -> str:
    """File name of image ``index`` (0-based), CUHK-SYSU style: ``s1.jpg``, ``s2.jpg``, ..."""
    return f"s{index + 1}.jpg"


# Loads only the renderer package (numpy and OpenCV) by its file path, not through the personsearch
# package (whose import pulls in torch and detectron2), then runs one worker.
_WORKER_CMD = (
    "import importlib.util, os, sys; "
    "spec = importlib.util.spec_from_file_location('_personsearch_synthetic_render', sys.argv[1], "
    "submodule_search_locations=[os.path.dirname(sys.argv[1])]); "
    "mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; "
    "spec.loader.exec_module(mod); "
    "mod.worker_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))"
)


def render_all(
    jobs: Sequence[Tuple[List[Tuple], np.ndarray]], workers: int, progress: bool
) -> Iterator[RenderResult]:
    """Render every task of every job, in this process or in ``workers`` fresh Python subprocesses.

    The subprocesses load only the renderer module (numpy and OpenCV, no torch), so they start in a
    fraction of a second; unlike a fork of this process, they cannot deadlock on a lock held by
    one of its threads (OpenCV's or torch's), and unlike ``spawn`` they do not re-import the
    caller's main script.

    Args:
        jobs: ``(tasks, identities)`` pairs, rendered one after the other: render tasks (see
            ``render.RenderTask``) and the identity table that their labeled pids index and that
            their passers-by must differ from.
        workers: rendering processes (1 = in this process).
        progress: show one tqdm bar over all the tasks.

    Yields:
        ``(image index, (width, height), [(pid, (x, y, w, h), visibility), ...])`` in any order.
    """
    total = sum(len(tasks) for tasks, _ in jobs)
    with tqdm(total=total, desc="synthetic person-search images", disable=not progress) as bar:
        for tasks, identities in jobs:
            if tasks:
                yield from _render_job(tasks, identities, workers, bar)


def _render_job(
    tasks: List[Tuple], identities: np.ndarray, workers: int, bar: tqdm
) -> Iterator[RenderResult]:
    """Render ``tasks`` with one identity table (see :func:`render_all`), updating ``bar``."""
    if workers <= 1 or len(tasks) < 16:
        for task in tasks:
            yield render_image_file(task, identities)
            bar.update()
        return
    render_module = os.path.abspath(render.__file__)
    with tempfile.TemporaryDirectory(prefix="personsearch-synthetic-") as job_dir:
        with open(os.path.join(job_dir, "job.pkl"), "wb") as fh:
            pickle.dump({"tasks": tasks, "identities": identities}, fh)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER_CMD, render_module, job_dir, str(w), str(workers)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for w in range(workers)
        ]
        try:
            lines: "queue.Queue[Optional[str]]" = queue.Queue()

            def pump(stream):
                for line in stream:
                    lines.put(line)
                lines.put(None)

            for proc in procs:
                threading.Thread(target=pump, args=(proc.stdout,), daemon=True).start()
            open_streams = len(procs)
            while open_streams:
                line = lines.get()
                if line is None:
                    open_streams -= 1
                elif line.startswith("done "):
                    bar.update()
            for w, proc in enumerate(procs):
                if proc.wait() != 0:
                    raise RuntimeError(
                        f"Synthetic dataset rendering worker {w} failed with exit code "
                        f"{proc.returncode} (its error is printed above)."
                    )
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        for w in range(workers):
            with open(os.path.join(job_dir, f"result{w}.pkl"), "rb") as fh:
                yield from pickle.load(fh)


def _normalize_mat_headers(root: str) -> None:
    """Replace scipy's "Created on: <date>" MAT header text so that files are byte-identical."""
    header = MAT_HEADER.ljust(116, b" ")
    for dirpath, _, files in os.walk(os.path.join(root, "annotation")):
        for f in sorted(files):
            if f.endswith(".mat"):
                with open(os.path.join(dirpath, f), "r+b") as fh:
                    fh.write(header)


def _percentiles(values: Sequence[float]) -> Dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {}
    q = np.percentile(v, [0, 10, 25, 50, 75, 90, 100])
    keys = ("min", "p10", "p25", "median", "p75", "p90", "max")
    out = {k: round(float(x), 1) for k, x in zip(keys, q)}
    out["mean"] = round(float(v.mean()), 1)
    return out


def generate_synthetic_dataset(
    root: str,
    *,
    seed: int = SYNTHETIC_DEFAULTS["seed"],
    num_train_images: int = SYNTHETIC_DEFAULTS["num_train_images"],
    num_test_images: int = SYNTHETIC_DEFAULTS["num_test_images"],
    num_train_ids: int = SYNTHETIC_DEFAULTS["num_train_ids"],
    num_test_ids: int = SYNTHETIC_DEFAULTS["num_test_ids"],
    gallery_sizes: Sequence[int] = SYNTHETIC_DEFAULTS["gallery_sizes"],
    workers: int = 2,
    progress: bool = True,
    **params,
) -> Dict:
    """Render the synthetic dataset into ``root`` in CUHK-SYSU's original layout.

    Writes ``Image/SSM/s{k}.jpg``, ``annotation/Images.mat``, ``annotation/pool.mat``,
    ``annotation/test/train_test/Train.mat``, ``TestG{N}.mat`` (N in ``gallery_sizes`` and
    < ``num_test_images``), ``annotation/test/subset/Resolution.mat`` and ``Occlusion.mat``, and
    ``synthetic_info.json`` (generator version, parameters, statistics). The output depends only on
    the parameters (byte-identical files for the same ones), not on ``workers``.

    Args:
        root: output folder; created, must be absent or empty.
        seed: master seed; image ``k`` is rendered from ``SeedSequence(seed, spawn_key=(1, k))``.
        num_train_images, num_test_images: scene images per split.
        num_train_ids, num_test_ids: identities per split (disjoint).
        gallery_sizes: gallery sizes N of the ``TestG{N}.mat`` files.
        workers: rendering processes (1 = in this process).
        progress: show a tqdm progress bar.
        **params: any other key of :data:`SYNTHETIC_DEFAULTS`, e.g. ``extra_train_images`` and
            ``extra_train_ids``: more training images (``s{N+1}.jpg`` ...) with new training
            identities, leaving every file of the test split and the default training images
            byte-identical.

    Returns:
        Statistics of the generated set (the ``statistics`` of ``synthetic_info.json``) plus
        ``generation_seconds``.

    Raises:
        TypeError: unknown parameter. ValueError: inconsistent parameters.
        FileExistsError: ``root`` exists and is not empty.
    """
    t0 = time.perf_counter()
    p = normalize_params(
        dict(
            seed=seed,
            num_train_images=num_train_images,
            num_test_images=num_test_images,
            num_train_ids=num_train_ids,
            num_test_ids=num_test_ids,
            gallery_sizes=gallery_sizes,
            **params,
        )
    )
    if os.path.isdir(root) and os.listdir(root):
        raise FileExistsError(f"Synthetic dataset output folder {root!r} exists and is not empty.")
    image_dir = os.path.join(root, IMAGE_DIR)
    os.makedirs(image_dir, exist_ok=True)

    plan = plan_layout(p)
    identities = plan["identities"]
    n_base = plan["num_base_images"]
    n_img = len(plan["labeled"])  # n_base + extra_train_images
    rparams = {k: p[k] for k in p}
    tasks = [
        (
            j,
            os.path.join(image_dir, image_name(j)),
            p["seed"],
            plan["labeled"][j],
            rparams,
            p["jpeg_quality"],
        )
        for j in range(n_img)
    ]
    persons: List[List[PlacedPerson]] = [[] for _ in range(n_img)]
    sizes: List[Tuple[int, int]] = [(0, 0)] * n_img
    # the default images' passers-by are drawn against the default identities only, so that these
    # images stay byte-identical when extra identities are added
    jobs = [(tasks[:n_base], identities[: plan["num_base_ids"]]), (tasks[n_base:], identities)]
    for j, size, ppl in render_all(jobs, max(1, int(workers)), progress):
        persons[j], sizes[j] = [PlacedPerson(*pp) for pp in ppl], size

    # ---- annotation files ----
    names = [image_name(j) for j in range(n_img)]
    box_of: Dict[Tuple[int, int], Tuple[int, int, int, int]] = {}
    vis_of: Dict[Tuple[int, int], float] = {}
    for j, ppl in enumerate(persons):
        for person in ppl:
            if person.pid >= 0:
                box_of[(j, person.pid)] = person.box
                vis_of[(j, person.pid)] = person.visibility
    writer.write_images_mat(
        root, [(names[j], sorted(pp.box for pp in persons[j])) for j in range(n_img)]
    )
    writer.write_pool_mat(root, [names[j] for j in plan["test_idx"]])
    train_pids = list(range(p["num_train_ids"]))
    train_pids += range(plan["num_base_ids"], len(identities))  # extra identities, if any
    writer.write_train_mat(
        root,
        [
            (f"p{k + 1}", [(names[j], box_of[(j, k)]) for j in plan["appearances"].get(k, [])])
            for k in train_pids
        ],
    )
    protocols: Dict[int, List[Dict]] = {n: [] for n in plan["gallery_sizes"]}
    query_info = []
    for q in plan["queries"]:
        pid, qj = q["pid"], q["image"]
        positives = [(names[j], box_of[(j, pid)]) for j in plan["appearances"][pid] if j != qj]
        for n in plan["gallery_sizes"]:
            gallery = positives + [(names[j], None) for j in q["distractors"][: n - len(positives)]]
            protocols[n].append(
                {
                    "query": (names[qj], box_of[(qj, pid)]),
                    "idname": f"p{pid + 1}",
                    "gallery": gallery,
                }
            )
        query_info.append((box_of[(qj, pid)][3], vis_of[(qj, pid)]))
    for n, queries in protocols.items():
        writer.write_test_protocol_mat(root, n, queries)
    largest = protocols[max(protocols)]
    k_res = max(1, int(round(p["resolution_fraction"] * len(largest))))
    smallest = set(np.argsort([h for h, _ in query_info], kind="stable")[:k_res].tolist())
    writer.write_subset_mat(root, "Resolution", [largest[i] for i in sorted(smallest)])
    occluded = [i for i, (_, v) in enumerate(query_info) if v < p["occlusion_threshold"]]
    writer.write_subset_mat(root, "Occlusion", [largest[i] for i in occluded])
    _normalize_mat_headers(root)

    stats = _statistics(p, plan, persons, sizes, query_info, len(smallest), len(occluded))
    info = {
        "generator": "personsearch synthetic",
        "version": GENERATOR_VERSION,
        "params": recorded_params(p),
    }
    info["statistics"] = stats
    with open(os.path.join(root, INFO_FILE), "w") as fh:
        json.dump(info, fh, indent=2, sort_keys=True)
        fh.write("\n")
    out = dict(stats)
    out["generation_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _statistics(
    p: Dict,
    plan: Dict,
    persons: List[List[PlacedPerson]],
    sizes: List[Tuple[int, int]],
    query_info: List[Tuple[int, float]],
    num_resolution: int,
    num_occlusion: int,
) -> Dict:
    train_pids = list(range(p["num_train_ids"]))
    train_pids += range(plan["num_base_ids"], len(plan["identities"]))
    n_tr = p["num_train_ids"]
    labeled = [pp for ppl in persons for pp in ppl if pp.pid >= 0]
    unlabeled = [pp for ppl in persons for pp in ppl if pp.pid < 0]
    heights = [pp.box[3] for ppl in persons for pp in ppl]
    app = {k: len(v) for k, v in plan["appearances"].items()}
    tr_app = [app.get(k, 0) for k in train_pids]
    te_app = [app.get(k, 0) for k in range(n_tr, n_tr + p["num_test_ids"])]
    per_img_lab = [sum(pp.pid >= 0 for pp in ppl) for ppl in persons]
    per_img_unl = [sum(pp.pid < 0 for pp in ppl) for ppl in persons]
    thr = p["occlusion_threshold"]
    edges = [0, 50, 100, 150, 200, 250, 10**6]
    hist = np.histogram(heights, bins=edges)[0].tolist()
    stats = {
        "images": len(persons),
        "train_images": len(plan["train_idx"]),
        "test_images": len(plan["test_idx"]),
        "image_width": [min(s[0] for s in sizes), max(s[0] for s in sizes)],
        "image_height": [min(s[1] for s in sizes), max(s[1] for s in sizes)],
        "boxes": len(labeled) + len(unlabeled),
        "labeled_boxes": len(labeled),
        "unlabeled_boxes": len(unlabeled),
        "train_identities": len(train_pids),
        "test_identities": p["num_test_ids"],
        "attributes": list(ATTRIBUTES),
        "train_appearances_per_identity": _percentiles(tr_app),
        "test_appearances_per_identity": _percentiles(te_app),
        "labeled_per_image": _percentiles(per_img_lab),
        "unlabeled_per_image": _percentiles(per_img_unl),
        "images_with_unlabeled": int(sum(n > 0 for n in per_img_unl)),
        "box_height": _percentiles(heights),
        "box_height_histogram": {
            f"{lo}-{hi if hi < 10**6 else 'inf'}": c for lo, hi, c in zip(edges, edges[1:], hist)
        },
        "labeled_box_height": _percentiles([pp.box[3] for pp in labeled]),
        "occluded_labeled_boxes": int(sum(pp.visibility < thr for pp in labeled)),
        "occluded_unlabeled_boxes": int(sum(pp.visibility < thr for pp in unlabeled)),
        "queries": len(query_info),
        "query_box_height": _percentiles([h for h, _ in query_info]),
        "gallery_sizes": plan["gallery_sizes"],
        "resolution_queries": num_resolution,
        "occlusion_queries": num_occlusion,
    }
    if p["extra_train_images"]:  # absent otherwise: the default set's info file is unchanged
        stats["extra_train_images"] = p["extra_train_images"]
        stats["extra_train_identities"] = p["extra_train_ids"]
    return stats
