"""Reading MATLAB annotation files (CUHK-SYSU, PRW) with errors that name file and field.

``scipy.io.loadmat`` (default options) returns struct arrays as numpy structured arrays and cell
arrays as object arrays, with 1-element wrappers and 2-D shapes; these helpers accept those and the
squeezed variants, and raise :class:`~personsearch.data.datasets.common.DatasetFormatError` with a
location like ``.../Images.mat: Img[2] (s2.jpg).box[0].idlocate`` for anything else.
"""

import os
from typing import List, Sequence, Tuple, Union

import numpy as np
import scipy.io

from personsearch.data.datasets.common import DatasetFormatError

# an error location: a string, or a tuple of parts joined lazily (see format_location)
Where = Union[str, Tuple]


def load_mat_variable(path: str, keys: Sequence[str]) -> Tuple[str, np.ndarray]:
    """Read one variable of a MATLAB file: the first of ``keys`` that the file holds.

    Args:
        path: the .mat file.
        keys: variable names to look for, in order of preference.

    Returns:
        ``(key, value)``: the name found and its value as ``scipy.io.loadmat`` returns it (default
        options, so arrays keep their 2-D MATLAB shapes).

    Raises:
        FileNotFoundError: the file does not exist.
        DatasetFormatError: the file cannot be parsed or holds none of ``keys``; names the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Annotation file not found: {path!r} (see datasets/README.md).")
    try:
        data = scipy.io.loadmat(path)
    except NotImplementedError as e:  # scipy cannot read MATLAB v7.3 (HDF5) files
        raise DatasetFormatError(
            f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save it as v7 ({e})."
        ) from e
    except Exception as e:
        # A corrupt file makes scipy raise almost anything (ValueError, TypeError, OSError,
        # zlib.error, MemoryError, ...); all of them mean "this file is not a readable .mat".
        raise DatasetFormatError(
            f"Cannot read MATLAB file {path!r}: corrupt or not a .mat file "
            f"({type(e).__name__}: {_short(e)})."
        ) from e
    for key in keys:
        if key in data:
            return key, data[key]
    found = sorted(k for k in data if not k.startswith("__"))
    raise DatasetFormatError(
        f"{path}: expected a variable named {' or '.join(map(repr, keys))}; the file holds {found}."
    )


def _short(obj, limit: int = 200) -> str:
    text = str(obj)
    return text if len(text) <= limit else text[:limit] + "..."


def format_location(where: "Where") -> str:
    """An error location; hot loops pass a tuple of parts, joined only when an error is raised."""
    return where if isinstance(where, str) else "".join(map(str, where))


def describe_value(value) -> str:
    if isinstance(value, np.ndarray):
        names = value.dtype.names
        kind = f"struct with fields {list(names)}" if names else f"dtype {value.dtype}"
        return f"array of shape {value.shape} ({kind})"
    return f"{type(value).__name__} {_short(repr(value), 60)}"


def unwrap_cells(value):
    """Strip MATLAB cell wrapping: 1-element object arrays around the actual value."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.reshape(-1)[0]
    return value


def struct_elements(value, fields: Sequence[str], where: str) -> List[np.void]:
    """The elements of a MATLAB struct array, in order, after checking it has ``fields``.

    Works for the default ``loadmat`` shapes (1, N) and for squeezed ones (N,) or 0-d; an empty
    array (e.g. a 0x0 double where MATLAB stored no struct) gives no elements.

    Args:
        value: the struct array (a numpy structured array or record).
        fields: field names that every element must have.
        where: "file: variable" description for error messages.
    """
    value = unwrap_cells(value)
    if isinstance(value, np.void) and value.dtype.names is not None:
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise DatasetFormatError(f"{where}: expected a struct array, got {describe_value(value)}.")
    if value.dtype.names is None:
        if value.size == 0:
            return []
        raise DatasetFormatError(
            f"{where}: expected a struct array with fields {list(fields)}, got "
            f"{describe_value(value)}."
        )
    missing = [f for f in fields if f not in value.dtype.names]
    if missing:
        raise DatasetFormatError(
            f"{where}: struct has no field {', '.join(map(repr, missing))} "
            f"(its fields are {list(value.dtype.names)})."
        )
    return list(value.reshape(-1))


def cell_structs(value, fields: Sequence[str], where: str) -> List[np.void]:
    """Elements of a cell array of 1x1 structs (``Train.mat``); a plain struct array also works."""
    value = unwrap_cells(value)
    if isinstance(value, np.ndarray) and value.dtype == object:
        out = []
        for i, cell in enumerate(value.reshape(-1)):
            elems = struct_elements(cell, fields, f"{where}{{{i}}}")
            if len(elems) != 1:
                raise DatasetFormatError(
                    f"{where}{{{i}}}: expected one struct per cell, got {len(elems)}."
                )
            out.append(elems[0])
        return out
    return struct_elements(value, fields, where)


def mat_string(value, where: Where) -> str:
    """A MATLAB char array (1-element str array, possibly cell-wrapped or squeezed) as ``str``."""
    if type(value) is np.ndarray and value.dtype.kind == "U" and value.size == 1:  # fast path
        text = str(value.reshape(-1)[0]).strip()
        if text:
            return text
    value = unwrap_cells(value)
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size == 1:
        value = str(value.reshape(-1)[0])
    if not isinstance(value, str):
        raise DatasetFormatError(
            f"{format_location(where)}: expected a string, got {describe_value(value)}."
        )
    value = value.strip()
    if not value:
        raise DatasetFormatError(f"{format_location(where)}: empty string.")
    return value


def mat_cell_strings(value, where: str) -> List[str]:
    """A MATLAB cell array of strings (e.g. ``pool``) as a list, in file order."""
    value = unwrap_cells(value)
    if isinstance(value, str):
        return [mat_string(value, where)]
    if isinstance(value, np.ndarray) and value.dtype.names is None:
        if value.dtype == object or value.dtype.kind == "U":
            return [mat_string(v, f"{where}{{{i}}}") for i, v in enumerate(value.reshape(-1))]
        if value.size == 0:
            return []
    raise DatasetFormatError(
        f"{where}: expected a cell array of strings, got {describe_value(value)}."
    )
