"""The command line of the search application: subcommands and their flags, a comment on each.

The flags are turned into library objects by :mod:`.options`; each subcommand runs one function of
:mod:`.index_command`, :mod:`.query_command` or :mod:`.index_admin`.
"""

import argparse

from personsearch.utils.cli import add_register_json_argument

from ..ann import ANN_KINDS
from ..backends import SEARCH_BACKENDS
from .index_admin import run_ann, run_info, run_migrate, run_verify
from .index_command import run_index
from .query_command import run_query


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    """The parser of ``tools/search.py``: one subcommand per command module, each bound to its
    ``run_*`` function (``args.func``).

    Args:
        description: the help text above the subcommands (the tool passes its docstring, which
            has the examples).
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
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
