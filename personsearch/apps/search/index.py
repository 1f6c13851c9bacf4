"""On-disk search index (format version 2): embeddings in one memory-mappable file, metadata in
SQLite, an optional approximate index.

Layout of an index folder::

    OUT/
      manifest.json      format, version, the model (fingerprint, config) and settings; written
                         once (atomically: tmp + fsync + rename), its presence makes OUT an index
      index.sqlite       the metadata and the commit log (personsearch.apps.search.database)
      embeddings.f16     (rows, D) little-endian float16, L2-normalised, append-only; row r is
                         the detection with ``detections.row = r``
      ann/               optional approximate index over the rows (personsearch.apps.search.ann)
      .lock              held (flock) by the process writing the index

Committing a batch of images/frames: its embeddings are appended to ``embeddings.f16`` and
fsync'ed, then one SQLite transaction inserts its items, detections and a ``commits`` record (row
range and CRC-32 of the bytes) and advances ``meta.rows``. A crash before that transaction ends
leaves bytes past ``meta.rows``: they are cut off the next time the index is opened for writing.
Nothing committed is ever rewritten; removing images (changed or deleted files) deletes their
metadata and leaves their embeddings as dead rows that no search returns.

Checks: every open compares the sizes (a truncated ``embeddings.f16`` is an error naming it);
SQLite reports a damaged database; :meth:`SearchIndex.verify` recomputes the CRC-32 of every
commit (``tools/search.py verify``; an exact search, which reads every row anyway, verifies first).

Version 1 indexes (``.npz`` shards listed in the manifest) are refused with a message naming
``tools/search.py migrate`` (:mod:`personsearch.apps.search.legacy`).
"""

import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import os
import shutil
import zlib
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from personsearch.utils.file_io import atomic_write

from . import database as db
from .entries import Entries
from .errors import IndexMismatchError, SearchIndexError
from .sources import file_sha1

__all__ = [
    "FORMAT",
    "VERSION",
    "Columns",
    "IndexMismatchError",
    "SearchIndex",
    "SearchIndexError",
    "model_fingerprint",
]

logger = logging.getLogger(__name__)

FORMAT = "personsearch-search-index"
VERSION = 2
MANIFEST = "manifest.json"
DATABASE = "index.sqlite"
EMBEDDINGS = "embeddings.f16"
ANN_DIR = "ann"
LOCK = ".lock"
# files an interrupted creation may leave in a folder that has no manifest yet
_OWN_FILES = {DATABASE, DATABASE + "-journal", EMBEDDINGS, LOCK, MANIFEST + ".tmp", ANN_DIR}
# fields a filter can use that an index may lack (set in meta 'fields' when first stored)
OPTIONAL_FIELDS = ("camera", "time", "uncertainty")


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
# helpers
# ------------------------------------------------------------------------------------------------
def now() -> str:
    """UTC time, ISO 8601, seconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Columns:
    """What a search keeps in memory: per-row and per-item arrays (R = committed rows, M = items;
    read with :meth:`SearchIndex.columns`).

    Attributes:
        item: (R,) int64 item id of each row, -1 for a dead row (removed image/frame).
        score: (R,) float32 detection score (0 for a dead row).
        uncertainty: (R,) float32, NaN where the model gave none.
        live: (R,) bool.
        item_id: (M,) int64 item ids, increasing.
        item_source: (M,) int32 source ids.
        item_time: (M,) float64 times, NaN if none.
        item_camera: (M,) int32 index into ``camera_names``, -1 if none.
        item_first: (M,) int64 first row. item_count: (M,) int64 rows.
        camera_names: the distinct camera names.
    """

    item: np.ndarray
    score: np.ndarray
    uncertainty: np.ndarray
    live: np.ndarray
    item_id: np.ndarray
    item_source: np.ndarray
    item_time: np.ndarray
    item_camera: np.ndarray
    item_first: np.ndarray
    item_count: np.ndarray
    camera_names: List[str]

    @property
    def num_rows(self) -> int:
        """R."""
        return int(len(self.item))

    @property
    def num_live(self) -> int:
        """Rows that are not dead."""
        return int(self.live.sum())

    def item_positions(self, ids: np.ndarray) -> np.ndarray:
        """Positions in the item arrays of item ids (which must exist)."""
        return np.searchsorted(self.item_id, ids)


class SearchIndex:
    """An index folder (see the module docstring). Open it with :meth:`open` (read) or
    :meth:`open_for_writing` (create or extend; holds the folder's lock until :meth:`close`).

    Attributes:
        path: the folder.
        manifest: the parsed ``manifest.json``.
        con: the SQLite connection.
    """

    def __init__(self, path: str, manifest: Dict[str, Any], con, lock_file=None):
        self.path = path
        self.manifest = manifest
        self.con = con
        self._lock_file = lock_file
        self._emb_file = None  # open for appending (writer only)
        self.db_file = os.path.join(path, DATABASE)
        self.emb_path = os.path.join(path, EMBEDDINGS)

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
        """Open an existing index for reading.

        Raises:
            FileNotFoundError: no index at ``path``. SearchIndexError: damaged, truncated, or of
            format version 1.
        """
        if not cls.exists(path):
            what = "folder not found" if not os.path.exists(path) else "no manifest.json in it"
            raise FileNotFoundError(f"Search index {path!r}: {what} (build it with 'index')")
        manifest = cls.read_manifest(path)
        con = db.connect(os.path.join(path, DATABASE), readonly=True)
        index = cls(path, manifest, con)
        try:
            index._check_sizes(truncate_tail=False)
        except BaseException:
            index.close()
            raise
        return index

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
            SearchIndexError: damaged, of format version 1, or another process writes it.
        """
        if os.path.exists(path) and not os.path.isdir(path):
            raise NotADirectoryError(f"--index must be a folder, {path!r} is a file")
        if not cls.exists(path) and os.path.isdir(path) and os.listdir(path):
            others = set(os.listdir(path)) - _OWN_FILES
            if others:
                raise SearchIndexError(
                    f"--index {path!r} is a non-empty folder without a manifest.json, not a "
                    "search index; use a new or empty folder"
                )
        os.makedirs(path, exist_ok=True)
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
                manifest = cls.read_manifest(path)
                con = db.connect(os.path.join(path, DATABASE), readonly=False)
                index = cls(path, manifest, con, lock_file)
                index.check_compatible(model, settings)
                index._check_sizes(truncate_tail=True)
                if manifest["model"]["weights"] != model["weights"]:  # the file may have moved
                    manifest["model"]["weights"] = model["weights"]
                    index._write_manifest()
            else:
                index = cls._create(path, model, settings, lock_file)
            index._emb_file = open(index.emb_path, "r+b")
            with contextlib.suppress(FileNotFoundError):
                os.remove(cls.manifest_path(path) + ".tmp")
            return index
        except BaseException:
            lock_file.close()
            raise

    @classmethod
    def _create(cls, path: str, model, settings, lock_file) -> "SearchIndex":
        """A new index in ``path`` (leftovers of an interrupted creation are replaced first); the
        manifest is written last."""
        for name in _OWN_FILES - {LOCK}:
            file = os.path.join(path, name)
            if os.path.isdir(file):
                shutil.rmtree(file)
            elif os.path.exists(file):
                os.remove(file)
        db_file = os.path.join(path, DATABASE)
        con = db.connect(db_file, readonly=False)
        db.create_schema(con, db_file)
        with open(os.path.join(path, EMBEDDINGS), "wb") as f:
            os.fsync(f.fileno())
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created": now(),
            "model": dict(model),
            "settings": dict(settings),
        }
        index = cls(path, manifest, con, lock_file)
        index._write_manifest()
        return index

    def _write_manifest(self) -> None:
        data = json.dumps(self.manifest, indent=1).encode("utf-8")
        with atomic_write(self.manifest_path(self.path), "wb") as f:
            f.write(data)

    def close(self) -> None:
        """Close the database and release the write lock."""
        if self._emb_file is not None:
            self._emb_file.close()
            self._emb_file = None
        if self.con is not None:
            self.con.close()
            self.con = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @classmethod
    def read_manifest(cls, path: str) -> Dict[str, Any]:
        """The checked manifest of the index folder ``path``.

        Raises:
            SearchIndexError: corrupt, not an index manifest, or of another format version.
        """
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
        if manifest.get("version") == 1:
            raise SearchIndexError(
                f"Search index {path!r} has format version 1 (.npz shards, written by an earlier "
                f"personsearch); this code reads version {VERSION}. Convert it in place with "
                f"'python tools/search.py migrate --index {path}' (keeps every entry, needs no "
                "model), or build a new index."
            )
        if manifest.get("version") != VERSION:
            raise SearchIndexError(
                f"{file!r}: index format version {manifest.get('version')!r}; this code reads "
                f"version {VERSION} (rebuild the index)"
            )
        for key in ("model", "settings"):
            if not isinstance(manifest.get(key), dict):
                raise SearchIndexError(
                    f"{file!r}: '{key}' is missing or not a dict; the manifest is damaged"
                )
        for key in ("fingerprint", "weights", "weights_sha1", "config_sha1", "config"):
            if not isinstance(manifest["model"].get(key), str):
                raise SearchIndexError(f"{file!r}: model.{key} is missing; the manifest is damaged")
        dim = manifest["settings"].get("dim")
        if not isinstance(dim, int) or dim < 1:
            raise SearchIndexError(f"{file!r}: settings.dim is missing or invalid: {dim!r}")
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

    def _check_sizes(self, truncate_tail: bool) -> None:
        """``embeddings.f16`` must hold the committed rows; bytes past them (an interrupted
        commit) are cut off when ``truncate_tail``."""
        if not os.path.isfile(self.emb_path):
            raise SearchIndexError(
                f"Search index {self.path!r}: embeddings file {self.emb_path!r} is missing"
            )
        size = os.path.getsize(self.emb_path)
        need = self.num_rows * self.row_bytes
        if size < need:
            raise SearchIndexError(
                f"Search index embeddings file {self.emb_path!r} has {size} bytes, the index's "
                f"{self.num_rows} rows need {need}: the file is truncated or was changed"
            )
        if size > need and truncate_tail:
            with open(self.emb_path, "r+b") as f:
                f.truncate(need)
                os.fsync(f.fileno())
            logger.info(
                f"{self.path}: removed {size - need} bytes of an unfinished commit of an earlier "
                "run from the end of the embeddings file"
            )

    # -- reading --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """D, the embedding size."""
        return int(self.manifest["settings"]["dim"])

    @property
    def row_bytes(self) -> int:
        """Bytes of one row of ``embeddings.f16``."""
        return 2 * self.dim

    def _one(self, sql: str, params: Sequence = ()):
        with db.db_errors(self.db_file):
            return self.con.execute(sql, params).fetchone()[0]

    def _all(self, sql: str, params: Sequence = ()) -> List[Tuple]:
        with db.db_errors(self.db_file):
            return self.con.execute(sql, params).fetchall()

    @property
    def num_rows(self) -> int:
        """Committed rows of ``embeddings.f16`` (live and dead)."""
        with db.db_errors(self.db_file):
            return int(db.get_meta(self.con, "rows", "0"))

    @property
    def num_dets(self) -> int:
        """Detections in the index (live rows)."""
        return int(self._one("SELECT count(*) FROM detections"))

    @property
    def num_items(self) -> int:
        """Images and frames in the index."""
        return int(self._one("SELECT count(*) FROM items"))

    @property
    def num_commits(self) -> int:
        """Committed batches."""
        return int(self._one("SELECT count(*) FROM commits"))

    @property
    def updated(self) -> Optional[str]:
        """Time of the last commit."""
        return self._one("SELECT max(time) FROM commits")

    @property
    def sources(self) -> List[Dict[str, Any]]:
        """Every source: ``{"id", "kind", "root" or "path", ...}``."""
        with db.db_errors(self.db_file):
            return db.source_rows(self.con)

    def fields(self) -> List[str]:
        """The optional fields (:data:`OPTIONAL_FIELDS`) some detection or item of the index
        has."""
        with db.db_errors(self.db_file):
            return json.loads(db.get_meta(self.con, "fields", "[]"))

    def embeddings(self) -> np.ndarray:
        """(R, D) float16 read-only memory map of the committed rows (empty array if R = 0)."""
        rows = self.num_rows
        if rows == 0:
            return np.zeros((0, self.dim), np.float16)
        return np.memmap(self.emb_path, dtype="<f2", mode="r", shape=(rows, self.dim))

    def columns(self, progress: bool = False, chunk: int = 1 << 18) -> Columns:
        """The arrays of :class:`Columns`, read from the database in one read transaction (the
        scores and uncertainties from the commits' blobs, the rest from the items table).

        Args:
            progress: show a tqdm bar.
            chunk: items fetched per query.
        """
        with db.db_errors(self.db_file):
            self.con.execute("BEGIN")
            try:
                rows = int(db.get_meta(self.con, "rows", "0"))
                score = np.zeros(rows, np.float32)
                unc = np.full(rows, np.nan, np.float32)
                for first, n, s_blob, u_blob in self.con.execute(
                    "SELECT first_row, num_rows, scores, uncertainty FROM commits"
                ):
                    score[first : first + n] = np.frombuffer(s_blob, "<f4", n)
                    unc[first : first + n] = np.frombuffer(u_blob, "<f4", n)
                m = int(self.con.execute("SELECT count(*) FROM items").fetchone()[0])
                names = [r[0] for r in self.con.execute(
                    "SELECT DISTINCT camera FROM items WHERE camera IS NOT NULL ORDER BY camera"
                )]  # fmt: skip
                code = {n: i for i, n in enumerate(names)}
                num = np.empty((m, 5), np.float64)
                cams = np.empty(m, np.int32)
                cur = self.con.execute(
                    "SELECT id, source, coalesce(time, 'nan'), first_row, num_rows, camera FROM "
                    "items ORDER BY id"
                )
                bar = None
                if progress and m > chunk:
                    from tqdm import tqdm

                    bar = tqdm(total=m, desc="reading images/frames", unit="item")
                at = 0
                while True:
                    part = cur.fetchmany(chunk)
                    if not part:
                        break
                    num[at : at + len(part)] = [p[:5] for p in part]
                    cams[at : at + len(part)] = [code.get(p[5], -1) for p in part]
                    at += len(part)
                    if bar is not None:
                        bar.update(len(part))
                if bar is not None:
                    bar.close()
            finally:
                self.con.execute("COMMIT")
        item_id = num[:at, 0].astype(np.int64)
        first, count = num[:at, 3].astype(np.int64), num[:at, 4].astype(np.int64)
        item = np.full(rows, -1, np.int64)
        nz = np.flatnonzero(count > 0)
        nz = nz[np.argsort(first[nz], kind="stable")]
        item[ranges_to_rows(np.stack([first[nz], count[nz]], 1))] = np.repeat(
            item_id[nz], count[nz]
        )
        live = item >= 0
        score[~live] = 0.0
        return Columns(
            item=item,
            score=score,
            uncertainty=unc,
            live=live,
            item_id=item_id,
            item_source=num[:at, 1].astype(np.int32),
            item_time=num[:at, 2],
            item_camera=cams[:at],
            item_first=first,
            item_count=count,
            camera_names=names,
        )

    def load(self, return_rows: bool = False):
        """Every live detection and every image/frame as one :class:`Entries` (reads the whole
        index into memory: for small indexes, tests and conversions).

        Args:
            return_rows: also return the (N,) row of each detection.
        """
        items = self._all(
            "SELECT id, source, path, sha1, frame, coalesce(time, 'nan'), height, width, "
            "coalesce(camera, '') FROM items ORDER BY id"
        )
        dets = self._all(
            "SELECT row, item, x1, y1, x2, y2, score, coalesce(uncertainty, 'nan') FROM "
            "detections ORDER BY row"
        )
        m = len(items)
        ids = np.array([i[0] for i in items], dtype=np.int64)
        darr = np.array(dets, dtype=np.float64).reshape(-1, 8)
        rows = darr[:, 0].astype(np.int64)
        feats = self.embeddings()[rows] if len(rows) else np.zeros((0, self.dim), np.float16)
        entries = Entries(
            feats=np.ascontiguousarray(feats, dtype=np.float16),
            boxes=darr[:, 2:6].astype(np.float32),
            scores=darr[:, 6].astype(np.float32),
            uncertainty=darr[:, 7].astype(np.float32),
            det_item=np.searchsorted(ids, darr[:, 1].astype(np.int64)).astype(np.int64),
            item_source=np.array([i[1] for i in items], dtype=np.int32).reshape(m),
            item_path=np.array([i[2] for i in items], dtype=str).reshape(m),
            item_sha1=np.array([i[3] for i in items], dtype=str).reshape(m),
            item_frame=np.array([i[4] for i in items], dtype=np.int64).reshape(m),
            item_time=np.array([i[5] for i in items], dtype=np.float64).reshape(m),
            item_hw=np.array([i[6:8] for i in items], dtype=np.int32).reshape(m, 2),
            item_camera=np.array([i[8] for i in items], dtype=str).reshape(m),
        )
        return (entries, rows) if return_rows else entries

    def item_ranges(self, item_ids: Iterable[int]) -> Dict[int, Tuple[int, int]]:
        """``{item: (first_row, num_rows)}`` of the given items (missing ones left out)."""
        ids = sorted({int(i) for i in item_ids})
        out = {}
        for s in range(0, len(ids), 900):
            part = ids[s : s + 900]
            q = ",".join("?" * len(part))
            for i, first, n in self._all(
                f"SELECT id, first_row, num_rows FROM items WHERE id IN ({q})", part
            ):
                out[int(i)] = (int(first), int(n))
        return out

    def rows_of_sha1(self, sha1: str) -> np.ndarray:
        """The live rows of every image/frame with content hash ``sha1`` (sorted)."""
        ranges = self._all(
            "SELECT first_row, num_rows FROM items WHERE sha1 = ? AND num_rows > 0", (sha1,)
        )
        return ranges_to_rows(ranges)

    def row_records(self, rows: Sequence[int]) -> Dict[int, Dict[str, Any]]:
        """Everything about the given rows (detection, image/frame, source), for hit lists.

        Returns:
            ``{row: {"box", "score", "uncertainty", "item", "path", "sha1", "frame", "time",
            "camera", "source"}}`` (``source`` the source dict, NaN time/uncertainty if none).
        """
        rows = sorted({int(r) for r in rows})
        sources = {s["id"]: s for s in self.sources}
        out = {}
        for s in range(0, len(rows), 900):
            part = rows[s : s + 900]
            q = ",".join("?" * len(part))
            for rec in self._all(
                "SELECT d.row, d.x1, d.y1, d.x2, d.y2, d.score, d.uncertainty, d.item, i.path, "
                "i.sha1, i.frame, i.time, i.camera, i.source FROM detections d JOIN items i ON "
                f"i.id = d.item WHERE d.row IN ({q})",
                part,
            ):
                out[int(rec[0])] = {
                    "box": [float(v) for v in rec[1:5]],
                    "score": float(rec[5]),
                    "uncertainty": float("nan") if rec[6] is None else float(rec[6]),
                    "item": int(rec[7]),
                    "path": rec[8],
                    "sha1": rec[9],
                    "frame": int(rec[10]),
                    "time": float("nan") if rec[11] is None else float(rec[11]),
                    "camera": rec[12] or "",
                    "source": sources[int(rec[13])],
                }
        return out

    def existing(self, source: int) -> Tuple[Dict[str, str], Dict[str, List[int]]]:
        """Of the items of ``source``: path -> sha1, and path -> frame indices."""
        sha1_of: Dict[str, str] = {}
        frames_of: Dict[str, List[int]] = {}
        for path, sha1, frame in self._all(
            "SELECT path, sha1, frame FROM items WHERE source = ?", (source,)
        ):
            sha1_of[path] = sha1
            frames_of.setdefault(path, []).append(int(frame))
        return sha1_of, frames_of

    def verify(self, progress: bool = False, chunk_bytes: int = 1 << 26) -> Dict[str, int]:
        """Recompute the CRC-32 of every commit's embeddings and check the database.

        Returns:
            ``{"commits", "rows", "bytes"}`` checked.

        Raises:
            SearchIndexError: a commit whose bytes changed (naming the file and the rows), or a
            damaged database.
        """
        with db.db_errors(self.db_file):
            result = self.con.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise SearchIndexError(
                f"Search index database {self.db_file!r} is damaged: {result}; rebuild the index"
            )
        commits = self._all("SELECT id, first_row, num_rows, crc32 FROM commits ORDER BY id")
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.num_rows * self.row_bytes, unit="B", unit_scale=True,
                       desc="verifying")  # fmt: skip
        total = 0
        with open(self.emb_path, "rb") as f:
            for cid, first, n, crc in commits:
                f.seek(first * self.row_bytes)
                left, value = n * self.row_bytes, 0
                while left:
                    block = f.read(min(left, chunk_bytes))
                    if not block:
                        break
                    value = zlib.crc32(block, value)
                    left -= len(block)
                    total += len(block)
                    if bar is not None:
                        bar.update(len(block))
                if left or value != crc:
                    raise SearchIndexError(
                        f"Search index embeddings file {self.emb_path!r}: rows {first}.."
                        f"{first + n - 1} (commit {cid}) fail their CRC-32 check; the file was "
                        "damaged or changed (rebuild the index)"
                    )
        if bar is not None:
            bar.close()
        return {"commits": len(commits), "rows": self.num_rows, "bytes": total}

    # -- sources --------------------------------------------------------------------------------
    def source_id(self, source: Dict[str, Any]) -> int:
        """Id of ``source`` (matched on ``kind`` + ``root``/``path``), added if new; its other keys
        are updated. Committed at once."""
        self._require_lock()
        kind = source["kind"]
        location = source.get("root") or source.get("path")
        label = source.get("label")
        info = json.dumps({k: v for k, v in source.items() if k not in ("label", "id")})
        with db.db_errors(self.db_file):
            self.con.execute("BEGIN IMMEDIATE")
            try:
                row = self.con.execute(
                    "SELECT id FROM sources WHERE kind = ? AND location = ?", (kind, location)
                ).fetchone()
                if row is None:
                    cur = self.con.execute(
                        "INSERT INTO sources(kind, location, label, info) VALUES (?, ?, ?, ?)",
                        (kind, location, label, info),
                    )
                    sid = int(cur.lastrowid)
                else:
                    sid = int(row[0])
                    self.con.execute(
                        "UPDATE sources SET label = ?, info = ? WHERE id = ?", (label, info, sid)
                    )
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
        return sid

    def sources_summary(self) -> List[str]:
        """One line per source, for logs."""
        out = []
        for s in self.sources:
            label = f" ({s['label']})" if s.get("label") else ""
            out.append(f"{s['kind']}: {s.get('root') or s.get('path')}{label}")
        return out

    # -- writing --------------------------------------------------------------------------------
    def _require_lock(self) -> None:
        if self._lock_file is None:
            raise RuntimeError("the index was opened read-only; use SearchIndex.open_for_writing")

    def append(self, entries: Entries) -> int:
        """Commit a batch of images/frames and their detections (then nothing of it can be lost).

        Returns:
            The first row given to the batch's detections.
        """
        self._require_lock()
        entries.validate("new batch of the index", self.dim)
        if entries.num_items == 0:
            return self.num_rows
        first = self.num_rows
        data = np.ascontiguousarray(entries.feats, dtype="<f2").tobytes()
        crc = zlib.crc32(data)
        f = self._emb_file
        f.seek(first * self.row_bytes)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        counts = np.bincount(entries.det_item, minlength=entries.num_items)
        starts = first + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        fields = set(self.fields())
        if np.isfinite(entries.uncertainty).any():
            fields.add("uncertainty")
        if np.isfinite(entries.item_time).any():
            fields.add("time")
        if (entries.item_camera != "").any():
            fields.add("camera")
        with db.db_errors(self.db_file):
            con = self.con
            con.execute("BEGIN IMMEDIATE")
            try:
                cid = con.execute(
                    "INSERT INTO commits(first_row, num_rows, crc32, items, time, scores, "
                    "uncertainty) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (first, entries.num_dets, crc, entries.num_items, now(),
                     entries.scores.astype("<f4").tobytes(),
                     entries.uncertainty.astype("<f4").tobytes()),
                ).lastrowid  # fmt: skip
                base = int(con.execute("SELECT coalesce(max(id), -1) + 1 FROM items").fetchone()[0])
                e = entries
                con.executemany(
                    "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        (
                            base + m,
                            int(e.item_source[m]),
                            str(e.item_path[m]),
                            str(e.item_sha1[m]),
                            int(e.item_frame[m]),
                            float(e.item_time[m]) if np.isfinite(e.item_time[m]) else None,
                            int(e.item_hw[m, 0]),
                            int(e.item_hw[m, 1]),
                            str(e.item_camera[m]) or None,
                            int(starts[m]),
                            int(counts[m]),
                            cid,
                        )
                        for m in range(e.num_items)
                    ),
                )
                unc = e.uncertainty.astype(np.float64)
                con.executemany(
                    "INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    zip(
                        range(first, first + e.num_dets),
                        (base + e.det_item).tolist(),
                        *e.boxes.astype(np.float64).T.tolist(),
                        e.scores.astype(np.float64).tolist(),
                        [None if not np.isfinite(u) else u for u in unc.tolist()],
                    ),
                )
                db.set_meta(con, "rows", first + e.num_dets)
                db.set_meta(con, "fields", json.dumps(sorted(fields)))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                with contextlib.suppress(OSError):
                    f.truncate(first * self.row_bytes)
                raise
        return first

    def drop_items(self, source: int, paths: Sequence[str]) -> Tuple[int, int]:
        """Remove the images/frames of ``source`` with the given paths, and their detections
        (one transaction; their embeddings stay as dead rows).

        Returns:
            ``(items, detections)`` removed.
        """
        self._require_lock()
        paths = sorted(set(paths))
        if not paths:
            return 0, 0
        removed = [0, 0]
        with db.db_errors(self.db_file):
            con = self.con
            con.execute("BEGIN IMMEDIATE")
            try:
                for s in range(0, len(paths), 900):
                    part = paths[s : s + 900]
                    q = ",".join("?" * len(part))
                    rows = con.execute(
                        f"SELECT id, first_row, num_rows FROM items WHERE source = ? AND path IN "
                        f"({q})",
                        [source, *part],
                    ).fetchall()
                    for item, first, n in rows:
                        if n:
                            con.execute(
                                "DELETE FROM detections WHERE row >= ? AND row < ?",
                                (first, first + n),
                            )
                        con.execute("DELETE FROM items WHERE id = ?", (item,))
                        removed[0] += 1
                        removed[1] += int(n)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return removed[0], removed[1]


def ranges_to_rows(ranges: Sequence[Tuple[int, int]]) -> np.ndarray:
    """Sorted rows of ``(first_row, num_rows)`` ranges (vectorised)."""
    if not len(ranges):
        return np.zeros(0, np.int64)
    arr = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    arr = arr[arr[:, 1] > 0]
    if not len(arr):
        return np.zeros(0, np.int64)
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    counts = arr[:, 1]
    offsets = np.repeat(arr[:, 0] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return offsets + np.arange(int(counts.sum()), dtype=np.int64)
