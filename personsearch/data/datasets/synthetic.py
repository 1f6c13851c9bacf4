"""The built-in synthetic person-search dataset, written in CUHK-SYSU's original format.

It is the project's default dataset: every command (training, evaluation, search demo, tests) runs
on a laptop CPU with it, with no download. Scenes are rendered by
:mod:`personsearch.data.datasets.synthetic_render`; this module decides who appears where, writes
the images and the MATLAB annotation files (through
:mod:`personsearch.data.datasets.cuhk_sysu_writer`, so the set loads with the real CUHK-SYSU loader
unchanged) and manages the cached copy on disk. Design, parameters and measured statistics:
``docs/SYNTHETIC.md``.

Example::

    from personsearch.data.datasets.synthetic import ensure_synthetic_dataset
    root = ensure_synthetic_dataset("datasets/synthetic")  # generated once (seconds), then cached
"""

import contextlib
import json
import logging
import math
import os
import pickle
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from personsearch.data.datasets import cuhk_sysu_writer as writer
from personsearch.data.datasets import synthetic_render
from personsearch.data.datasets.synthetic_render import (
    ATTRIBUTES,
    PlacedPerson,
    RenderResult,
    render_image_file,
    sample_identities,
)

try:  # POSIX advisory locks; elsewhere concurrent callers rely on the rename race being tolerated
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

logger = logging.getLogger(__name__)

__all__ = [
    "GENERATOR_VERSION",
    "INFO_FILE",
    "SYNTHETIC_DEFAULTS",
    "ensure_synthetic_dataset",
    "generate_synthetic_dataset",
]

# Bump whenever the output for the same parameters changes (renderer, layout, file contents).
GENERATOR_VERSION = 1
INFO_FILE = "synthetic_info.json"
IMAGE_DIR = os.path.join("Image", "SSM")

SYNTHETIC_DEFAULTS: Dict[str, object] = {
    "seed": 0,
    "num_train_images": 300,
    "num_test_images": 200,
    "num_train_ids": 140,
    "num_test_ids": 100,
    # appearances (images) per identity, inclusive range; test identities need >= 2
    "train_appearances": (4, 8),
    "test_appearances": (3, 6),
    # labeled people per image, inclusive range (a target: identity counts take precedence)
    "labeled_per_image": (2, 6),
    # unlabeled passers-by per image, inclusive range (fewer when they do not fit)
    "unlabeled_per_image": (0, 4),
    # TestG{N} files; only sizes < num_test_images are written
    "gallery_sizes": (25, 50, 100),
    "image_width": (400, 512),
    "image_height": (300, 384),
    # person height range in pixels (labeled people are at least 6 px taller than the minimum)
    "person_height": (30, 250),
    # probability that an occluder is put right in front of a person
    "occlusion_prob": 0.2,
    # a person whose visible fraction is below this is "occluded" (Occlusion.mat, statistics)
    "occlusion_threshold": 0.85,
    # fraction of the queries, the smallest ones, in Resolution.mat
    "resolution_fraction": 0.1,
    "person_blur_prob": 0.12,
    "image_blur_prob": 0.15,
    "jpeg_quality": 90,
}
_RANGE_KEYS = (
    "train_appearances",
    "test_appearances",
    "labeled_per_image",
    "unlabeled_per_image",
    "image_width",
    "image_height",
    "person_height",
)
_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: personsearch synthetic generator"


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------
def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _normalize_params(params: Dict) -> Dict:
    """Merge with the defaults, validate, and return JSON-compatible values (tuples -> lists)."""
    unknown = sorted(set(params) - set(SYNTHETIC_DEFAULTS))
    if unknown:
        raise TypeError(
            f"Unknown synthetic dataset parameter(s) {unknown}; "
            f"valid: {sorted(SYNTHETIC_DEFAULTS)}."
        )
    p = dict(SYNTHETIC_DEFAULTS)
    p.update(params)
    out = json.loads(json.dumps(p))  # tuples -> lists, numpy scalars rejected early
    for key in ("seed", "num_train_images", "num_test_images", "num_train_ids", "num_test_ids"):
        if not isinstance(out[key], (int, float)) or int(out[key]) != out[key] or out[key] < 0:
            raise ValueError(
                f"synthetic parameter {key} must be a non-negative int, got {out[key]!r}"
            )
        out[key] = int(out[key])
    for key in _RANGE_KEYS:
        value = out[key]
        pair = isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))
        if not pair or not (0 <= value[0] <= value[1]):
            raise ValueError(
                f"synthetic parameter {key} must be a range (lo, hi) with 0 <= lo <= hi, "
                f"got {value!r}"
            )
    if out["num_test_images"] < 3 or out["num_train_images"] < 1:
        raise ValueError("the synthetic dataset needs >= 1 train image and >= 3 test images")
    if out["num_train_ids"] < 1 or out["num_test_ids"] < 1:
        raise ValueError("the synthetic dataset needs >= 1 train and >= 1 test identity")
    if out["person_height"][0] < 12 or out["image_height"][0] < 64 or out["image_width"][0] < 64:
        raise ValueError("synthetic images must be >= 64 px and people >= 12 px tall")
    if not isinstance(out["gallery_sizes"], list) or not all(map(_is_number, out["gallery_sizes"])):
        raise ValueError(f"gallery_sizes must be a list of sizes, got {out['gallery_sizes']!r}")
    sizes = sorted(set(int(n) for n in out["gallery_sizes"]))
    if not sizes or sizes[0] < 2:
        raise ValueError(f"gallery_sizes must hold sizes >= 2, got {out['gallery_sizes']!r}")
    if not [n for n in sizes if n < out["num_test_images"]]:
        raise ValueError(
            f"no gallery size in {sizes} is smaller than num_test_images={out['num_test_images']}"
        )
    out["gallery_sizes"] = sizes
    return out


# --------------------------------------------------------------------------------------------
# Layout: who appears where
# --------------------------------------------------------------------------------------------
def _assign_appearances(
    rng: np.random.Generator,
    num_ids: int,
    num_images: int,
    app_range: Sequence[int],
    per_image: Sequence[int],
    max_app: int,
) -> List[List[int]]:
    """Distribute identities over images: each identity at most once per image.

    Appearance counts are drawn from ``app_range`` (capped by ``max_app`` and the number of
    images), then nudged so that the per-image counts can stay inside ``per_image``; the images'
    counts are filled greedily (largest remaining capacity first, which succeeds whenever a
    solution exists).

    Returns:
        Per image, the local identity indices (0..num_ids-1) appearing in it.
    """
    cap = max(1, min(max_app, num_images))
    lo, hi = min(app_range[0], cap), min(app_range[1], cap)
    counts = rng.integers(lo, hi + 1, num_ids)
    min_total, max_total = per_image[0] * num_images, per_image[1] * num_images
    while counts.sum() < min_total and np.any(counts < cap):
        counts[rng.choice(np.flatnonzero(counts < cap))] += 1
    floor = max(1, min(lo, 2))
    while counts.sum() > max_total and np.any(counts > floor):
        counts[rng.choice(np.flatnonzero(counts > floor))] -= 1
    total = int(counts.sum())

    base = min(per_image[0], total // num_images)
    capacity = np.full(num_images, base, dtype=np.int64)
    top = max(per_image[1], math.ceil(total / num_images))
    # uneven extra capacity: some images are crowded, most hold a few identities
    weights = rng.gamma(0.7, size=num_images) + 1e-3
    while capacity.sum() < total:
        open_ = capacity < top
        prob = weights * open_
        extra = rng.multinomial(total - int(capacity.sum()), prob / prob.sum())
        capacity = np.minimum(capacity + extra, top)

    images: List[List[int]] = [[] for _ in range(num_images)]
    for k in np.argsort(-counts, kind="stable"):
        key = capacity + 0.5 * rng.random(num_images)
        for j in np.argsort(-key, kind="stable")[: counts[k]]:
            if capacity[j] > 0:
                images[j].append(int(k))
                capacity[j] -= 1
    for ids in images:
        rng.shuffle(ids)
    return images


def _plan(p: Dict) -> Dict:
    """Everything about the dataset that is not image content (drawn from the plan generator)."""
    rng = np.random.default_rng(np.random.SeedSequence(p["seed"], spawn_key=(0,)))
    n_tr_ids, n_te_ids = p["num_train_ids"], p["num_test_ids"]
    identities = sample_identities(rng, n_tr_ids + n_te_ids)
    n_img = p["num_train_images"] + p["num_test_images"]
    test_idx = np.sort(rng.permutation(n_img)[: p["num_test_images"]])
    train_idx = np.setdiff1d(np.arange(n_img), test_idx)
    sizes = [n for n in p["gallery_sizes"] if n < p["num_test_images"]]

    labeled: List[List[int]] = [[] for _ in range(n_img)]  # global pids per image
    tr = _assign_appearances(
        rng, n_tr_ids, len(train_idx), p["train_appearances"], p["labeled_per_image"], n_img
    )
    for j, ids in zip(train_idx, tr):
        labeled[j] = [int(k) for k in ids]
    te_lo = max(2, p["test_appearances"][0])
    te_hi = max(te_lo, p["test_appearances"][1])
    te = _assign_appearances(
        rng, n_te_ids, len(test_idx), (te_lo, te_hi), p["labeled_per_image"], min(sizes) + 1
    )
    for j, ids in zip(test_idx, te):
        labeled[j] = [n_tr_ids + int(k) for k in ids]

    appearances: Dict[int, List[int]] = {}
    for j, ids in enumerate(labeled):
        for pid in ids:
            appearances.setdefault(pid, []).append(j)
    for k in range(n_tr_ids + n_te_ids):
        split, need = ("train", 1) if k < n_tr_ids else ("test", 2)
        if len(appearances.get(k, [])) < need:
            raise ValueError(
                f"Synthetic {split} identity p{k + 1} got {len(appearances.get(k, []))} "
                f"appearances (needs >= {need}): use fewer identities or more images."
            )
    test_set = set(int(j) for j in test_idx)
    queries = []
    for k in range(n_tr_ids, n_tr_ids + n_te_ids):
        imgs = appearances[k]
        q = imgs[int(rng.integers(len(imgs)))]
        others = [j for j in test_set if j not in set(imgs)]
        queries.append(
            {"pid": k, "image": q, "distractors": [int(j) for j in rng.permutation(sorted(others))]}
        )
    return {
        "identities": identities,
        "test_idx": [int(j) for j in test_idx],
        "train_idx": [int(j) for j in train_idx],
        "labeled": labeled,
        "appearances": appearances,
        "queries": queries,
        "gallery_sizes": sizes,
    }


# --------------------------------------------------------------------------------------------
# Rendering (optionally in worker processes)
# --------------------------------------------------------------------------------------------
def _image_name(index: int) -> str:
    return f"s{index + 1}.jpg"


_WORKER_CMD = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('_personsearch_synthetic_render', sys.argv[1]); "
    "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); "
    "mod.worker_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))"
)


def _render_all(
    tasks: List[Tuple], identities: np.ndarray, workers: int, progress: bool
) -> Iterator[RenderResult]:
    """Render every task, in this process or in ``workers`` fresh Python subprocesses.

    The subprocesses load only the renderer module (numpy and OpenCV, no torch), so they start in a
    fraction of a second; unlike a fork of this process, they cannot deadlock on a lock held by
    one of its threads (OpenCV's or torch's), and unlike ``spawn`` they do not re-import the
    caller's main script.

    Yields:
        ``(image index, (width, height), [(pid, (x, y, w, h), visibility), ...])`` in any order.
    """
    bar = tqdm(total=len(tasks), desc="synthetic person-search images", disable=not progress)
    if workers <= 1 or len(tasks) < 16:
        with bar:
            for task in tasks:
                yield render_image_file(task, identities)
                bar.update()
        return
    render_module = os.path.abspath(synthetic_render.__file__)
    with tempfile.TemporaryDirectory(prefix="personsearch-synthetic-") as job_dir, bar:
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


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------
def _normalize_mat_headers(root: str) -> None:
    """Replace scipy's "Created on: <date>" MAT header text so that files are byte-identical."""
    header = _MAT_HEADER.ljust(116, b" ")
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
        **params: any other key of :data:`SYNTHETIC_DEFAULTS`.

    Returns:
        Statistics of the generated set (the ``statistics`` of ``synthetic_info.json``) plus
        ``generation_seconds``.

    Raises:
        TypeError: unknown parameter. ValueError: inconsistent parameters.
        FileExistsError: ``root`` exists and is not empty.
    """
    t0 = time.perf_counter()
    p = _normalize_params(
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

    plan = _plan(p)
    identities = plan["identities"]
    n_img = p["num_train_images"] + p["num_test_images"]
    rparams = {k: p[k] for k in p}
    tasks = [
        (
            j,
            os.path.join(image_dir, _image_name(j)),
            p["seed"],
            plan["labeled"][j],
            rparams,
            p["jpeg_quality"],
        )
        for j in range(n_img)
    ]
    persons: List[List[PlacedPerson]] = [[] for _ in range(n_img)]
    sizes: List[Tuple[int, int]] = [(0, 0)] * n_img
    for j, size, ppl in _render_all(tasks, identities, max(1, int(workers)), progress):
        persons[j], sizes[j] = [PlacedPerson(*pp) for pp in ppl], size

    # ---- annotation files ----
    names = [_image_name(j) for j in range(n_img)]
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
    n_tr = p["num_train_ids"]
    writer.write_train_mat(
        root,
        [
            (f"p{k + 1}", [(names[j], box_of[(j, k)]) for j in plan["appearances"].get(k, [])])
            for k in range(n_tr)
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
    info = {"generator": "personsearch synthetic", "version": GENERATOR_VERSION, "params": p}
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
    n_tr = p["num_train_ids"]
    labeled = [pp for ppl in persons for pp in ppl if pp.pid >= 0]
    unlabeled = [pp for ppl in persons for pp in ppl if pp.pid < 0]
    heights = [pp.box[3] for ppl in persons for pp in ppl]
    app = {k: len(v) for k, v in plan["appearances"].items()}
    tr_app = [app.get(k, 0) for k in range(n_tr)]
    te_app = [app.get(k, 0) for k in range(n_tr, n_tr + p["num_test_ids"])]
    per_img_lab = [sum(pp.pid >= 0 for pp in ppl) for ppl in persons]
    per_img_unl = [sum(pp.pid < 0 for pp in ppl) for ppl in persons]
    thr = p["occlusion_threshold"]
    edges = [0, 50, 100, 150, 200, 250, 10**6]
    hist = np.histogram(heights, bins=edges)[0].tolist()
    return {
        "images": len(persons),
        "train_images": len(plan["train_idx"]),
        "test_images": len(plan["test_idx"]),
        "image_width": [min(s[0] for s in sizes), max(s[0] for s in sizes)],
        "image_height": [min(s[1] for s in sizes), max(s[1] for s in sizes)],
        "boxes": len(labeled) + len(unlabeled),
        "labeled_boxes": len(labeled),
        "unlabeled_boxes": len(unlabeled),
        "train_identities": n_tr,
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


# --------------------------------------------------------------------------------------------
# Cached copy
# --------------------------------------------------------------------------------------------
def _read_info(root: str) -> Optional[Dict]:
    try:
        with open(os.path.join(root, INFO_FILE)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _is_current(root: str, params: Dict) -> bool:
    info = _read_info(root)
    return bool(
        info
        and info.get("version") == GENERATOR_VERSION
        and info.get("params") == params
        and os.path.isdir(os.path.join(root, IMAGE_DIR))
    )


@contextlib.contextmanager
def _file_lock(path: str):
    """Exclusive advisory lock on ``path`` (created) for the duration of the block (POSIX only)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_synthetic_dataset(root: str, workers: int = 2, progress: bool = True, **params) -> str:
    """Make sure ``root`` holds the synthetic dataset for these parameters; generate it if not.

    Nothing is done when ``root/synthetic_info.json`` records the same generator version and
    parameters. Otherwise the set is generated into a temporary sibling folder that then replaces
    ``root`` by a rename, so ``root`` is never a partially written tree. Concurrent callers (e.g.
    distributed ranks) serialise on the lock file ``.<name>.lock`` next to ``root``; the first one
    generates, the others find the finished set.

    Args:
        root: the dataset folder, e.g. ``$DETECTRON2_DATASETS/synthetic``.
        workers: rendering processes when generating.
        progress: show a progress bar when generating.
        **params: keys of :data:`SYNTHETIC_DEFAULTS` to override.

    Returns:
        ``root`` as an absolute path.

    Raises:
        TypeError, ValueError: bad parameters.
        FileExistsError: ``root`` exists, is not empty and is not a synthetic dataset (it is never
            deleted then).
    """
    p = _normalize_params(params)
    root = os.path.abspath(root)
    if _is_current(root, p):
        logger.info("Synthetic person-search dataset at %s is up to date.", root)
        return root
    parent, name = os.path.split(root)
    os.makedirs(parent, exist_ok=True)
    with _file_lock(os.path.join(parent, f".{name}.lock")):
        if _is_current(root, p):  # another process generated it while we waited
            logger.info("Synthetic person-search dataset at %s was generated meanwhile.", root)
            return root
        if os.path.lexists(root) and not os.path.isdir(root):
            raise FileExistsError(
                f"{root!r} exists and is not a folder; the synthetic dataset needs a folder there "
                f"(the file is left untouched)."
            )
        if os.path.isdir(root) and os.listdir(root) and _read_info(root) is None:
            raise FileExistsError(
                f"{root!r} exists and is not a synthetic dataset (no {INFO_FILE}); move it away or "
                f"choose another folder."
            )
        if fcntl is not None:  # we hold the lock: leftovers of killed generators can go
            for entry in os.listdir(parent):
                if entry.startswith((f".{name}.tmp-", f".{name}.old-")):
                    logger.info("Removing the leftover %s", os.path.join(parent, entry))
                    shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        old = _read_info(root)
        logger.info(
            "%s synthetic person-search dataset in %s (seed %d, %d train + %d test images)...",
            "Regenerating (parameters or generator version changed)" if old else "Generating",
            root,
            p["seed"],
            p["num_train_images"],
            p["num_test_images"],
        )
        tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
        trash = None
        try:
            stats = generate_synthetic_dataset(tmp, workers=workers, progress=progress, **p)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private
            if os.path.lexists(root):
                trash = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex[:8]}")
                os.rename(root, trash)
            try:
                os.replace(tmp, root)
            except OSError:
                if not _is_current(root, p):  # lost a race without the lock (no fcntl)
                    raise
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        logger.info(
            "Synthetic dataset ready in %.1f s: %d images, %d boxes (%d labeled), %d + %d "
            "identities, %d queries.",
            stats["generation_seconds"],
            stats["images"],
            stats["boxes"],
            stats["labeled_boxes"],
            stats["train_identities"],
            stats["test_identities"],
            stats["queries"],
        )
    return root
