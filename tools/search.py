#!/usr/bin/env python
"""Search your own images and videos for a person, with a trained person-search model.

Examples::

    # index a folder of images (recursive) or every 5th frame of a video; config overrides such as
    # the weights come last, as in the other detectron2 tools
    python tools/search.py index --config-file configs/synthetic/OIM_R10.yaml \\
        --images my_photos/ --index my_index MODEL.WEIGHTS output/demo/train/model_final.pth
    python tools/search.py index --config-file configs/synthetic/OIM_R10.yaml \\
        --video street.mp4 --every 5 --index my_index MODEL.WEIGHTS model_final.pth
    # the images of a registered split (e.g. the synthetic test set)
    python tools/search.py index --config-file C --dataset synthetic_test --index idx \\
        MODEL.WEIGHTS W

    # query: a person box in a scene image, or a person crop (no --box: the whole image)
    python tools/search.py query --index my_index --image scene.jpg --box 10 20 60 180 --top-k 10
    python tools/search.py query --index my_index --image person_crop.png --output reports/
    # the query boxes of a registered split's queries 0, 1 and 2; CBGM re-ranking
    python tools/search.py query --index idx --dataset-query synthetic_test:0,1,2 --cbgm

    # filters: camera / source, time range, path prefix, detection score, uncertainty
    python tools/search.py query --index idx --image q.jpg --box 10 20 60 180 --camera cam01 \
        --time-from 2024-05-01T08:00 --time-to 2024-05-01T09:00 --min-score 0.8

    # archives: batches of 8 images, 4 decoding processes, 2 GPUs (same launch flags as training)
    python tools/search.py index --config-file C --images archive/ --index idx --batch-size 8 \
        --num-workers 4 --num-gpus 2 MODEL.WEIGHTS W
    python tools/search.py ann --index idx            # (re)build the approximate index
    python tools/search.py info --index my_index      # what an index holds
    python tools/search.py verify --index my_index    # CRC-check every committed embedding
    python tools/search.py migrate --index old_index  # convert a format-1 index in place

``index`` is incremental (re-running it on a grown or changed folder processes only new and
changed files, by content hash) and resumable (work is committed every --shard-size images). From
200,000 detections on it also builds or updates an approximate index (FAISS IVF-PQ; --ann).
``query`` prints the top hits and writes ``<label>_contact_sheet.png`` and a self-contained
``<label>_report.html`` per query into ``--output``. The index format is described in
``personsearch/apps/search/index.py``.
"""

import argparse
import logging
import os
import sys
import time
from typing import Dict, List, Optional

# the command line over the search application, the package personsearch.apps.search
logger = logging.getLogger("personsearch.apps.search")

try:  # what detectron2's launch raises in the parent when a process fails or dies
    from torch.multiprocessing.spawn import ProcessException as ProcessFailed
except ImportError:  # pragma: no cover
    ProcessFailed = RuntimeError


# ------------------------------------------------------------------------------------------------
# arguments
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from personsearch.apps.search import ANN_KINDS, SEARCH_BACKENDS
    from personsearch.utils.cli import add_register_json_argument

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="add images or video frames to an index (incremental)")
    # the model: a personsearch config, its weights as a trailing MODEL.WEIGHTS override
    p.add_argument("--config-file", required=True, help="personsearch config of the model")
    src = p.add_mutually_exclusive_group(required=True)
    # a folder, searched recursively for .jpg .jpeg .png .bmp .tif .tiff .webp files
    src.add_argument("--images", metavar="DIR", help="folder of images (recursive)")
    # one video file read with OpenCV (.avi .mp4 .mov .mkv .webm ...)
    src.add_argument("--video", metavar="FILE", help="video file")
    # every image of a registered split (built-in or --register-json), e.g. synthetic_test
    src.add_argument("--dataset", metavar="NAME", help="the images of a registered split")
    # video: keep one frame in N (frame index and timestamp are stored)
    p.add_argument("--every", type=int, default=1, metavar="N", help="video: every N-th frame")
    # the index folder (created; an existing index is extended)
    p.add_argument("--index", required=True, metavar="OUT", help="index folder")
    # detections below this score are not stored (0.5 = the benchmark protocols' threshold)
    p.add_argument("--score-thresh", type=float, default=0.5, help="default 0.5")
    # images/frames per commit: the unit of work that an interruption cannot lose
    p.add_argument("--shard-size", type=int, default=64, help="images per commit (default 64)")
    # images/frames per forward pass of the model (grouped by image size within a batch)
    p.add_argument("--batch-size", type=int, default=1, help="images per forward (default 1)")
    # processes reading and decoding images/frames in parallel (0: the main process)
    p.add_argument("--num-workers", type=int, default=0, help="decoding processes (default 0)")
    # camera name stored with every image/frame of this run (filter with query --camera);
    # datasets whose records carry camera_id store it instead
    p.add_argument("--camera", default="", help="camera name of the images/video")
    # video: wall-clock time of frame 0 (seconds since 1970 or ISO 8601, e.g. 2024-05-01T08:00)
    p.add_argument("--start-time", default="0", help="video: time of frame 0 (default 0)")
    # approximate index after indexing: auto = ivf-pq from 200,000 detections, none = never
    p.add_argument("--ann", default="auto", choices=("auto", "none") + ANN_KINDS,
                   help="approximate index (default auto)")  # fmt: skip
    add_ann_parameter_arguments(p)
    # several processes (GPUs) and machines, as for training (detectron2's launch)
    add_launch_arguments(p)
    add_register_json_argument(p)  # --dataset on your own data
    # trailing KEY VALUE config overrides (MODEL.WEIGHTS path.pth, MODEL.DEVICE cuda, ...)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    p.set_defaults(func=run_index)

    p = sub.add_parser("query", help="search an index for a person")
    # the index folder written by 'index'
    p.add_argument("--index", required=True, metavar="OUT", help="index folder")
    q = p.add_mutually_exclusive_group(required=True)
    # the query image: a scene (with --box) or a person crop (without --box)
    q.add_argument("--image", metavar="FILE", help="query image")
    # query boxes of a registered split: NAME:I or NAME:I,J,K (query indices)
    q.add_argument(
        "--dataset-query",
        action="append",
        metavar="NAME:I[,J...]",
        help="the query box(es) of a registered split's queries (repeatable)",
    )
    # the person in --image, XYXY pixels; without it the whole image is the query
    p.add_argument(
        "--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), help="person in --image"
    )
    # hits listed, drawn and written to the report
    p.add_argument("--top-k", type=int, default=10, help="hits per query (default 10)")
    # where the reports go (default: <index>/reports)
    p.add_argument("--output", default="", metavar="DIR", help="report folder")
    # CWS: rank by cosine x detection score (default, as the benchmark protocols) or by cosine
    p.add_argument(
        "--cws", action=argparse.BooleanOptionalAction, default=True, help="cosine x det. score"
    )
    # CBGM re-ranking (SeqNet); needs --box (the context is the query image's other people)
    p.add_argument("--cbgm", action="store_true", help="CBGM re-ranking (needs a box)")
    # CBGM: hits whose images are re-scored
    p.add_argument("--cbgm-k1", type=int, default=10, help="CBGM k1 (default 10)")
    # CBGM: query context size (the query and k2 - 1 people of its image)
    p.add_argument("--cbgm-k2", type=int, default=3, help="CBGM k2 (default 3)")
    # leave the query image's own detections out of the ranking (as the protocols do)
    p.add_argument("--exclude-query-image", action="store_true", help="skip the query image")
    # auto: the approximate index if the index has one, else exact; exact: chunked products;
    # faiss: FAISS IndexFlatIP (exact); ann: the approximate index (an error if there is none)
    p.add_argument("--backend", default="auto", choices=SEARCH_BACKENDS, help="default auto")
    # approximate search: cells visited and candidates re-scored exactly (default: the index's)
    p.add_argument("--nprobe", type=int, default=0, help="approximate: cells visited")
    p.add_argument("--rerank", type=int, default=0, help="approximate: candidates re-scored")
    # CRC-check the embeddings before searching (default: when searching exactly)
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None,
                   help="check the embeddings first")  # fmt: skip
    add_filter_arguments(p)
    # the index's weights at another path (must be the same file by content)
    p.add_argument("--weights", default="", help="weights file, if it moved")
    # run the query model on another device (cpu, cuda)
    p.add_argument("--device", default="", help="MODEL.DEVICE for the query model")
    add_register_json_argument(p)  # --dataset-query on your own data
    p.set_defaults(func=run_query)

    p = sub.add_parser("info", help="what an index holds")
    # the index folder
    p.add_argument("--index", required=True, metavar="OUT", help="index folder")
    p.set_defaults(func=run_info)

    p = sub.add_parser("ann", help="build or update the approximate index (FAISS)")
    p.add_argument("--index", required=True, metavar="OUT", help="index folder")
    # ivf-pq: PQ codes (D/8 bytes + 8 per detection in memory); ivf-flat: float16 vectors
    p.add_argument("--kind", default="ivf-pq", choices=ANN_KINDS, help="default ivf-pq")
    # train a new one even if the index has one
    p.add_argument("--rebuild", action="store_true", help="train a new one")
    add_ann_parameter_arguments(p)
    p.set_defaults(func=run_ann)

    p = sub.add_parser("verify", help="check every committed embedding (CRC-32) and the database")
    p.add_argument("--index", required=True, metavar="OUT", help="index folder")
    p.set_defaults(func=run_verify)

    p = sub.add_parser("migrate", help="convert a format-1 index (.npz shards) in place")
    p.add_argument("--index", required=True, metavar="OUT", help="index folder")
    p.set_defaults(func=run_migrate)
    return parser


def add_ann_parameter_arguments(p: argparse.ArgumentParser) -> None:
    """Parameters of the approximate index (0: chosen from the index's size)."""
    # k-means cells of the inverted file (default ~2 sqrt(N), a power of two)
    p.add_argument("--nlist", type=int, default=0, help="approximate index: cells")
    # PQ sub-quantisers (default D / 8)
    p.add_argument("--pq-m", type=int, default=0, help="approximate index: PQ codes per vector")
    # defaults stored with the index: cells visited, candidates re-scored exactly
    p.add_argument("--nprobe", type=int, default=0, help="approximate index: cells visited")
    p.add_argument("--rerank", type=int, default=0, help="approximate index: re-scored")


def add_launch_arguments(p: argparse.ArgumentParser) -> None:
    """detectron2's launch flags, as tools/train_net.py has them."""
    # processes per machine (one per GPU; on CPU, gloo processes)
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine")
    p.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    p.add_argument("--machine-rank", type=int, default=0, help="this machine's rank")
    # rendezvous of the processes: auto (one machine), tcp://HOST:PORT, file:///path
    p.add_argument("--dist-url", default="auto", help="process group URL (default auto)")


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    """Conditions every hit must meet (personsearch.apps.search.filters)."""
    # camera names (index --camera, or the dataset's camera_id); repeatable: any of them
    p.add_argument("--camera", action="append", default=[], help="camera (repeatable)")
    # sources by label, folder/video path or name; repeatable: any of them
    p.add_argument("--source", action="append", default=[], help="source (repeatable)")
    # time range (video frames): seconds or ISO 8601, inclusive
    p.add_argument("--time-from", default=None, help="earliest time (s or ISO 8601)")
    p.add_argument("--time-to", default=None, help="latest time (s or ISO 8601)")
    # the image's path relative to its folder (or the video file name) starts with this
    p.add_argument("--path-prefix", default=None, help="relative path prefix")
    # detection score at least this
    p.add_argument("--min-score", type=float, default=None, help="minimum detection score")
    # the model's per-detection uncertainty at most this (UGAS with OUTPUT_VARIANCE)
    p.add_argument("--max-uncertainty", type=float, default=None, help="maximum uncertainty")


def search_filter(args: argparse.Namespace):
    """The :class:`~personsearch.apps.search.SearchFilter` of the query flags."""
    from personsearch.apps.search import SearchFilter
    from personsearch.apps.search.filters import parse_time

    return SearchFilter(
        cameras=args.camera,
        sources=args.source,
        time_from=None if args.time_from is None else parse_time(args.time_from, "--time-from"),
        time_to=None if args.time_to is None else parse_time(args.time_to, "--time-to"),
        path_prefix=args.path_prefix,
        min_score=args.min_score,
        max_uncertainty=args.max_uncertainty,
    )


def ann_params(args: argparse.Namespace) -> Dict[str, int]:
    """The approximate index parameters given on the command line."""
    for flag in ("nlist", "pq_m", "nprobe", "rerank"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    return {"nlist": args.nlist, "m": args.pq_m, "nprobe": args.nprobe, "rerank": args.rerank}


def _dataset_records(name: str, register_json) -> List[Dict]:
    from detectron2.data import DatasetCatalog

    import personsearch  # noqa: F401  (registers the built-in splits)
    from personsearch.utils.cli import register_json_datasets, unregistered_datasets_message

    register_json_datasets(register_json)
    message = unregistered_datasets_message([name])
    if message:
        raise ValueError(message)
    return DatasetCatalog.get(name)


# ------------------------------------------------------------------------------------------------
# index
# ------------------------------------------------------------------------------------------------
def _image_source(args):
    """(root, relative paths, skipped files, source record, cameras) of --images or --dataset;
    cameras: relative path -> camera name of the records that carry a camera_id."""
    from personsearch.apps.search import folder_image_source, records_image_source

    if args.images:
        return folder_image_source(args.images, args.camera, exclude=[args.index])
    records = _dataset_records(args.dataset, args.register_json)
    if not records:
        raise ValueError(f"--dataset {args.dataset!r} has no images")
    return records_image_source(records, args.dataset, args.camera)


def _local_weights(weights: str) -> str:
    if not weights:
        raise ValueError(
            "index: MODEL.WEIGHTS is empty; give the trained model as a trailing override, e.g. "
            "'MODEL.WEIGHTS output/demo/train/model_final.pth' (random weights cannot be searched)"
        )
    if os.path.isfile(weights):
        return weights
    from detectron2.utils.file_io import PathManager

    try:
        local = PathManager.get_local_path(weights)
    except Exception as e:  # download failures come in many types
        raise FileNotFoundError(f"MODEL.WEIGHTS {weights!r} cannot be found or fetched: {e}") from e
    if not os.path.isfile(local):
        raise FileNotFoundError(f"MODEL.WEIGHTS file not found: {weights!r}")
    return local


def _check_index_arguments(args: argparse.Namespace) -> None:
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
    from personsearch import get_person_search_cfg
    from personsearch.apps.search import SearchIndex, model_fingerprint
    from personsearch.apps.search.filters import parse_time
    from personsearch.apps.search.sources import VideoReader
    from personsearch.utils.device import check_device

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
    from detectron2.engine import launch

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
    import torch

    from personsearch import get_person_search_cfg
    from personsearch.apps.search import Indexer, SearchIndex
    from personsearch.apps.search import distributed as dist
    from personsearch.apps.search import update_ann
    from personsearch.engine import PersonSearchPredictor
    from personsearch.utils.comm import leave_process_group

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


# ------------------------------------------------------------------------------------------------
# query
# ------------------------------------------------------------------------------------------------
def _query_specs(args) -> List:
    from personsearch.apps.search import QuerySpec, dataset_query_specs

    if args.image:
        stem = os.path.splitext(os.path.basename(args.image))[0]
        return [QuerySpec(args.image, args.box, stem)]
    if args.box is not None:
        raise ValueError("--box goes with --image (dataset queries have their own boxes)")
    specs = []
    for spec in args.dataset_query:
        name, sep, indices = spec.rpartition(":")
        if not sep or not name or not indices:
            raise ValueError(f"--dataset-query {spec!r}: expected NAME:I or NAME:I,J,K")
        try:
            wanted = [int(i) for i in indices.split(",")]
        except ValueError:
            raise ValueError(f"--dataset-query {spec!r}: query indices must be integers") from None
        records = _dataset_records(name, args.register_json)
        try:
            specs += dataset_query_specs(name, records, wanted)
        except ValueError as e:
            raise ValueError(f"--dataset-query: {e}") from None
    return specs


def _print_hits(label: str, query: Dict, hits, total: int, settings: str) -> None:
    box = ", ".join(f"{v:.0f}" for v in query["box"])
    print(f"\nquery {label} ({query['spec'].image}, box [{box}]): top {len(hits)} of {total} "
          f"detections ({settings})")  # fmt: skip
    print(f"{'rank':>4} {'score':>7} {'cosine':>7} {'det':>5}  source")
    for h in hits:
        b = ", ".join(f"{v:.0f}" for v in h.box)
        mark = " (CBGM)" if h.cbgm else ""
        print(f"{h.rank:>4} {h.score:>7.4f} {h.cosine:>7.4f} {h.det_score:>5.2f}  {h.where} "
              f"[{b}]{mark}")  # fmt: skip


def run_query(args: argparse.Namespace) -> Dict:
    from personsearch.apps.search import (
        GallerySearch,
        SearchIndex,
        embed_queries,
        load_hit_pictures,
        predictor_for_index,
        write_query_report,
    )
    from personsearch.apps.search.filters import CompiledFilter
    from personsearch.apps.search.sources import check_image_file

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.cbgm and (args.cbgm_k1 < 1 or args.cbgm_k2 < 1):
        raise ValueError(f"CBGM needs --cbgm-k1 >= 1 and --cbgm-k2 >= 1, got {args.cbgm_k1}, "
                         f"{args.cbgm_k2}")  # fmt: skip
    specs = _query_specs(args)
    for s in specs:
        check_image_file(s.image, "--image")
        if args.cbgm and s.box is None:
            raise ValueError(
                "--cbgm needs a query box in a full scene image (--box x1 y1 x2 y2): the context "
                "is the other people of the query image"
            )
    filters = search_filter(args)
    for flag in ("nprobe", "rerank"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    index = SearchIndex.open(args.index)
    search = GallerySearch(
        index, backend=args.backend, cws=args.cws, verify=args.verify,
        nprobe=args.nprobe or None, rerank=args.rerank or None,
    )  # fmt: skip
    if not filters.is_empty:
        CompiledFilter(filters, index, search.columns)  # a bad filter fails before the model loads
    predictor = predictor_for_index(index, args.weights, args.device)
    queries = embed_queries(
        predictor,
        specs,
        with_context=args.cbgm,
        score_thresh=index.manifest["settings"]["score_thresh"],
        k2=args.cbgm_k2,
    )
    results = search.search(
        queries, args.top_k, args.cbgm, args.cbgm_k1, exclude_query_image=args.exclude_query_image,
        filters=filters,
    )  # fmt: skip
    num_dets = search.columns.num_live
    out_dir = args.output or os.path.join(args.index, "reports")
    os.makedirs(out_dir, exist_ok=True)
    mode = ("CWS" if args.cws else "cosine") + (
        f", CBGM k1={args.cbgm_k1} k2={args.cbgm_k2}" if args.cbgm else ""
    )
    settings = {
        "index": os.path.abspath(args.index),
        "detections in the index": num_dets,
        "images/frames": index.num_items,
        "model weights": index.manifest["model"]["weights"],
        "model fingerprint": index.manifest["model"]["fingerprint"][:16],
        "score": mode,
        "backend": f"{search.backend} ({search.last_strategy})",
        "filter": filters.describe(),
        "query image excluded": args.exclude_query_image,
    }
    reports = []
    for q, hits in zip(queries, results):
        label = q["spec"].label
        _print_hits(label, q, hits, num_dets, f"{search.backend}, {mode}, filter: "
                    f"{filters.describe()}")  # fmt: skip
        sheet, report = write_query_report(
            out_dir, q, hits, load_hit_pictures(search, hits), settings
        )
        print(f"contact sheet: {sheet}")
        print(f"report: {report}")
        reports.append({"label": label, "hits": hits, "report": report, "contact_sheet": sheet})
    return {"queries": reports}


# ------------------------------------------------------------------------------------------------
# info
# ------------------------------------------------------------------------------------------------
def run_info(args: argparse.Namespace) -> Dict:
    from personsearch.apps.search import AnnIndex, SearchIndex

    with SearchIndex.open(args.index) as index:
        m = index.manifest
        rows, dets = index.num_rows, index.num_dets
        print(f"index {args.index} (format version {m['version']}, updated {index.updated})")
        print(f"  model weights {m['model']['weights']} (fingerprint "
              f"{m['model']['fingerprint'][:16]})")  # fmt: skip
        print(f"  score threshold {m['settings']['score_thresh']}, embedding size {index.dim}")
        print(f"  {index.num_items} images/frames, {dets} detections, {index.num_commits} "
              f"commits; optional fields: {', '.join(index.fields()) or 'none'}")  # fmt: skip
        if rows > dets:
            print(f"  {rows - dets} dead rows (entries of changed or removed files, "
                  f"{(rows - dets) * index.row_bytes / 2**20:.1f} MiB)")  # fmt: skip
        sizes = {n: os.path.getsize(os.path.join(args.index, n))
                 for n in ("embeddings.f16", "index.sqlite")}  # fmt: skip
        ann_line = "none (exact search)"
        if AnnIndex.exists(index):
            ann = AnnIndex.load(index)
            ann_line = ann.describe()
            sizes["ann"] = ann.meta["bytes"]
        print(f"  approximate index: {ann_line}")
        per = ", ".join(f"{k} {v / max(1, dets):.0f}" for k, v in sizes.items())
        print(f"  bytes per detection: {per}")
        for line in index.sources_summary():
            print(f"  source {line}")
        return {"items": index.num_items, "detections": dets, "rows": rows}


def run_ann(args: argparse.Namespace) -> Dict:
    from personsearch.apps.search import SearchIndex, update_ann

    manifest = SearchIndex.read_manifest(args.index) if SearchIndex.exists(args.index) else None
    if manifest is None:
        SearchIndex.open(args.index)  # the error for a missing index
    with SearchIndex.open_for_writing(
        args.index, manifest["model"], {"score_thresh": manifest["settings"]["score_thresh"]}
    ) as index:
        ann = update_ann(index, args.kind, ann_params(args), rebuild=args.rebuild)
        print(f"approximate index of {args.index}: {ann.describe()}")
        return {"ann": ann.meta}


def run_verify(args: argparse.Namespace) -> Dict:
    from personsearch.apps.search import AnnIndex, SearchIndex

    with SearchIndex.open(args.index) as index:
        res = index.verify(progress=True)
        if AnnIndex.exists(index):
            AnnIndex.load(index)
            res["ann"] = 1
        print(f"index {args.index}: {res['commits']} commits, {res['rows']} rows, "
              f"{res['bytes'] / 2**20:.1f} MiB checked: OK")  # fmt: skip
        return res


def run_migrate(args: argparse.Namespace) -> Dict:
    from personsearch.apps.search.legacy import migrate_v1

    if not os.path.isdir(args.index):
        raise FileNotFoundError(f"Search index {args.index!r}: folder not found")
    res = migrate_v1(args.index)
    print(f"migrated {args.index} to format version 2: {res['items']} images/frames, "
          f"{res['detections']} detections from {res['shards']} shards")  # fmt: skip
    return res


def _last_line(e: BaseException) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else repr(e)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, OSError, ImportError) as e:  # bad files, arguments, indexes, faiss
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ProcessFailed as e:  # a process of a multi-process run failed (its traceback above)
        print(f"error: {_last_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: every shard committed so far is kept; run the same command again to "
            "continue",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
