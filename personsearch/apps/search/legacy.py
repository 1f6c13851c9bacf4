"""Format version 1 indexes (``manifest.json`` listing ``shards/*.npz``) and their conversion to
version 2 in place (``tools/search.py migrate``).

Version 1 kept every array in uncompressed ``.npz`` shards (``feats`` (N, D) f16, ``boxes``,
``scores``, ``det_item``, ``item_source``, ``item_path``, ``item_sha1``, ``item_frame``,
``item_time``, ``item_hw``) and the sources, shard list and sizes in the manifest.

Migration reads and checks every shard (sizes against the manifest, zip CRCs), writes the version 2
files next to them through :class:`~personsearch.apps.search.index.SearchIndex` (one commit per
shard, same model and settings), then replaces the manifest (the switch) and deletes the shards. An
interrupted migration leaves the version 1 manifest in place; running it again starts over.
"""

import contextlib
import fcntl
import json
import logging
import os
import shutil
import zipfile
from typing import Any, Dict, List

import numpy as np

from personsearch.utils.file_io import atomic_write
from personsearch.utils.serialization import load_arrays

from .entries import Entries
from .errors import SearchIndexError
from .index import DATABASE, EMBEDDINGS, FORMAT, LOCK, MANIFEST, SearchIndex

__all__ = ["migrate_v1", "read_v1_shards"]

logger = logging.getLogger(__name__)

_V1_FIELDS = ("feats", "boxes", "scores", "det_item", "item_source", "item_path", "item_sha1",
              "item_frame", "item_time", "item_hw")  # fmt: skip


def _read_v1_manifest(path: str) -> Dict[str, Any]:
    file = os.path.join(path, MANIFEST)
    try:
        with open(file, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SearchIndexError(f"{file!r} cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SearchIndexError(f"{file!r} is not a personsearch search-index manifest")
    if manifest.get("version") != 1:
        raise SearchIndexError(
            f"Search index {path!r} has format version {manifest.get('version')!r}, not 1: "
            "nothing to migrate"
        )
    for key, typ in (("model", dict), ("settings", dict), ("sources", list), ("shards", list)):
        if not isinstance(manifest.get(key), typ):
            raise SearchIndexError(f"{file!r}: '{key}' is missing or not a {typ.__name__}")
    return manifest


def read_v1_shards(path: str, manifest: Dict[str, Any]) -> List[Entries]:
    """Every shard of a version 1 index, checked, as :class:`Entries` (no uncertainty, camera).

    Raises:
        SearchIndexError: a shard missing, truncated or damaged; the message names it.
    """
    out = []
    for shard in manifest["shards"]:
        file = os.path.join(path, shard["file"])
        if not os.path.isfile(file):
            raise SearchIndexError(f"version 1 shard {file!r} listed in the manifest is missing")
        if os.path.getsize(file) != shard["bytes"]:
            raise SearchIndexError(
                f"version 1 shard {file!r} has {os.path.getsize(file)} bytes, the manifest says "
                f"{shard['bytes']}: the file is truncated or was changed"
            )
        try:
            with load_arrays(file) as npz:
                v = {k: npz[k] for k in _V1_FIELDS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise SearchIndexError(
                f"version 1 shard {file!r} cannot be read ({type(e).__name__}: {e})"
            ) from e
        n, m = len(v["scores"]), len(v["item_source"])
        entries = Entries(
            uncertainty=np.full(n, np.nan, np.float32),
            item_camera=np.full(m, "", dtype=str),
            **v,
        )
        entries.validate(file, manifest["settings"].get("dim"))
        out.append(entries)
    return out


def migrate_v1(path: str, progress: bool = True) -> Dict[str, int]:
    """Convert the version 1 index in ``path`` to version 2 in place.

    Returns:
        ``{"items", "detections", "shards"}`` converted.

    Raises:
        SearchIndexError: not a version 1 index, a damaged shard (nothing is changed then), or
        the index is being written by another process.
    """
    manifest = _read_v1_manifest(path)
    with open(os.path.join(path, LOCK), "a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise SearchIndexError(
                f"Search index {path!r} is being written by another process ({LOCK} is locked)"
            ) from e
        return _migrate_locked(path, manifest, progress)


def _migrate_locked(path: str, manifest: Dict[str, Any], progress: bool) -> Dict[str, int]:
    parts = read_v1_shards(path, manifest)
    # the version 2 files are built under a temporary folder, then moved next to the manifest
    work = os.path.join(path, ".migrate")
    if os.path.exists(work):
        shutil.rmtree(work)
    settings = {"score_thresh": manifest["settings"]["score_thresh"],
                "dim": manifest["settings"]["dim"]}  # fmt: skip
    items = dets = 0
    with SearchIndex.open_for_writing(work, manifest["model"], settings) as index:
        ids = {}
        for i, src in enumerate(manifest["sources"]):
            ids[i] = index.source_id(src)
        bar = parts
        if progress and len(parts) > 1:
            from tqdm import tqdm

            bar = tqdm(parts, desc="migrating", unit="shard")
        for e in bar:
            e.item_source = np.array([ids[int(s)] for s in e.item_source], dtype=np.int32)
            index.append(e)
            items += e.num_items
            dets += e.num_dets
    created = SearchIndex.read_manifest(work)
    created["created"] = manifest.get("created", created["created"])
    for name in (DATABASE, EMBEDDINGS):
        os.replace(os.path.join(work, name), os.path.join(path, name))
    # the switch: the version 2 manifest replaces the version 1 one atomically
    data = json.dumps(created, indent=1).encode("utf-8")
    with atomic_write(os.path.join(path, MANIFEST), "wb") as f:
        f.write(data)
    shutil.rmtree(work)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(os.path.join(path, "shards"))
    logger.info(f"{path}: migrated {items} images/frames, {dets} detections to format version 2")
    return {"items": items, "detections": dets, "shards": len(parts)}
