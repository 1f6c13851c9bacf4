"""One image file (render + JPEG), and the entry point of rendering subprocesses."""

import os
import pickle
from typing import Dict, List, Tuple

import cv2
import numpy as np

from .scene import render_scene

# (image index, output path, master seed, labeled global pids, generator parameters, JPEG quality)
RenderTask = Tuple[int, str, int, List[int], Dict, int]
# (image index, (width, height), [(pid, (x, y, w, h), visibility), ...])
RenderResult = Tuple[int, Tuple[int, int], List[Tuple[int, Tuple[int, int, int, int], float]]]


def render_image_file(task: RenderTask, identities: np.ndarray) -> RenderResult:
    """Render image ``index`` from ``SeedSequence(seed, spawn_key=(1, index))`` and write the JPEG.

    Args:
        task: see :data:`RenderTask`.
        identities: (K, NUM_ATTRIBUTES) the identity table.

    Returns:
        See :data:`RenderResult` (plain tuples, picklable without this module).
    """
    index, path, seed, labeled, params, quality = task
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))
    img, persons = render_scene(
        rng, [(pid, identities[pid]) for pid in labeled], identities, params
    )
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(path, bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError(f"Could not write {path!r}")
    people = [(p.pid, p.box, p.visibility) for p in persons]
    return index, (img.shape[1], img.shape[0]), people


def worker_main(job_dir: str, worker: int, num_workers: int) -> None:
    """Entry point of a rendering subprocess: renders tasks ``worker::num_workers`` of the job.

    The job is ``job_dir/job.pkl`` (``{"tasks": [RenderTask], "identities": array}``); prints
    ``done <index>`` per image (progress) and pickles the results to ``job_dir/result{worker}.pkl``.
    """
    cv2.setNumThreads(1)
    with open(os.path.join(job_dir, "job.pkl"), "rb") as fh:
        job = pickle.load(fh)
    results = []
    for task in job["tasks"][worker::num_workers]:
        results.append(render_image_file(task, job["identities"]))
        print(f"done {task[0]}", flush=True)
    with open(os.path.join(job_dir, f"result{worker}.pkl"), "wb") as fh:
        pickle.dump(results, fh, protocol=pickle.HIGHEST_PROTOCOL)
