"""The SQLite metadata database of a search index (``index.sqlite``, standard-library ``sqlite3``).

Tables (``row`` is a detection's position in ``embeddings.f16``; the detections of an image or
frame occupy the consecutive rows ``first_row .. first_row + num_rows - 1``)::

    meta(key TEXT PRIMARY KEY, value TEXT)          rows: committed rows of embeddings.f16
    sources(id, kind, location, label, info)        one per image folder / dataset / video;
                                                    info: JSON (root, dataset, fps, sha1, ...)
    items(id, source, path, sha1, frame, time,      one per image or video frame; time NULL
          height, width, camera, first_row,         for still images, camera NULL if none
          num_rows, commit_id)
    detections(row PRIMARY KEY, item, x1, y1, x2,   one per stored detection; uncertainty NULL
               y2, score, uncertainty)              when the model outputs none
    commits(id, first_row, num_rows, crc32,         one per committed batch: the CRC-32 of its
            items, time, scores, uncertainty)       bytes in embeddings.f16, and its rows' scores
                                                    and uncertainties as float32 blobs (a copy of
                                                    the detections' columns written in the same
                                                    transaction: a search reads 10M rows' scores
                                                    in a second instead of half a minute)

Indexes: ``items(source, path)``, ``items(path)`` (path prefixes), ``items(time)``,
``items(camera)``, ``items(sha1)``. Removed images/frames leave their rows in
``embeddings.f16`` (dead rows, never returned) and are deleted from ``items`` and ``detections``.

Durability: ``synchronous=FULL`` with a rollback journal, one transaction per commit, so a
crash at any point leaves the last committed state.
"""

import contextlib
import json
import os
import sqlite3
from typing import Any, Dict, Iterator, List, Optional

from .errors import SearchIndexError

__all__ = ["SCHEMA_VERSION", "connect", "create_schema", "db_errors", "get_meta", "set_meta"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources(
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    location TEXT NOT NULL,
    label TEXT,
    info TEXT NOT NULL,
    UNIQUE(kind, location)
);
CREATE TABLE items(
    id INTEGER PRIMARY KEY,
    source INTEGER NOT NULL,
    path TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    frame INTEGER NOT NULL,
    time REAL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    camera TEXT,
    first_row INTEGER NOT NULL,
    num_rows INTEGER NOT NULL,
    commit_id INTEGER NOT NULL
);
CREATE INDEX items_source_path ON items(source, path);
CREATE INDEX items_path ON items(path);
CREATE INDEX items_time ON items(time);
CREATE INDEX items_camera ON items(camera);
CREATE INDEX items_sha1 ON items(sha1);
CREATE TABLE detections(
    row INTEGER PRIMARY KEY,
    item INTEGER NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    score REAL NOT NULL,
    uncertainty REAL
);
CREATE TABLE commits(
    id INTEGER PRIMARY KEY,
    first_row INTEGER NOT NULL,
    num_rows INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    items INTEGER NOT NULL,
    time TEXT NOT NULL,
    scores BLOB NOT NULL,
    uncertainty BLOB NOT NULL
);
"""


@contextlib.contextmanager
def db_errors(file: str) -> Iterator[None]:
    """Turn SQLite errors into :class:`SearchIndexError` naming ``file``."""
    try:
        yield
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise SearchIndexError(
                f"Search index database {file!r} is locked by another process ({e})"
            ) from e
        raise SearchIndexError(
            f"Search index database {file!r} cannot be used ({type(e).__name__}: {e}); the "
            "index is damaged (rebuild it)"
        ) from e
    except sqlite3.DatabaseError as e:
        raise SearchIndexError(
            f"Search index database {file!r} is damaged ({type(e).__name__}: {e}); rebuild the "
            "index"
        ) from e


def connect(file: str, readonly: bool) -> sqlite3.Connection:
    """Open ``file``; transactions are explicit (``BEGIN`` ... ``COMMIT``).

    Args:
        readonly: open with ``mode=ro`` (the file must exist).

    Raises:
        SearchIndexError: missing (read-only), not a database, damaged, or of another schema.
    """
    if readonly and not os.path.isfile(file):
        raise SearchIndexError(f"Search index database {file!r} is missing; the index is damaged")
    with db_errors(file):
        uri = f"file:{os.path.abspath(file)}?mode={'ro' if readonly else 'rwc'}"
        con = sqlite3.connect(uri, uri=True, timeout=60.0, isolation_level=None)
        try:
            con.execute("PRAGMA synchronous=FULL")
            version = con.execute("PRAGMA user_version").fetchone()[0]
            has_tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except BaseException:
            con.close()
            raise
    if has_tables and version != SCHEMA_VERSION:
        con.close()
        raise SearchIndexError(
            f"Search index database {file!r} has schema version {version}; this code reads "
            f"version {SCHEMA_VERSION}"
        )
    return con


def create_schema(con: sqlite3.Connection, file: str) -> None:
    """Create the tables of an empty database (one transaction)."""
    with db_errors(file):
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            con.execute("INSERT INTO meta VALUES ('rows', '0')")
            con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def get_meta(con: sqlite3.Connection, key: str, default: Optional[str] = None) -> Optional[str]:
    """``meta[key]`` or ``default``."""
    row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else row[0]


def set_meta(con: sqlite3.Connection, key: str, value: Any) -> None:
    """``meta[key] = str(value)`` (inside the caller's transaction)."""
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))


def source_rows(con: sqlite3.Connection) -> List[Dict[str, Any]]:
    """Every source as ``{"id", "kind", "label", **info}`` in id order."""
    out = []
    for sid, kind, label, info in con.execute(
        "SELECT id, kind, label, info FROM sources ORDER BY id"
    ):
        record = {"kind": kind, **json.loads(info)}
        if label is not None:
            record["label"] = label
        record["id"] = sid
        out.append(record)
    return out
