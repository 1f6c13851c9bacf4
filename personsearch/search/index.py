"""On-disk search index: detections, embeddings and their source images/frames.

Layout of an index folder::

    OUT/
      manifest.json           the only source of truth, replaced atomically (tmp + fsync + rename)
      shards/shard_000000.npz one file per committed batch of images/frames, never modified
      shards/shard_000001.npz
      .lock                   held (flock) by the process writing the index

A shard is an uncompressed ``.npz`` (``np.load(allow_pickle=False)``) of:

==================  ===========  ======================================================
array               shape/dtype  meaning
==================  ===========  ======================================================
``feats``           (N, D) f16   L2-normalised embeddings of the detections
``boxes``           (N, 4) f32   XYXY boxes in original-image pixels
``scores``          (N,) f32     detection scores (already >= the index's score threshold)
``det_item``        (N,) i64     which image/frame of the shard each detection is in (sorted)
``item_source``     (M,) i32     index into ``manifest["sources"]``
``item_path``       (M,) str     path relative to the source's root (images), video file name
``item_sha1``       (M,) str     SHA-1 of the image file / of the video file
``item_frame``      (M,) i64     video frame index, -1 for still images
``item_time``       (M,) f64     video timestamp in seconds, NaN for still images
``item_hw``         (M, 2) i32   image/frame height and width
==================  ===========  ======================================================

Images and frames without detections are stored too (M counts them), so they are not processed
again. A shard is written to ``*.tmp`` and renamed, then the manifest that lists it is replaced:
a run interrupted at any point leaves the previous manifest and every shard it lists intact; shard
files the manifest does not list are leftovers and are deleted the next time the index is opened
for writing. Dropping entries (changed or removed files) writes the affected shards again without
them (new names), switches the manifest, then deletes the old files.

``manifest.json`` holds the format and version, the model (config dump, weights path, SHA-1 of the
weights file and of the model-relevant part of the config, and their combined fingerprint), the
settings (score threshold, embedding size), the sources (image folders, datasets, videos) and the
list of shards with their item/detection counts and byte sizes (a truncated shard is detected
before it is read; a damaged one fails the zip CRC check when read).
"""

import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass, fields
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..utils.serialization import load_arrays
from .sources import file_sha1

__all__ = [
    "FORMAT",
    "VERSION",
    "Entries",
    "IndexMismatchError",
    "SearchIndex",
    "SearchIndexError",
    "model_fingerprint",
]

logger = logging.getLogger(__name__)

FORMAT = "personsearch-search-index"
VERSION = 1
MANIFEST = "manifest.json"
SHARD_DIR = "shards"
LOCK = ".lock"


class SearchIndexError(ValueError):
    """An index folder that cannot be used: missing, corrupt, truncated, empty, locked."""


class IndexMismatchError(SearchIndexError):
    """An index built with another model, config or settings than the current run's."""


# ------------------------------------------------------------------------------------------------
# entries: the arrays of a shard, or of a whole index
# ------------------------------------------------------------------------------------------------
_DET_FIELDS = ("feats", "boxes", "scores", "det_item")
_ITEM_FIELDS = ("item_source", "item_path", "item_sha1", "item_frame", "item_time", "item_hw")


@dataclass
class Entries:
    """Detections (N) and the images/frames (M) they were found in. See the module docstring for
    each array; ``det_item`` indexes the item arrays and is non-decreasing."""

    feats: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    det_item: np.ndarray
    item_source: np.ndarray
    item_path: np.ndarray
    item_sha1: np.ndarray
    item_frame: np.ndarray
    item_time: np.ndarray
    item_hw: np.ndarray

    @property
    def num_dets(self) -> int:
        """N."""
        return int(len(self.scores))

    @property
    def num_items(self) -> int:
        """M."""
        return int(len(self.item_source))

    @property
    def dim(self) -> int:
        """D."""
        return int(self.feats.shape[1])

    @classmethod
    def empty(cls, dim: int) -> "Entries":
        """No detections, no items, embeddings of size ``dim``."""
        return cls.from_items(np.zeros((0, dim), np.float16), [], [], [], [], [])

    @classmethod
    def from_items(
        cls,
        feats: np.ndarray,
        per_item: Sequence[Tuple[np.ndarray, np.ndarray]],
        sources: Sequence[int],
        paths: Sequence[str],
        sha1s: Sequence[str],
        frames: Sequence[Tuple[int, float, int, int]],
    ) -> "Entries":
        """Build entries from per-item detections.

        Args:
            feats: (N, D) embeddings of all items' detections, item after item.
            per_item: per item ``(boxes (n_i, 4), scores (n_i,))``, sum n_i = N.
            sources, paths, sha1s: per item its source id, path and content hash.
            frames: per item ``(frame, time_s, height, width)``.
        """
        counts = np.array([len(s) for _, s in per_item], dtype=np.int64)
        m = len(per_item)
        return cls(
            feats=np.ascontiguousarray(feats, dtype=np.float16),
            boxes=np.concatenate([b for b, _ in per_item] + [np.zeros((0, 4))]).astype(np.float32),
            scores=np.concatenate([s for _, s in per_item] + [np.zeros(0)]).astype(np.float32),
            det_item=np.repeat(np.arange(m, dtype=np.int64), counts),
            item_source=np.asarray(sources, dtype=np.int32).reshape(m),
            item_path=np.asarray(paths, dtype=str).reshape(m),
            item_sha1=np.asarray(sha1s, dtype=str).reshape(m),
            item_frame=np.asarray([f[0] for f in frames], dtype=np.int64).reshape(m),
            item_time=np.asarray([f[1] for f in frames], dtype=np.float64).reshape(m),
            item_hw=np.asarray([f[2:] for f in frames], dtype=np.int32).reshape(m, 2),
        )

    @classmethod
    def concat(cls, parts: Sequence["Entries"], dim: int) -> "Entries":
        """One :class:`Entries` of several (``det_item`` renumbered)."""
        if not parts:
            return cls.empty(dim)
        offsets = np.cumsum([0] + [p.num_items for p in parts[:-1]])
        values = {}
        for f in fields(cls):
            arrays = [getattr(p, f.name) for p in parts]
            if f.name == "det_item":
                arrays = [a + o for a, o in zip(arrays, offsets)]
            values[f.name] = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        return cls(**values)

    def select_items(self, keep: np.ndarray) -> "Entries":
        """The entries of the items where ``keep`` (M,) is True, with their detections."""
        keep = np.asarray(keep, dtype=bool)
        new_id = np.cumsum(keep) - 1
        det_keep = keep[self.det_item]
        values = {f: getattr(self, f)[keep] for f in _ITEM_FIELDS}
        values.update({f: getattr(self, f)[det_keep] for f in ("feats", "boxes", "scores")})
        values["det_item"] = new_id[self.det_item[det_keep]]
        return Entries(**values)

    def select_dets_none(self) -> "Entries":
        """The same items without any detection (to keep only the item table in memory)."""
        values = {f: getattr(self, f) for f in _ITEM_FIELDS}
        values.update(
            feats=self.feats[:0],
            boxes=self.boxes[:0],
            scores=self.scores[:0],
            det_item=self.det_item[:0],
        )
        return Entries(**values)

    def item_ranges(self) -> np.ndarray:
        """(M + 1,) offsets: item m's detections are rows ``[r[m], r[m + 1])``."""
        return np.searchsorted(self.det_item, np.arange(self.num_items + 1), side="left")

    def validate(self, where: str, dim: Optional[int] = None) -> None:
        """Check shapes, dtypes and consistency; ``SearchIndexError`` naming ``where`` if not."""
        n, m = self.num_dets, self.num_items

        def fail(msg):
            raise SearchIndexError(f"{where}: {msg}; the index is damaged (rebuild it)")

        if self.feats.ndim != 2 or self.feats.dtype != np.float16:
            fail(f"'feats' must be (N, D) float16, got {self.feats.shape} {self.feats.dtype}")
        if dim is not None and self.feats.shape[1] != dim:
            fail(f"embeddings have size {self.feats.shape[1]}, the manifest says {dim}")
        expected = {
            "feats": (n, self.feats.shape[1]),
            "boxes": (n, 4),
            "scores": (n,),
            "det_item": (n,),
            "item_source": (m,),
            "item_path": (m,),
            "item_sha1": (m,),
            "item_frame": (m,),
            "item_time": (m,),
            "item_hw": (m, 2),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                fail(f"'{name}' has shape {getattr(self, name).shape}, expected {shape}")
        if n and (self.det_item.min() < 0 or self.det_item.max() >= m):
            fail("'det_item' refers to images/frames that are not in the shard")
        if n > 1 and np.any(np.diff(self.det_item) < 0):
            fail("'det_item' is not sorted")
        if not (np.isfinite(self.scores).all() and np.isfinite(self.boxes).all()):
            fail("boxes or scores are not finite")


# ------------------------------------------------------------------------------------------------
# model fingerprint
# ------------------------------------------------------------------------------------------------
def model_config_dump(cfg) -> str:
    """The part of a config that decides detections and embeddings, as YAML: ``MODEL`` without
    ``WEIGHTS`` (hashed separately, by content) and ``DEVICE``, ``INPUT``, and
    ``TEST.DETECTIONS_PER_IMAGE``."""
    from detectron2.config import CfgNode

    model = cfg.MODEL.clone()
    model.defrost()
    model.WEIGHTS = ""
    model.DEVICE = ""
    part = CfgNode(
        {
            "MODEL": model,
            "INPUT": cfg.INPUT.clone(),
            "TEST": CfgNode({"DETECTIONS_PER_IMAGE": cfg.TEST.DETECTIONS_PER_IMAGE}),
        }
    )
    return part.dump()


def model_fingerprint(cfg, weights: str) -> Dict[str, str]:
    """What identifies the model of an index.

    Args:
        cfg: the config the index is built with.
        weights: the weights file actually loaded.

    Returns:
        ``{"fingerprint", "weights", "weights_sha1", "config_sha1", "config"}``: ``config`` is the
        full config dump (to rebuild the model at query time), ``config_sha1`` the SHA-1 of
        :func:`model_config_dump`, ``fingerprint`` the SHA-1 of both hashes.
    """
    weights_sha1 = file_sha1(weights)
    config_sha1 = hashlib.sha1(model_config_dump(cfg).encode()).hexdigest()
    return {
        "fingerprint": hashlib.sha1(f"{weights_sha1}:{config_sha1}".encode()).hexdigest(),
        "weights": os.path.abspath(weights),
        "weights_sha1": weights_sha1,
        "config_sha1": config_sha1,
        "config": cfg.dump(),
    }


# ------------------------------------------------------------------------------------------------
# the index folder
# ------------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_bytes(path: str, write) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


class SearchIndex:
    """An index folder (see the module docstring). Open it with :meth:`open` (read) or
    :meth:`open_for_writing` (create or extend; holds the folder's lock until :meth:`close`).

    Attributes:
        path: the folder.
        manifest: the parsed ``manifest.json``.
    """

    def __init__(self, path: str, manifest: Dict[str, Any], lock_file=None):
        self.path = path
        self.manifest = manifest
        self._lock_file = lock_file

    # -- opening --------------------------------------------------------------------------------
    @staticmethod
    def manifest_path(path: str) -> str:
        """Where the manifest of the index folder ``path`` is."""
        return os.path.join(path, MANIFEST)

    @classmethod
    def exists(cls, path: str) -> bool:
        """Whether ``path`` holds an index (a manifest)."""
        return os.path.isfile(cls.manifest_path(path))

    @classmethod
    def open(cls, path: str) -> "SearchIndex":
        """Open an existing index for reading (the manifest is read and checked, shards are read
        by :meth:`load`).

        Raises:
            FileNotFoundError: no index at ``path``. SearchIndexError: the manifest is corrupt.
        """
        if not cls.exists(path):
            what = "folder not found" if not os.path.exists(path) else "no manifest.json in it"
            raise FileNotFoundError(f"Search index {path!r}: {what} (build it with 'index')")
        return cls(path, cls._read_manifest(path))

    @classmethod
    def open_for_writing(
        cls, path: str, model: Dict[str, str], settings: Dict[str, Any]
    ) -> "SearchIndex":
        """Create the index, or open it to add to it.

        Args:
            path: the folder (created if missing).
            model: :func:`model_fingerprint` of the model used now.
            settings: ``{"score_thresh": float, "dim": int}``.

        Raises:
            IndexMismatchError: the index was built with another model, config or settings.
            SearchIndexError: the manifest is corrupt, or another process is writing the index.
        """
        if os.path.exists(path) and not os.path.isdir(path):
            raise NotADirectoryError(f"--index must be a folder, {path!r} is a file")
        if not cls.exists(path) and os.path.isdir(path) and os.listdir(path):
            others = set(os.listdir(path)) - {SHARD_DIR, LOCK, MANIFEST + ".tmp"}
            if others:
                raise SearchIndexError(
                    f"--index {path!r} is a non-empty folder without a manifest.json, not a "
                    "search index; use a new or empty folder"
                )
        os.makedirs(os.path.join(path, SHARD_DIR), exist_ok=True)
        lock_file = open(os.path.join(path, LOCK), "a")
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            lock_file.close()
            raise SearchIndexError(
                f"Search index {path!r} is being written by another process ({LOCK} is locked)"
            ) from e
        try:
            if cls.exists(path):
                index = cls(path, cls._read_manifest(path), lock_file)
                index.check_compatible(model, settings)
                index.manifest["model"]["weights"] = model["weights"]  # may have moved
            else:
                manifest = {
                    "format": FORMAT,
                    "version": VERSION,
                    "created": _now(),
                    "updated": _now(),
                    "model": dict(model),
                    "settings": dict(settings),
                    "sources": [],
                    "shards": [],
                    "next_shard": 0,
                    "totals": {"items": 0, "detections": 0},
                }
                index = cls(path, manifest, lock_file)
                index.commit()
            index._remove_leftovers()
            return index
        except BaseException:
            lock_file.close()
            raise

    def close(self) -> None:
        """Release the write lock (no-op for a read-only index)."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @classmethod
    def _read_manifest(cls, path: str) -> Dict[str, Any]:
        file = cls.manifest_path(path)
        try:
            with open(file, "rb") as f:
                manifest = json.loads(f.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SearchIndexError(
                f"Search index manifest {file!r} is corrupt or truncated ({type(e).__name__}: {e})"
            ) from e
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise SearchIndexError(f"{file!r} is not a personsearch search-index manifest")
        if manifest.get("version") != VERSION:
            raise SearchIndexError(
                f"{file!r}: index format version {manifest.get('version')!r}; this code reads "
                f"version {VERSION} (rebuild the index)"
            )
        required = {
            "model": dict,
            "settings": dict,
            "sources": list,
            "shards": list,
            "next_shard": int,
        }
        for key, typ in required.items():
            if not isinstance(manifest.get(key), typ):
                raise SearchIndexError(
                    f"{file!r}: '{key}' is missing or not a {typ.__name__}; the manifest is damaged"
                )
        for key in ("fingerprint", "weights", "weights_sha1", "config_sha1", "config"):
            if not isinstance(manifest["model"].get(key), str):
                raise SearchIndexError(f"{file!r}: model.{key} is missing; the manifest is damaged")
        dim = manifest["settings"].get("dim")
        if not isinstance(dim, int) or dim < 1:
            raise SearchIndexError(f"{file!r}: settings.dim is missing or invalid: {dim!r}")
        for i, s in enumerate(manifest["shards"]):
            if not (
                isinstance(s, dict)
                and isinstance(s.get("file"), str)
                and all(isinstance(s.get(k), int) for k in ("items", "detections", "bytes"))
            ):
                raise SearchIndexError(f"{file!r}: shards[{i}] is malformed: {s!r}")
        return manifest

    def check_compatible(self, model: Dict[str, str], settings: Dict[str, Any]) -> None:
        """Raise :class:`IndexMismatchError` unless ``model`` and ``settings`` are this index's."""
        mine = self.manifest["model"]
        if mine["fingerprint"] != model["fingerprint"]:
            diffs = []
            if mine["weights_sha1"] != model["weights_sha1"]:
                diffs.append(
                    f"weights {mine['weights']!r} (sha1 {mine['weights_sha1'][:12]}) vs "
                    f"{model['weights']!r} (sha1 {model['weights_sha1'][:12]})"
                )
            if mine["config_sha1"] != model["config_sha1"]:
                diffs.append(
                    f"model config sha1 {mine['config_sha1'][:12]} vs {model['config_sha1'][:12]}"
                )
            raise IndexMismatchError(
                f"Search index {self.path!r} was built by another model (fingerprint "
                f"{mine['fingerprint'][:12]}; this run: {model['fingerprint'][:12]}): "
                f"{'; '.join(diffs)}. Embeddings of different models cannot be compared: use the "
                "index's model or a new --index folder."
            )
        for key, value in settings.items():
            if self.manifest["settings"].get(key) != value:
                raise IndexMismatchError(
                    f"Search index {self.path!r} was built with {key}="
                    f"{self.manifest['settings'].get(key)!r}, this run uses {value!r}; use the "
                    "same value or a new --index folder."
                )

    # -- reading --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """D, the embedding size."""
        return int(self.manifest["settings"]["dim"])

    @property
    def num_dets(self) -> int:
        """Detections in the index (from the manifest)."""
        return sum(s["detections"] for s in self.manifest["shards"])

    @property
    def num_items(self) -> int:
        """Images and frames in the index (from the manifest)."""
        return sum(s["items"] for s in self.manifest["shards"])

    def load_shard(self, shard: Dict[str, Any]) -> Entries:
        """Read and check one shard of the manifest.

        Args:
            shard: an entry of ``manifest["shards"]``.

        Raises:
            SearchIndexError: missing, truncated or damaged file; the message names it.
        """
        file = os.path.join(self.path, shard["file"])
        if not os.path.isfile(file):
            raise SearchIndexError(
                f"Search index {self.path!r}: shard {file!r} listed in the manifest is missing"
            )
        size = os.path.getsize(file)
        if size != shard["bytes"]:
            raise SearchIndexError(
                f"Search index shard {file!r} has {size} bytes, the manifest says "
                f"{shard['bytes']}: the file is truncated or was changed"
            )
        try:
            with load_arrays(file) as npz:
                values = {k: npz[k] for k in _DET_FIELDS + _ITEM_FIELDS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise SearchIndexError(
                f"Search index shard {file!r} cannot be read ({type(e).__name__}: {e}); the "
                "index is damaged (rebuild it)"
            ) from e
        entries = Entries(**values)
        entries.validate(file, self.dim)
        if entries.num_items != shard["items"] or entries.num_dets != shard["detections"]:
            raise SearchIndexError(
                f"Search index shard {file!r} holds {entries.num_items} images/frames and "
                f"{entries.num_dets} detections, the manifest says {shard['items']} and "
                f"{shard['detections']}; the index is damaged (rebuild it)"
            )
        if entries.num_items and entries.item_source.max() >= len(self.manifest["sources"]):
            raise SearchIndexError(f"{file!r}: refers to a source the manifest does not list")
        return entries

    def iter_shards(self) -> Iterator[Tuple[Dict, Entries]]:
        """``(manifest entry, entries)`` of every shard, in order."""
        for shard in list(self.manifest["shards"]):
            yield shard, self.load_shard(shard)

    def load(self, progress: bool = False) -> Entries:
        """Every shard, concatenated (embeddings stay float16).

        Args:
            progress: show a tqdm bar over the shards.
        """
        shards = self.manifest["shards"]
        if progress and len(shards) > 1:
            from tqdm import tqdm

            shards = tqdm(shards, desc="loading index", unit="shard")
        parts = [self.load_shard(s) for s in shards]
        return Entries.concat(parts, self.dim)

    def items(self) -> Entries:
        """The image/frame arrays of every shard. Whole shards are read (and so checked: a damaged
        index is reported before anything is added to it); the detection arrays are left empty."""
        parts = [e.select_dets_none() for _, e in self.iter_shards()]
        return Entries.concat(parts, self.dim)

    # -- sources --------------------------------------------------------------------------------
    def source_id(self, source: Dict[str, Any]) -> int:
        """Index of ``source`` in ``manifest["sources"]`` (matched on ``kind`` + ``root``/``path``),
        added if new; its other keys are updated. Saved with the next :meth:`commit`."""
        key = ("root", "path")
        for i, s in enumerate(self.manifest["sources"]):
            if s.get("kind") == source["kind"] and all(s.get(k) == source.get(k) for k in key):
                s.update(source)
                return i
        self.manifest["sources"].append(dict(source))
        return len(self.manifest["sources"]) - 1

    # -- writing --------------------------------------------------------------------------------
    def _require_lock(self) -> None:
        if self._lock_file is None:
            raise RuntimeError("the index was opened read-only; use SearchIndex.open_for_writing")

    def commit(self) -> None:
        """Write the manifest atomically."""
        self._require_lock()
        m = self.manifest
        m["updated"] = _now()
        m["totals"] = {"items": self.num_items, "detections": self.num_dets}
        data = json.dumps(m, indent=1).encode("utf-8")
        _atomic_write_bytes(self.manifest_path(self.path), lambda f: f.write(data))

    def _write_shard(self, entries: Entries) -> Dict[str, Any]:
        entries.validate("new shard", self.dim)
        name = f"{SHARD_DIR}/shard_{self.manifest['next_shard']:06d}.npz"
        self.manifest["next_shard"] += 1
        file = os.path.join(self.path, name)
        arrays = {f.name: getattr(entries, f.name) for f in fields(Entries)}
        _atomic_write_bytes(file, lambda f: np.savez(f, **arrays))
        return {
            "file": name,
            "items": entries.num_items,
            "detections": entries.num_dets,
            "bytes": os.path.getsize(file),
        }

    def append(self, entries: Entries) -> None:
        """Add a shard and commit the manifest that lists it (then nothing of it can be lost)."""
        self._require_lock()
        if entries.num_items == 0:
            self.commit()
            return
        self.manifest["shards"].append(self._write_shard(entries))
        self.commit()

    def drop_items(self, drop) -> Tuple[int, int]:
        """Remove images/frames (and their detections) from the index.

        Args:
            drop: ``f(entries) -> (M,) bool`` mask of a shard's items to remove.

        Returns:
            ``(items, detections)`` removed. Affected shards are rewritten without them; the
            manifest is committed once, then the replaced files are deleted.
        """
        self._require_lock()
        new_shards, old_files, removed = [], [], [0, 0]
        for shard, entries in self.iter_shards():
            mask = np.asarray(drop(entries), dtype=bool)
            if not mask.any():
                new_shards.append(shard)
                continue
            kept = entries.select_items(~mask)
            removed[0] += entries.num_items - kept.num_items
            removed[1] += entries.num_dets - kept.num_dets
            old_files.append(shard["file"])
            if kept.num_items:
                new_shards.append(self._write_shard(kept))
        if old_files:
            self.manifest["shards"] = new_shards
            self.commit()
            for f in old_files:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.path, f))
        return removed[0], removed[1]

    def _remove_leftovers(self) -> None:
        """Delete shard files the manifest does not list (an interrupted run's)."""
        listed = {os.path.normpath(s["file"]) for s in self.manifest["shards"]}
        folder = os.path.join(self.path, SHARD_DIR)
        stale = [
            n for n in os.listdir(folder) if os.path.normpath(f"{SHARD_DIR}/{n}") not in listed
        ]
        for n in stale:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, n))
        tmp = self.manifest_path(self.path) + ".tmp"
        if os.path.exists(tmp):
            os.remove(tmp)
        if stale:
            logger.info(
                f"{self.path}: removed {len(stale)} unfinished shard file(s) of an earlier run"
            )

    def sources_summary(self) -> List[str]:
        """One line per source, for logs."""
        return [f"{s['kind']}: {s.get('root') or s.get('path')}" for s in self.manifest["sources"]]
