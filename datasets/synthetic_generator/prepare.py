"""The prepared copy on disk: regenerated only when the parameters or the generator version
change, replaced atomically, and serialised between concurrent callers by a lock file. The
staleness check itself is the core's (:mod:`personsearch.data.datasets.synthetic.cache`), shared
with the registered loader."""

import contextlib
import logging
import os
import shutil
import tempfile
import uuid

from personsearch.data.datasets.synthetic.cache import is_current, read_info
from personsearch.data.datasets.synthetic.params import INFO_FILE, normalize_params

from .generator import generate_synthetic_dataset

try:  # POSIX advisory locks; elsewhere concurrent callers rely on the rename race being tolerated
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _file_lock(path: str):
    """Exclusive advisory lock on ``path`` (created) for the duration of the block (POSIX only)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_synthetic_dataset(root: str, workers: int = 2, progress: bool = True, **params) -> str:
    """Make sure ``root`` holds the synthetic dataset for these parameters; generate it if not.

    Nothing is done when ``root/synthetic_info.json`` records the same generator version and
    parameters. Otherwise the set is generated into a temporary sibling folder that then replaces
    ``root`` by a rename, so ``root`` is never a partially written tree. Concurrent callers (e.g.
    distributed ranks) serialise on the lock file ``.<name>.lock`` next to ``root``; the first one
    generates, the others find the finished set.

    Args:
        root: the dataset folder, e.g. ``$DETECTRON2_DATASETS/synthetic``.
        workers: rendering processes when generating.
        progress: show a progress bar when generating.
        **params: keys of :data:`SYNTHETIC_DEFAULTS` to override.

    Returns:
        ``root`` as an absolute path.

    Raises:
        TypeError, ValueError: bad parameters.
        FileExistsError: ``root`` exists, is not empty and is not a synthetic dataset (it is never
            deleted then).
    """
    p = normalize_params(params)
    root = os.path.abspath(root)
    if is_current(root, p):
        logger.info("Synthetic person-search dataset at %s is up to date.", root)
        return root
    parent, name = os.path.split(root)
    os.makedirs(parent, exist_ok=True)
    with _file_lock(os.path.join(parent, f".{name}.lock")):
        if is_current(root, p):  # another process generated it while we waited
            logger.info("Synthetic person-search dataset at %s was generated meanwhile.", root)
            return root
        if os.path.lexists(root) and not os.path.isdir(root):
            raise FileExistsError(
                f"{root!r} exists and is not a folder; the synthetic dataset needs a folder there "
                f"(the file is left untouched)."
            )
        if os.path.isdir(root) and os.listdir(root) and read_info(root) is None:
            raise FileExistsError(
                f"{root!r} exists and is not a synthetic dataset (no {INFO_FILE}); move it away or "
                f"choose another folder."
            )
        if fcntl is not None:  # we hold the lock: leftovers of killed generators can go
            for entry in os.listdir(parent):
                if entry.startswith((f".{name}.tmp-", f".{name}.old-")):
                    logger.info("Removing the leftover %s", os.path.join(parent, entry))
                    shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        old = read_info(root)
        logger.info(
            "%s synthetic person-search dataset in %s (seed %d, %d train + %d extra train + %d "
            "test images)...",
            "Regenerating (parameters or generator version changed)" if old else "Generating",
            root,
            p["seed"],
            p["num_train_images"],
            p["extra_train_images"],
            p["num_test_images"],
        )
        tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
        trash = None
        try:
            stats = generate_synthetic_dataset(tmp, workers=workers, progress=progress, **p)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private
            if os.path.lexists(root):
                trash = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex[:8]}")
                os.rename(root, trash)
            try:
                os.replace(tmp, root)
            except OSError:
                if not is_current(root, p):  # lost a race without the lock (no fcntl)
                    raise
        finally:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        logger.info(
            "Synthetic dataset ready in %.1f s: %d images, %d boxes (%d labeled), %d + %d "
            "identities, %d queries.",
            stats["generation_seconds"],
            stats["images"],
            stats["boxes"],
            stats["labeled_boxes"],
            stats["train_identities"],
            stats["test_identities"],
            stats["queries"],
        )
    return root
