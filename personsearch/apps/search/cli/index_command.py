"""``tools/search.py index``: add images, video frames or a registered split to an index, in one
process or in ``--num-gpus`` x ``--num-machines`` processes (detectron2's ``launch``)."""

import argparse
import logging
import os
import time
from typing import Dict, Tuple

import torch
from detectron2.engine import launch
from detectron2.utils.file_io import PathManager

from personsearch.config import get_person_search_cfg
from personsearch.engine import PersonSearchPredictor
from personsearch.utils.comm import leave_process_group
from personsearch.utils.device import check_device

from .. import distributed as dist
from ..ann import update_ann
from ..filters import parse_time
from ..index import SearchIndex, model_fingerprint
from ..indexer import Indexer
from ..sources import VideoReader, folder_image_source, records_image_source
from .options import ann_params, dataset_records

logger = logging.getLogger("personsearch.apps.search")


def _image_source(args: argparse.Namespace) -> Tuple:
    """The images of ``--images`` or ``--dataset``.

    Returns:
        (root, relative paths, skipped files, source record, cameras), where cameras maps a
        relative path to the camera name of the records that carry a ``camera_id``.
    """
    if args.images:
        return folder_image_source(args.images, args.camera, exclude=[args.index])
    records = dataset_records(args.dataset, args.register_json)
    if not records:
        raise ValueError(f"--dataset {args.dataset!r} has no images")
    return records_image_source(records, args.dataset, args.camera)


def _local_weights(weights: str) -> str:
    """A local file for ``MODEL.WEIGHTS`` (fetched through detectron2's PathManager if it is a
    URL); a clear error when it is empty, missing or cannot be fetched."""
    if not weights:
        raise ValueError(
            "index: MODEL.WEIGHTS is empty; give the trained model as a trailing override, e.g. "
            "'MODEL.WEIGHTS output/demo/train/model_final.pth' (random weights cannot be searched)"
        )
    if os.path.isfile(weights):
        return weights
    try:
        local = PathManager.get_local_path(weights)
    except Exception as e:  # download failures come in many types
        raise FileNotFoundError(f"MODEL.WEIGHTS {weights!r} cannot be found or fetched: {e}") from e
    if not os.path.isfile(local):
        raise FileNotFoundError(f"MODEL.WEIGHTS file not found: {weights!r}")
    return local


def _check_index_arguments(args: argparse.Namespace) -> None:
    """Reject out-of-range flags before any file is read or process started."""
    if args.every < 1:
        raise ValueError(f"--every must be >= 1, got {args.every}")
    if not 0.0 <= args.score_thresh <= 1.0:
        raise ValueError(f"--score-thresh must be in [0, 1], got {args.score_thresh}")
    for flag, low in (("shard_size", 1), ("batch_size", 1), ("num_workers", 0), ("num_gpus", 1),
                      ("num_machines", 1)):  # fmt: skip
        if getattr(args, flag) < low:
            raise ValueError(
                f"--{flag.replace('_', '-')} must be >= {low}, got {getattr(args, flag)}"
            )
    if not 0 <= args.machine_rank < args.num_machines:
        raise ValueError(
            f"--machine-rank must be in [0, {args.num_machines}), got {args.machine_rank}"
        )
    if args.camera and args.dataset is None and args.images is None and args.video is None:
        raise ValueError("--camera goes with a source")
    ann_params(args)


def run_index(args: argparse.Namespace) -> Dict:
    """Check everything that can be checked in this process, then index in ``--num-gpus`` x
    ``--num-machines`` processes (this one alone when both are 1)."""
    _check_index_arguments(args)
    args.start_time_s = parse_time(args.start_time, "--start-time")
    # check the source before loading the model
    if args.video:
        VideoReader(args.video)
        args.image_source = None
    else:
        args.image_source = _image_source(args)
        if not args.image_source[1]:
            logger.warning(f"{args.image_source[0]}: no image files found")
    cfg = get_person_search_cfg(args.config_file, args.opts)
    weights = _local_weights(cfg.MODEL.WEIGHTS)
    check_device(cfg.MODEL.DEVICE, args.config_file, ValueError)
    args.weights_file = weights
    args.model = model_fingerprint(cfg, weights)
    # an index of another model or threshold is refused before any process starts
    if SearchIndex.exists(args.index):
        with SearchIndex.open(args.index) as existing:
            existing.check_compatible(args.model, {"score_thresh": float(args.score_thresh)})
    world = args.num_gpus * args.num_machines
    if world == 1:
        return _index_worker(args)
    launch(
        _index_worker,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
    if args.machine_rank != 0:
        return {}
    with SearchIndex.open(args.index) as index:
        return {"items": index.num_items, "detections": index.num_dets}


def _index_worker(args: argparse.Namespace) -> Dict:
    """Index in this process (one rank of a multi-process run, or the only process)."""
    world = dist.world_size()
    if world > 1:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = get_person_search_cfg(args.config_file, args.opts)
    cfg.MODEL.WEIGHTS = args.weights_file
    if world > 1 and cfg.MODEL.DEVICE == "cpu":  # the processes share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.num_gpus))
    cfg.freeze()
    predictor = PersonSearchPredictor(cfg)
    settings = {"score_thresh": float(args.score_thresh), "dim": predictor.embed_dim}
    index, error = None, None
    if dist.is_main():
        try:
            index = SearchIndex.open_for_writing(args.index, args.model, settings)
        except (ValueError, OSError) as e:
            error = f"{type(e).__name__}: {e}"
            if world == 1:
                raise
    error = dist.broadcast(error)
    if error:  # every rank stops with rank 0's reason
        raise ValueError(error)
    try:
        indexer = Indexer(
            index, predictor, args.score_thresh, args.shard_size, args.batch_size,
            args.num_workers,
        )  # fmt: skip
        t0 = time.perf_counter()
        if args.video:
            stats = indexer.index_video(
                args.video, args.every, args.start_time_s, camera=args.camera
            )
            what = f"video {args.video} (every {args.every} frames)"
        else:
            root, images, skipped, source, cameras = args.image_source
            stats = indexer.index_images(root, images, source, skipped, cameras)
            what = f"{len(images)} images under {root}"
        seconds = time.perf_counter() - t0
        processed = stats.new + stats.changed + stats.unreadable
        out: Dict = {"stats": stats, "seconds": seconds, "images_per_s": processed / seconds}
        if dist.is_main():
            print(f"indexed {what}: {stats.summary()}")
            print(f"  {processed} images/frames read in {seconds:.1f} s ({processed / seconds:.2f} "
                  f"per second; batch size {args.batch_size}, {args.num_workers} decoding "
                  f"workers, {world} process{'es' if world > 1 else ''})")  # fmt: skip
            ann = update_ann(index, args.ann, ann_params(args))
            print(
                f"index {args.index}: {index.num_items} images/frames, {index.num_dets} "
                f"detections, {index.num_commits} commits"
            )
            if ann is not None:
                print(f"approximate index: {ann.describe()}")
            out.update(items=index.num_items, detections=index.num_dets)
    finally:
        if index is not None:
            index.close()
    if world > 1:
        leave_process_group()
    return out
