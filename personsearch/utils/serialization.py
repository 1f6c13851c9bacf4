"""Reading the files personsearch loads, with one explicit unpickling policy.

Every pickle-based file the project reads goes through this module: training checkpoints and
``--resume`` (:class:`~personsearch.checkpoint.PersonSearchCheckpointer`, which picks the
reader per format in :mod:`personsearch.checkpoint.loading`),
``MODEL.WEIGHTS`` (``.pth``, detectron2 model-zoo ``.pkl``, pycls ``.pyth``), the official
SeqNet/NAE checkpoints (:mod:`personsearch.checkpoint.official`) and results files
(:mod:`personsearch.evaluation.results_io`). Search-index shards are numpy ``.npz`` files read
by :func:`load_arrays` (``allow_pickle=False``: never unpickled).

The policy, the same on every supported torch (2.3 to the newest):

* **weights-only by default.** ``.pth`` files are read with ``torch.load(weights_only=True)``:
  tensors, ``OrderedDict`` and plain Python values (dict, list, tuple, str, int, float, bool,
  None). Files that personsearch writes hold exactly these types (:data:`SAVED_TYPES`;
  :func:`check_saved_types` guards every save), so its own checkpoints and results always load
  weights-only.
* **allow-listed foreign formats.** Two foreign formats need a few more globals, which a
  restricted unpickler allows and nothing else: detectron2 model-zoo pickles (numpy arrays:
  :data:`MODEL_ZOO_PICKLE_GLOBALS`) and the official torch-1.2 checkpoints (their scheduler's
  ``collections.Counter``, in :mod:`personsearch.checkpoint.official`).
* **anything else is refused** with :class:`UntrustedFileError`, which names the file and the
  classes/functions it would import, and says how to allow it: list the file in the environment
  variable ``PERSONSEARCH_TRUSTED_FILES`` (paths separated by ``os.pathsep``); such a file is then
  fully unpickled (which can run code stored in it), with a warning in the log.

What a file references is found by reading its pickle opcodes (:func:`referenced_globals`),
without unpickling it, so the messages do not depend on torch's wording.
"""

import _compat_pickle
import collections
import io
import logging
import os
import pickle
import pickletools
import zipfile
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: environment variable: files (``os.pathsep``-separated paths) that may be fully unpickled
TRUSTED_FILES_ENV = "PERSONSEARCH_TRUSTED_FILES"

#: the value types of every file personsearch writes (checkpoints, results files); torch's
#: weights-only loader reads all of them on every supported torch version
SAVED_TYPES: Tuple[type, ...] = (
    dict,
    collections.OrderedDict,
    list,
    tuple,
    str,
    int,
    float,
    bool,
    type(None),
    torch.Tensor,
)

#: the globals of a detectron2 model-zoo ``.pkl`` (``{"model": {name: ndarray}, ...}``, also
#: Detectron1/Caffe2 ``{"blobs": ...}`` files pickled by Python 2): numpy arrays and dtypes
MODEL_ZOO_PICKLE_GLOBALS: FrozenSet[str] = frozenset(
    {
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.ndarray",
        "numpy.dtype",
        "collections.OrderedDict",
        "_codecs.encode",
    }
)

# globals that only rebuild tensors and storages (what torch's weights-only loader allows on
# every supported version, besides plain containers); the rest of a refused file is reported
_TENSOR_GLOBALS = frozenset(
    {
        "collections.OrderedDict",
        "torch.Size",
        "torch.Tensor",
        "torch.nn.parameter.Parameter",
        "torch._tensor._rebuild_from_type_v2",
        "torch.serialization._get_layout",
    }
)


class FileReadError(ValueError):
    """A file that is damaged or not of the expected kind (the message names it; the exception
    of torch or pickle is its ``__cause__``)."""


class UntrustedFileError(ValueError):
    """A file that cannot be loaded without unpickling arbitrary objects, which was refused.

    Attributes:
        path: the file.
        unsafe_globals: the ``module.name`` of each class or function it would import.
    """

    def __init__(self, path: str, what: str, unsafe_globals: List[str]):
        self.path = path
        self.unsafe_globals = unsafe_globals
        shown = ", ".join(unsafe_globals[:8]) + (" ..." if len(unsafe_globals) > 8 else "")
        super().__init__(
            f"Refusing to load {what} {path!r}: it is not weights-only, it would import {shown}, "
            "and unpickling that can run code stored in the file. If you trust this file, allow "
            f"it with the environment variable {TRUSTED_FILES_ENV}={os.path.abspath(path)} "
            f"(several files: separated by {os.pathsep!r}); better, re-save only its tensors and "
            "plain values (a model: torch.save({'model': model.state_dict()}, path))."
        )


def is_trusted(path: str) -> bool:
    """Whether ``path`` is listed in :data:`TRUSTED_FILES_ENV` (compared as real paths)."""
    listed = os.environ.get(TRUSTED_FILES_ENV, "")
    target = os.path.realpath(path)
    return any(os.path.realpath(p) == target for p in listed.split(os.pathsep) if p.strip())


# ---- what a file references, without unpickling it ----

_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING"}
    | {"SHORT_BINSTRING"}
)


def _py3_name(module: str, name: str) -> Tuple[str, str]:
    """The Python 3 name of a global pickled under its Python 2 name (protocols <= 2 write
    ``__builtin__.set`` for ``builtins.set``), as ``pickle`` resolves it when loading."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _pickle_globals(stream: io.BufferedIOBase, out: List[str]) -> None:
    """Append the globals one pickle in ``stream`` references (GLOBAL and STACK_GLOBAL)."""
    memo: Dict[Any, Any] = {}
    recent: List[Any] = [None, None]  # the values of the last two pushes (for STACK_GLOBAL)
    for op, arg, _ in pickletools.genops(stream):
        name = op.name
        if name == "GLOBAL":
            module, attr = _py3_name(*str(arg).split(" ", 1))
            out.append(f"{module}.{attr}")
            recent.append(None)
        elif name == "STACK_GLOBAL":
            module, attr = recent[-2], recent[-1]
            out.append(f"{module}.{attr}" if module and attr else "<unknown STACK_GLOBAL>")
            recent.append(None)
        elif name in _STRING_OPS:
            recent.append(arg if isinstance(arg, str) else str(arg))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = recent[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(arg))
        else:
            recent.append(None)
        del recent[:-2]
        if name == "STOP":
            return


def referenced_globals(path: str) -> List[str]:
    """The classes and functions (``module.name``) that unpickling ``path`` would import.

    Reads the pickle opcodes only, nothing is unpickled: a torch zip checkpoint's ``data.pkl``,
    the leading pickles of a legacy (torch < 1.6) checkpoint, or a plain pickle. A damaged file
    gives what could be read before the damage.

    Args:
        path: a file written by ``torch.save`` or ``pickle.dump``.

    Returns:
        Sorted, without repeats.
    """
    found: List[str] = []
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    if name.endswith(".pkl"):
                        _pickle_globals(io.BytesIO(z.read(name)), found)
        else:
            with open(path, "rb") as f:
                # legacy torch files: magic number, protocol, sys info, the object, storage keys
                for _ in range(5):
                    if not f.peek(1):
                        break
                    _pickle_globals(f, found)
    except Exception:  # damaged or not a pickle: report what was read before
        pass
    return sorted(set(found))


def _is_tensor_global(name: str) -> bool:
    """Whether a global only rebuilds tensors/storages or names a dtype (allowed by torch's
    weights-only loader)."""
    module, _, attr = name.rpartition(".")
    if name in _TENSOR_GLOBALS:
        return True
    if module == "torch._utils":
        return attr.startswith("_rebuild")
    if module == "torch":
        return attr.endswith("Storage") or isinstance(getattr(torch, attr, None), torch.dtype)
    return module == "torch.storage" and attr in ("TypedStorage", "UntypedStorage")


def unsafe_globals(path: str, allowed: Iterable[str] = ()) -> List[str]:
    """The globals of ``path`` (:func:`referenced_globals`) outside ``allowed`` and the tensor
    machinery: what loading it needs beyond weights-only.

    Args:
        path: the file.
        allowed: ``"module.name"`` globals that are allowed besides tensors.
    """
    allowed = set(allowed)
    return [g for g in referenced_globals(path) if g not in allowed and not _is_tensor_global(g)]


# ---- restricted unpickling (allow-listed foreign formats) ----


def _resolve(module: str, name: str) -> Tuple[str, str]:
    """numpy 1 pickles name ``numpy.core.*``, a deprecated alias of ``numpy._core`` in numpy 2."""
    if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
        module = "numpy._core" + module[len("numpy.core") :]
    return module, name


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that imports only the allow-listed globals (``module.name``) and the tensor
    machinery; anything else raises ``pickle.UnpicklingError`` naming it."""

    allowed: FrozenSet[str] = frozenset()

    def find_class(self, module: str, name: str):
        module, name = _py3_name(module, name)
        full = f"{module}.{name}"
        if full in self.allowed or _is_tensor_global(full):
            return super().find_class(*_resolve(module, name))
        raise pickle.UnpicklingError(f"refusing to import {full} (not in the allow-list)")


def restricted_pickle_module(allowed: Iterable[str]):
    """A ``pickle_module`` for ``torch.load`` whose unpickler allows only ``allowed`` globals
    (plus tensors and storages).

    Args:
        allowed: ``"module.name"`` strings.
    """
    unpickler = type("Unpickler", (RestrictedUnpickler,), {"allowed": frozenset(allowed)})

    class _Module:
        Unpickler = unpickler
        UnpicklingError = pickle.UnpicklingError

        @staticmethod
        def load(f, **kwargs):
            return unpickler(f, **kwargs).load()

        @staticmethod
        def loads(data, **kwargs):
            return unpickler(io.BytesIO(data), **kwargs).load()

    return _Module


# ---- the loaders ----


def _load(
    path: str,
    what: str,
    safe: Callable[[], Any],
    full: Callable[[], Any],
    allowed: Iterable[str],
    trusted: Optional[bool],
) -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what[:1].upper() + what[1:]} not found: {path!r}")
    try:
        return safe()
    except Exception as e:  # torch/pickle raise many types; the scan below tells them apart
        unsafe = unsafe_globals(path, allowed)
        if not unsafe:
            raise FileReadError(
                f"Cannot read {what} {path!r} (truncated, corrupt or not this kind of file): "
                f"{type(e).__name__}: {e}"
            ) from e
        if not (is_trusted(path) if trusted is None else trusted):
            raise UntrustedFileError(path, what, unsafe) from e
    logger.warning(
        f"Loading {what} {path!r} with full unpickling ({TRUSTED_FILES_ENV} lists it as "
        "trusted): it imports " + ", ".join(unsafe[:8])
    )
    return full()


def load_torch_file(
    path: str,
    what: str = "checkpoint",
    allowed_globals: Optional[Iterable[str]] = None,
    trusted: Optional[bool] = None,
) -> Any:
    """Read a ``torch.save`` file under the module's policy, onto the CPU.

    Args:
        path: the file.
        what: what the file is, for messages ("checkpoint", "results file", ...).
        allowed_globals: None: ``torch.load(weights_only=True)``. Else the ``"module.name"``
            globals a restricted unpickler allows besides tensors (a foreign format).
        trusted: None: trusted when listed in :data:`TRUSTED_FILES_ENV`; True/False overrides.

    Returns:
        The loaded object.

    Raises:
        FileNotFoundError: no such file.
        UntrustedFileError: the file needs other globals and is not trusted.
        FileReadError: the file is damaged or not a torch file (a ``ValueError``).
    """
    path = os.fspath(path)
    if allowed_globals is None:
        allowed: FrozenSet[str] = frozenset()

        def safe():
            return torch.load(path, map_location="cpu", weights_only=True)

    else:
        allowed = frozenset(allowed_globals)
        module = restricted_pickle_module(allowed)

        def safe():
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=module)

    def full():
        return torch.load(path, map_location="cpu", weights_only=False)

    return _load(path, what, safe, full, allowed, trusted)


def load_pickle_file(
    path: str,
    what: str = "checkpoint",
    allowed_globals: Iterable[str] = MODEL_ZOO_PICKLE_GLOBALS,
    trusted: Optional[bool] = None,
) -> Any:
    """Read a plain pickle (a detectron2 model-zoo ``.pkl``) with a restricted unpickler.

    Python 2 pickles (Detectron1) are read with ``encoding="latin1"``, as detectron2 does.

    Args:
        path: the file.
        what: what the file is, for messages.
        allowed_globals: the ``"module.name"`` globals allowed (default: numpy arrays).
        trusted: None: trusted when listed in :data:`TRUSTED_FILES_ENV`; True/False overrides.

    Raises:
        FileNotFoundError, UntrustedFileError, FileReadError: as :func:`load_torch_file`.
    """
    path = os.fspath(path)
    allowed = frozenset(allowed_globals)
    unpickler = type("Unpickler", (RestrictedUnpickler,), {"allowed": allowed})

    def safe():
        with open(path, "rb") as f:
            return unpickler(f, encoding="latin1").load()

    def full():
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")

    return _load(path, what, safe, full, allowed, trusted)


def load_arrays(path: str):
    """Open a numpy ``.npz``/``.npy`` file without unpickling (``allow_pickle=False``): object
    arrays are refused by numpy. Use as ``with load_arrays(path) as npz: ...`` for ``.npz``."""
    return np.load(path, allow_pickle=False)


def check_saved_types(obj: Any, what: str = "checkpoint") -> None:
    """Check that ``obj`` holds only :data:`SAVED_TYPES`, so that it loads weights-only.

    Args:
        obj: what is about to be saved.
        what: what it is, for the message.

    Raises:
        TypeError: naming the key path of every other value (first 10), e.g. a numpy scalar.
    """
    bad: List[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, torch.Tensor):
            return
        kind = type(value)
        if kind not in SAVED_TYPES:
            bad.append(f"{where or '<root>'}: {kind.__module__}.{kind.__qualname__}")
        elif kind in (dict, collections.OrderedDict):
            for k, v in value.items():
                if type(k) not in (str, int, float, bool, type(None), tuple):
                    key = f"{type(k).__module__}.{type(k).__qualname__}"
                    bad.append(f"{where or '<root>'}: a key of type {key}")
                    continue
                walk(v, f"{where}[{k!r}]")
        elif kind in (list, tuple):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    walk(obj, "")
    if bad:
        raise TypeError(
            f"This {what} would not load weights-only: values of types other than tensors and "
            f"plain Python values at {'; '.join(bad[:10])}. Convert them where they are made "
            "(e.g. int(x), torch.as_tensor(x); in a checkpoint: the state_dict() returning them)."
        )
