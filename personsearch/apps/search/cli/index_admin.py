"""``tools/search.py info | ann | verify | migrate``: inspect, index approximately, check and
convert an existing index (no model is loaded)."""

import argparse
import os
from typing import Dict

from ..ann import AnnIndex, update_ann
from ..index import SearchIndex
from ..legacy import migrate_v1
from .options import ann_params


def run_info(args: argparse.Namespace) -> Dict:
    """Print what an index holds (model, sizes, bytes per detection, sources)."""
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
    """Build or update the approximate (FAISS) index of an existing index."""
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
    """CRC-check every committed embedding, the database and the approximate index."""
    with SearchIndex.open(args.index) as index:
        res = index.verify(progress=True)
        if AnnIndex.exists(index):
            AnnIndex.load(index)
            res["ann"] = 1
        print(f"index {args.index}: {res['commits']} commits, {res['rows']} rows, "
              f"{res['bytes'] / 2**20:.1f} MiB checked: OK")  # fmt: skip
        return res


def run_migrate(args: argparse.Namespace) -> Dict:
    """Convert a format-1 index (.npz shards) to the current format, in place."""
    if not os.path.isdir(args.index):
        raise FileNotFoundError(f"Search index {args.index!r}: folder not found")
    res = migrate_v1(args.index)
    print(f"migrated {args.index} to format version 2: {res['items']} images/frames, "
          f"{res['detections']} detections from {res['shards']} shards")  # fmt: skip
    return res
