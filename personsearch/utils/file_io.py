"""Writing files so that a reader, or a process restarted after a crash, never sees half of one.

Every file personsearch writes that another run may read back (checkpoints and their
``last_checkpoint`` tag, results files, dataset JSON files, search-index manifests, benchmark and
model-zoo reports, converted checkpoints) goes through :func:`atomic_write` or
:func:`atomic_path`: the data is written to a temporary file in the same folder, flushed to disk,
and renamed onto the destination with ``os.replace`` (atomic on POSIX and Windows), then the
folder is flushed so that the rename itself survives a power loss. A write that fails removes its
temporary file; a process killed while writing leaves only the temporary file, never a truncated
destination.
"""

import contextlib
import os
import tempfile
from typing import IO, Iterator, Optional

__all__ = ["atomic_path", "atomic_write", "fsync_dir", "temporary_path"]


def temporary_path(path: str) -> str:
    """The temporary file :func:`atomic_path` writes ``path`` through: ``<path>.tmp``.

    Callers that clean up after killed writers (e.g. stale ``*.pth.tmp`` checkpoints) look for
    this name.
    """
    return f"{os.fspath(path)}.tmp"


def fsync_dir(path: str) -> None:
    """Flush a folder's entries to disk, so that a rename in it is durable (no-op where folders
    cannot be opened, e.g. on Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: str) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str, *, unique: bool = False, fsync: bool = True) -> Iterator[str]:
    """Give the name of a temporary file to write ``path`` through, for writers that take a file
    name (``faiss.write_index``, ``torch.save``, ...); when the block ends without an exception the
    temporary file is flushed to disk and renamed onto ``path``.

    Args:
        path: the destination; its folder must exist.
        unique: False: the temporary file is ``<path>.tmp`` (:func:`temporary_path`; a second
            writer of the same path at the same time would clash). True: a new file
            ``.tmp_<name>XXXXXXXX`` in the same folder, for paths that several processes may write
            at once.
        fsync: flush the file and the folder to disk (durability, not only atomicity).

    Yields:
        The temporary file's path. If the block raises (``KeyboardInterrupt`` included), the
        temporary file is removed and the exception propagates; ``path`` is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if unique:
        fd, tmp = tempfile.mkstemp(prefix=".tmp_" + os.path.basename(path), dir=folder)
        os.close(fd)
    else:
        tmp = temporary_path(path)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    if fsync:
        fsync_dir(folder)


@contextlib.contextmanager
def atomic_write(
    path: str,
    mode: str = "w",
    *,
    encoding: Optional[str] = None,
    unique: bool = False,
    fsync: bool = True,
) -> Iterator[IO]:
    """Open ``path`` for writing so that it is replaced in one step when the block ends.

    Use as ``with atomic_write(path, "wb") as f: torch.save(obj, f)``.

    Args:
        path: the destination; its folder must exist.
        mode: "w" (text) or "wb" (binary).
        encoding: text encoding (text mode only; None: the locale's, as ``open``).
        unique: see :func:`atomic_path`.
        fsync: see :func:`atomic_path`.

    Yields:
        The open temporary file. See :func:`atomic_path` for what happens when the block raises.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write opens files with mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path, unique=unique, fsync=fsync) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
