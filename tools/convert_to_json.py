#!/usr/bin/env python
"""Convert any registered person-search split to the person-search JSON format.

The format is described in ``docs/DATASET_FORMAT.md``. Examples::

    python tools/convert_to_json.py --dataset prw_test --output prw_test.json
    python tools/convert_to_json.py --dataset cuhk_sysu_test --output cuhk_test_g100.json \\
        --gallery-size 100

For CUHK-SYSU test splits (metadata ``protocol == "cuhk_sysu"``) each query gets the gallery of the
official ``TestG{N}.mat`` file as ``gallery_image_ids``; with ``--gallery-size 0`` no per-query
gallery is written and a query is searched among every other image (the "full" gallery). Other
splits (PRW, synthetic, JSON) keep their queries as they are.

``file_name`` is stored relative to ``--image-root`` (by default the folder the image ids are
relative to, so image ids are kept); load the file back with the same image root, which the tool
prints.
"""

import argparse
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.logger import setup_logger

import personsearch  # noqa: F401  (registers the built-in splits)
from personsearch.data.datasets.json_writer import save_person_search_json
from personsearch.utils.cli import (
    add_register_json_argument,
    register_json_datasets,
    unregistered_datasets_message,
)

logger = logging.getLogger("personsearch.tools.convert_to_json")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="registered split, e.g. cuhk_sysu_test")
    parser.add_argument("--output", required=True, help="the JSON file to write")
    parser.add_argument(
        "--gallery-size",
        type=int,
        default=100,
        help="CUHK-SYSU splits only: gallery size N of the TestG{N}.mat protocol attached to each "
        "query (default 100); 0 writes no per-query galleries (every other image is the gallery)",
    )
    parser.add_argument(
        "--image-root",
        default=None,
        help="store file names relative to this folder (default: the folder that the image ids "
        "are relative to, else the common folder of all images)",
    )
    add_register_json_argument(parser)
    args = parser.parse_args(argv)
    register_json_datasets(args.register_json)
    message = unregistered_datasets_message([args.dataset])
    if message:
        parser.error(message)
    return args


def default_image_root(records: Sequence[Dict]) -> str:
    """The folder to store file names relative to.

    When every ``file_name`` is ``<root>/<image_id>`` for one ``root``, that root (so the image ids
    survive the round trip); otherwise the deepest folder holding every image, with a warning.
    """
    if not records:
        raise ValueError("no records")
    roots = set()
    for r in records:
        path, image_id = os.path.normpath(r["file_name"]), os.path.normpath(r["image_id"])
        if os.path.isabs(image_id) or not path.endswith(os.sep + image_id):
            break
        roots.add(path[: -len(image_id) - 1])
        if len(roots) > 1:
            break
    else:
        return roots.pop()
    root = os.path.commonpath([os.path.dirname(os.path.abspath(r["file_name"])) for r in records])
    logger.warning(
        "The image ids are not paths relative to one folder; file names are stored relative to "
        "%s and become the image ids when the JSON file is loaded.",
        root,
    )
    return root


def attach_cuhk_sysu_galleries(records: List[Dict], root: str, gallery_size: int) -> int:
    """Give every query the gallery of CUHK-SYSU's ``TestG{gallery_size}.mat`` protocol.

    Args:
        records: the test split's records; their queries' ``query_index`` i must be query i of
            the protocol file. Modified in place (``gallery_image_ids`` added to each query).
        root: the CUHK-SYSU dataset folder.
        gallery_size: N of ``TestG{N}.mat``.

    Returns:
        The number of queries that received a gallery.

    Raises:
        ValueError: the protocol's queries do not match the records' queries, or a gallery
            image is not in the split.
    """
    from personsearch.data.datasets.cuhk_sysu import load_cuhk_sysu_protocol

    protocol = load_cuhk_sysu_protocol(root, gallery_size)
    queries = {q["query_index"]: (r, q) for r in records for q in r.get("queries", [])}
    if sorted(queries) != list(range(len(protocol))):
        raise ValueError(
            f"CUHK-SYSU TestG{gallery_size} under {root!r} has {len(protocol)} queries but the "
            f"split's query indices are not 0..{len(protocol) - 1} ({len(queries)} queries)"
        )
    image_ids = {r["image_id"] for r in records}
    for index, entry in enumerate(protocol):
        record, query = queries[index]
        if entry["query"]["image_id"] != record["image_id"] or not np.allclose(
            entry["query"]["bbox"], query["bbox"], atol=1.0
        ):
            raise ValueError(
                f"CUHK-SYSU TestG{gallery_size} query {index} ({entry['query']['image_id']}, "
                f"{list(entry['query']['bbox'])}) does not match the split's query {index} "
                f"({record['image_id']}, {list(query['bbox'])})"
            )
        gallery = [g["image_id"] for g in entry["gallery"]]
        missing = [g for g in gallery if g not in image_ids]
        if missing:
            raise ValueError(
                f"CUHK-SYSU TestG{gallery_size} query {index}: gallery images not in the split: "
                f"{missing[:5]}"
            )
        query["gallery_image_ids"] = gallery
    return len(protocol)


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Run the conversion; returns the path of the written JSON file."""
    setup_logger(name="personsearch", abbrev_name="ps")
    args = parse_args(argv)
    records = DatasetCatalog.get(args.dataset)
    if not records:
        raise SystemExit(f"dataset {args.dataset!r} has no images; nothing to convert")
    metadata = MetadataCatalog.get(args.dataset)
    info = {"source_dataset": args.dataset}
    if metadata.get("protocol") == "cuhk_sysu" and args.gallery_size > 0:
        n = attach_cuhk_sysu_galleries(records, metadata.root, args.gallery_size)
        info["gallery_size"] = args.gallery_size
        logger.info("attached TestG%d galleries to %d queries", args.gallery_size, n)
    image_root = args.image_root or default_image_root(records)
    info["image_root"] = image_root
    save_person_search_json(records, args.output, image_root=image_root, info=info)
    num_queries = sum(len(r.get("queries", [])) for r in records)
    print(
        f"Wrote {args.output}: {len(records)} images, "
        f"{sum(len(r['annotations']) for r in records)} boxes, {num_queries} queries.\n"
        f"Image root: {image_root}\n"
        f"Use it with: register_person_search_json('NAME', {args.output!r}, {image_root!r})"
    )
    return args.output


if __name__ == "__main__":
    main(sys.argv[1:])
