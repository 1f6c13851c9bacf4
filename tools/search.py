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
``personsearch/apps/search/index.py``; the commands are
:mod:`personsearch.apps.search.cli`.
"""

import logging
import sys
from typing import List, Optional

from personsearch.apps.search import cli

try:  # what detectron2's launch raises in the parent when a process fails or dies
    from torch.multiprocessing.spawn import ProcessException as ProcessFailed
except ImportError:  # pragma: no cover
    ProcessFailed = RuntimeError


def build_parser():
    """The parser of the subcommands (:mod:`personsearch.apps.search.cli.parser`)."""
    return cli.build_parser(description=__doc__)


def _last_line(e: BaseException) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else repr(e)


def main(argv: Optional[List[str]] = None) -> int:
    """Run one subcommand: exit code 0, 2 on bad input (one ``error:`` line), 130 on Ctrl-C."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs each CPU-build fallback
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
