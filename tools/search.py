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

    python tools/search.py info --index my_index      # what an index holds

``index`` is incremental (re-running it on a grown or changed folder processes only new and
changed files, by content hash) and resumable (work is committed shard by shard). ``query`` prints
the top hits and writes ``<label>_contact_sheet.png`` and a self-contained ``<label>_report.html``
per query into ``--output``. The index format is described in ``personsearch/search/index.py``.
"""

import argparse
import logging
import os
import sys
from typing import Dict, List, Optional

logger = logging.getLogger("personsearch.search")


# ------------------------------------------------------------------------------------------------
# arguments
# ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from personsearch.search import SEARCH_BACKENDS
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
    # images/frames per shard: the unit of work committed to disk
    p.add_argument("--shard-size", type=int, default=64, help="images per shard (default 64)")
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
    # search backend: exact chunked products, or FAISS IndexFlatIP (pip install faiss-cpu)
    p.add_argument("--backend", default="exact", choices=SEARCH_BACKENDS, help="default exact")
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
    return parser


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
    """(root, relative paths, skipped files, source record) of --images or --dataset."""
    from personsearch.search.sources import scan_image_folder

    if args.images:
        root = os.path.abspath(args.images)
        images, skipped = scan_image_folder(root, exclude=[args.index])
        return root, images, skipped, {"kind": "images", "root": root}
    records = _dataset_records(args.dataset, args.register_json)
    files = [os.path.abspath(r["file_name"]) for r in records]
    if not files:
        raise ValueError(f"--dataset {args.dataset!r} has no images")
    root = os.path.commonpath([os.path.dirname(f) for f in files])
    rel = sorted(os.path.relpath(f, root).replace(os.sep, "/") for f in files)
    return root, rel, [], {"kind": "images", "root": root, "dataset": args.dataset}


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


def run_index(args: argparse.Namespace) -> Dict:
    import torch

    from personsearch import get_person_search_cfg
    from personsearch.engine import PersonSearchPredictor
    from personsearch.search import Indexer, SearchIndex, model_fingerprint
    from personsearch.search.sources import VideoReader

    if args.every < 1:
        raise ValueError(f"--every must be >= 1, got {args.every}")
    if not 0.0 <= args.score_thresh <= 1.0:
        raise ValueError(f"--score-thresh must be in [0, 1], got {args.score_thresh}")
    if args.shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {args.shard_size}")
    # check the source before loading the model
    if args.video:
        VideoReader(args.video)
        image_source = None
    else:
        image_source = _image_source(args)
    cfg = get_person_search_cfg(args.config_file, args.opts)
    weights = _local_weights(cfg.MODEL.WEIGHTS)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("MODEL.DEVICE is cuda but CUDA is not available; add 'MODEL.DEVICE cpu'")
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    model = model_fingerprint(cfg, weights)
    predictor = PersonSearchPredictor(cfg)
    settings = {"score_thresh": float(args.score_thresh), "dim": predictor.embed_dim}
    with SearchIndex.open_for_writing(args.index, model, settings) as index:
        indexer = Indexer(index, predictor, args.score_thresh, args.shard_size)
        if args.video:
            stats = indexer.index_video(args.video, args.every)
            what = f"video {args.video} (every {args.every} frames)"
        else:
            root, images, skipped, source = image_source
            if not images:
                logger.warning(f"{root}: no image files found")
            stats = indexer.index_images(root, images, source, skipped)
            what = f"{len(images)} images under {root}"
        print(f"indexed {what}: {stats.summary()}")
        print(
            f"index {args.index}: {index.num_items} images/frames, {index.num_dets} detections, "
            f"{len(index.manifest['shards'])} shards"
        )
    return {"stats": stats, "items": index.num_items, "detections": index.num_dets}


# ------------------------------------------------------------------------------------------------
# query
# ------------------------------------------------------------------------------------------------
def _query_specs(args) -> List:
    from personsearch.search import QuerySpec

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
        by_index = {}
        for r in _dataset_records(name, args.register_json):
            for q in r.get("queries", []):
                by_index[int(q["query_index"])] = (r["file_name"], q["bbox"])
        for i in wanted:
            if i not in by_index:
                span = f"{min(by_index)}..{max(by_index)}" if by_index else "none"
                raise ValueError(f"--dataset-query: {name} has no query {i} (query indices {span})")
            file, box = by_index[i]
            specs.append(QuerySpec(file, box, f"{name}_q{i}"))
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
    import cv2

    from personsearch.search import (
        GallerySearch,
        SearchIndex,
        embed_queries,
        load_hit_pictures,
        predictor_for_index,
        render_contact_sheet,
        render_html,
    )
    from personsearch.search.report import hit_crop
    from personsearch.search.sources import check_image_file

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
    index = SearchIndex.open(args.index)
    search = GallerySearch(index, backend=args.backend, cws=args.cws)
    predictor = predictor_for_index(index, args.weights, args.device)
    queries = embed_queries(
        predictor,
        specs,
        with_context=args.cbgm,
        score_thresh=index.manifest["settings"]["score_thresh"],
        k2=args.cbgm_k2,
    )
    results = search.search(
        queries, args.top_k, args.cbgm, args.cbgm_k1, exclude_query_image=args.exclude_query_image
    )
    out_dir = args.output or os.path.join(args.index, "reports")
    os.makedirs(out_dir, exist_ok=True)
    mode = ("CWS" if args.cws else "cosine") + (
        f", CBGM k1={args.cbgm_k1} k2={args.cbgm_k2}" if args.cbgm else ""
    )
    settings = {
        "index": os.path.abspath(args.index),
        "detections searched": search.entries.num_dets,
        "images/frames": search.entries.num_items,
        "model weights": index.manifest["model"]["weights"],
        "model fingerprint": index.manifest["model"]["fingerprint"][:16],
        "score": mode,
        "backend": args.backend,
        "query image excluded": args.exclude_query_image,
    }
    reports = []
    for q, hits in zip(queries, results):
        label = q["spec"].label
        _print_hits(label, q, hits, search.entries.num_dets, f"{args.backend}, {mode}")
        scene = cv2.cvtColor(q["image"], cv2.COLOR_BGR2RGB)
        query_crop = hit_crop(scene, q["box"]) if q["spec"].box is not None else scene
        pictures = load_hit_pictures(search, hits)
        crops = [hit_crop(p, h.box) for p, h in zip(pictures, hits)]
        sheet = render_contact_sheet(
            os.path.join(out_dir, f"{label}_contact_sheet.png"), query_crop, label, hits, crops
        )
        report = render_html(
            os.path.join(out_dir, f"{label}_report.html"),
            f"Person search: {label}",
            {
                "label": label,
                "source": q["spec"].image,
                "box": q["box"],
                "crop": query_crop,
                "scene": scene if q["spec"].box is not None else None,
            },
            hits,
            crops,
            pictures,
            settings,
        )
        print(f"contact sheet: {sheet}")
        print(f"report: {report}")
        reports.append({"label": label, "hits": hits, "report": report, "contact_sheet": sheet})
    return {"queries": reports}


# ------------------------------------------------------------------------------------------------
# info
# ------------------------------------------------------------------------------------------------
def run_info(args: argparse.Namespace) -> Dict:
    from personsearch.search import SearchIndex

    index = SearchIndex.open(args.index)
    m = index.manifest
    print(f"index {args.index} (format version {m['version']}, updated {m.get('updated')})")
    print(f"  model weights {m['model']['weights']} (fingerprint {m['model']['fingerprint'][:16]})")
    print(f"  score threshold {m['settings']['score_thresh']}, embedding size {index.dim}")
    print(f"  {index.num_items} images/frames, {index.num_dets} detections, "
          f"{len(m['shards'])} shards")  # fmt: skip
    for line in index.sources_summary():
        print(f"  source {line}")
    return {"items": index.num_items, "detections": index.num_dets}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, OSError, ImportError) as e:  # bad files, arguments, indexes, faiss
        print(f"error: {e}", file=sys.stderr)
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
