#!/usr/bin/env python
"""Draw the ground truth of a registered person-search split.

Each identity gets its own colour and its person id; unlabeled people are thin grey boxes marked
``?``; query boxes are thick, white-outlined and labelled ``Q{query_index} id{person_id}`` below the
box. Writes one PNG per image (``OUTPUT/NAME/<image>.png``, original resolution) and a grid of all
of them (``OUTPUT/NAME_grid.png``), and prints the paths. Examples::

    python tools/visualize_data.py --dataset synthetic_train --num-images 4 --output out/vis
    python tools/visualize_data.py --dataset prw_test --image-ids c1s1_000151.jpg --output out/vis
    python tools/visualize_data.py --dataset cuhk_sysu_test --queries-only --num-images 9
"""

import argparse
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

import personsearch  # noqa: F401  (registers the built-in splits)
from personsearch.utils.cli import (
    add_register_json_argument,
    register_json_datasets,
    unregistered_datasets_message,
)
from personsearch.utils.visualizer import (
    add_caption,
    draw_record,
    fit_into,
    make_grid,
    read_image,
    resize_to_fit,
    save_image,
)
from personsearch.visualization.selection import output_name, select_records

logger = logging.getLogger("personsearch.tools.visualize_data")

GRID_CELL = (480, 360)  # width, height of one image in the grid picture


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="registered split, e.g. prw_train")
    parser.add_argument("--num-images", type=int, default=8, help="random images to draw")
    parser.add_argument("--image-ids", nargs="+", default=None, help="draw these images instead")
    parser.add_argument("--queries-only", action="store_true", help="sample images with queries")
    parser.add_argument("--output", default="output/visualize", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the image sample")
    parser.add_argument("--no-grid", action="store_true", help="write no grid picture")
    add_register_json_argument(parser)
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error("--num-images must be >= 1")
    register_json_datasets(args.register_json)
    message = unregistered_datasets_message([args.dataset])
    if message:
        parser.error(message)
    return args


def caption(record: Dict) -> str:
    """One-line summary of a record: image id, boxes, labeled, queries."""
    anns = record.get("annotations", [])
    labeled = sum(a["person_id"] >= 0 for a in anns)
    text = f"{record['image_id']}: {len(anns)} people ({labeled} labeled)"
    num_queries = len(record.get("queries", []))
    if num_queries:
        text += f", {num_queries} {'query' if num_queries == 1 else 'queries'}"
    return text


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    """Draw the selected images; returns the written paths (per-image PNGs, then the grid)."""
    setup_logger(name="personsearch", abbrev_name="ps")
    args = parse_args(argv)
    records = DatasetCatalog.get(args.dataset)
    try:
        selected = select_records(
            records, args.num_images, args.image_ids, args.seed, args.queries_only
        )
    except (KeyError, ValueError) as e:
        raise SystemExit(f"{args.dataset}: {e.args[0]}") from e

    out_dir = os.path.join(args.output, args.dataset)
    paths, drawn = [], []
    for record in tqdm(selected, desc="drawing", disable=len(selected) < 20):
        image = read_image(record["file_name"])
        if not args.no_grid:
            # draw the grid cell on the downsized image, so its labels stay readable
            small, scale = resize_to_fit(image, *GRID_CELL)
            cell = fit_into(draw_record(small, record, scale=scale), *GRID_CELL)
            drawn.append(add_caption(cell, caption(record)))
        draw_record(image, record)
        paths.append(save_image(os.path.join(out_dir, output_name(record["image_id"])), image))
    if not args.no_grid:
        grid = make_grid(drawn, cell_size=(drawn[0].shape[1], drawn[0].shape[0]))
        paths.append(save_image(os.path.join(args.output, f"{args.dataset}_grid.png"), grid))
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main(sys.argv[1:])
