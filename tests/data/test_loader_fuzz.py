"""Fuzzing the CUHK-SYSU, PRW and person-search JSON loaders with malformed files.

Every example starts from a copy of a valid tiny tree (or JSON file), damages one file (random
bytes, flipped bytes, a wrong value / field / shape somewhere in a MATLAB or JSON structure,
random query lines) and runs the loaders. A load may succeed (then the records must still be well
formed) or fail, but only with ``FileNotFoundError`` / ``ValueError`` (``DatasetFormatError`` is
one) whose message names the damaged file (or the image a damaged name points to); never another
exception type, never a hang. ``PS_FUZZ_EXAMPLES=2000`` runs more examples per test.
"""

import contextlib
import copy
import json
import os
import shutil
import tempfile

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personsearch.data.datasets.cuhk_sysu import load_cuhk_sysu, load_cuhk_sysu_protocol
from personsearch.data.datasets.json_format import load_person_search_json
from personsearch.data.datasets.prw import load_prw
from tests.common import time_limit
from tests.data.fixtures import (
    PRW_QUERY_LINES,
    write_jpeg,
    write_tiny_cuhk_sysu,
    write_tiny_prw,
)

FUZZ = settings(
    max_examples=int(os.environ.get("PS_FUZZ_EXAMPLES", 40)),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TIME_LIMIT_S = 20
# messages about an image a damaged name points to (from common.read_image_size)
IMAGE_ERRORS = ("Image file not found", "Cannot read image")

CUHK_FILES = {
    "Images.mat": ("annotation/Images.mat", "Img"),
    "pool.mat": ("annotation/pool.mat", "pool"),
    "Train.mat": ("annotation/test/train_test/Train.mat", "Train"),
    "TestG50.mat": ("annotation/test/train_test/TestG50.mat", "TestG50"),
}
PRW_MAT_FILES = {
    "frame_train.mat": ("frame_train.mat", "img_index_train"),
    "frame_test.mat": ("frame_test.mat", "img_index_test"),
    "c1s1_000151.jpg.mat": ("annotations/c1s1_000151.jpg.mat", "anno_file"),
    "c6s1_000010.jpg.mat": ("annotations/c6s1_000010.jpg.mat", "anno_previous"),
}


@pytest.fixture(scope="module")
def cuhk_tree(tmp_path_factory):
    return write_tiny_cuhk_sysu(str(tmp_path_factory.mktemp("fuzz") / "CUHK-SYSU"))["root"]


@pytest.fixture(scope="module")
def prw_tree(tmp_path_factory):
    return write_tiny_prw(str(tmp_path_factory.mktemp("fuzz") / "PRW"))["root"]


@contextlib.contextmanager
def _copy(tree):
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, os.path.basename(tree))
        shutil.copytree(tree, root)
        yield root


def _check_records(records):
    """Invariants of successfully loaded records."""
    ids = set()
    for r in records:
        assert r["image_id"] not in ids
        ids.add(r["image_id"])
        for a in r["annotations"] + r.get("queries", []):
            x1, y1, x2, y2 = a["bbox"]
            assert 0 <= x1 < x2 <= r["width"] and 0 <= y1 < y2 <= r["height"], (r, a)
            assert a["person_id"] >= -1


def _run(load, file_name):
    """Run a loader; a failure must be an allowed type naming ``file_name`` (or an image)."""
    with time_limit(TIME_LIMIT_S, "the loader"):
        try:
            records = load()
        except (FileNotFoundError, ValueError) as e:  # DatasetFormatError is a ValueError
            msg = str(e)
            assert file_name in msg or any(m in msg for m in IMAGE_ERRORS), (type(e), msg)
            return
    if isinstance(records, list) and records and "file_name" in records[0]:
        _check_records(records)


def _cuhk_loads(root):
    return [
        lambda: load_cuhk_sysu(root, "train"),
        lambda: load_cuhk_sysu(root, "test"),
        lambda: load_cuhk_sysu_protocol(root, 50),
    ]


# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------
_NAMES = st.sampled_from(
    ["imname", "box", "idlocate", "nAppear", "scene", "Query", "Gallery", "idname", "ishard", "x"]
)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64) | st.integers(-5, 100)
_STRINGS = st.sampled_from(["s1.jpg", "s5.jpg", "s3.jpg", "c6s1_000010", "", "?", "a b", "s99.jpg"])


@st.composite
def _numeric(draw):
    shape = draw(st.tuples(st.integers(0, 3), st.integers(0, 6)))
    values = draw(st.lists(_FLOATS, min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]))
    return np.asarray(values, dtype=np.float64).reshape(shape)


def _struct_array(fields_and_rows):
    fields, rows = fields_and_rows
    arr = np.empty((1, len(rows)), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        arr[0, i] = tuple(row)
    return arr


def _extend(children):
    structs = st.lists(_NAMES, min_size=1, max_size=3, unique=True).flatmap(
        lambda fields: st.tuples(
            st.just(fields),
            st.lists(st.lists(children, min_size=len(fields), max_size=len(fields)), max_size=3),
        )
    )
    cells = st.lists(children, max_size=3).map(_cell)
    return structs.map(_struct_array) | cells


def _cell(values):
    cell = np.empty((len(values), 1), dtype=object)
    for i, v in enumerate(values):
        cell[i, 0] = v
    return cell


# a random MATLAB value: numbers, strings, structs and cells of them
MAT_VALUES = st.recursive(_numeric() | _STRINGS.map(lambda s: np.array([s])), _extend, max_leaves=6)


def _nodes(value, path=()):
    """Every position inside a loadmat value, as paths of (flat index, field or None) steps."""
    yield path
    if isinstance(value, np.ndarray) and value.dtype.names:
        for i, elem in enumerate(value.reshape(-1)):
            for f in value.dtype.names:
                yield from _nodes(elem[f], path + ((i, f),))
    elif isinstance(value, np.ndarray) and value.dtype == object:
        for i, elem in enumerate(value.reshape(-1)):
            yield from _nodes(elem, path + ((i, None),))


def _replace(value, path, fn):
    """A copy of ``value`` with the node at ``path`` replaced by ``fn(node)``."""
    if not path:
        return fn(value)
    (i, f), rest = path[0], path[1:]
    out = np.array(value, copy=True, order="C")
    flat = out.reshape(-1)  # a view, since ``out`` is C-contiguous
    target = flat if f is None else flat[f]
    target[i] = _replace(target[i], rest, fn)
    return out


def _rename_fields(value, rename):
    """Rename (or drop, when renamed to None) the fields of a struct array."""
    if not (isinstance(value, np.ndarray) and value.dtype.names):
        return value
    keep = [(f, rename.get(f, f)) for f in value.dtype.names if rename.get(f, f) is not None]
    if not keep:
        return np.zeros((0, 0))
    out = np.empty(value.shape, dtype=[(new, object) for _, new in keep])
    for old, new in keep:
        out[new] = value[old]
    return out


@st.composite
def _structural_mutation(draw, value):
    """Damage one random position of a loadmat value: new value, renamed or dropped fields."""
    nodes = list(_nodes(value))
    path = nodes[draw(st.integers(0, len(nodes) - 1))]
    kind = draw(st.sampled_from(["value", "rename", "drop"]))
    if kind == "value":
        new = draw(MAT_VALUES)
        return _replace(value, path, lambda _: new)
    names = {}

    def fn(node):
        if isinstance(node, np.ndarray) and node.dtype.names:
            f = draw(st.sampled_from(node.dtype.names))
            names[f] = None if kind == "drop" else draw(_NAMES.filter(lambda n: n != f)) + "_"
            return _rename_fields(node, names)
        return node

    return _replace(value, path, fn)


def _byte_damage():
    """(kind, payload): random bytes, a valid header + random body, header bytes overwritten, or
    truncation.

    Bytes are not overwritten inside the body of a valid file: scipy's compiled MAT reader
    (1.15) does not check the data-type code of an element and crashes the process (SIGSEGV) on
    some such files, which no Python code can catch. Damage inside the structure is covered by
    the structural mutations below, which always go through ``savemat``.
    """
    return st.one_of(
        st.tuples(st.just("random"), st.binary(max_size=400)),
        st.tuples(st.just("header"), st.binary(max_size=400)),
        st.tuples(
            st.just("header_flip"),
            st.lists(st.tuples(st.integers(0, 127), st.integers(0, 255)), min_size=1),
        ),
        st.tuples(st.just("truncate"), st.floats(0, 1)),
    )


def _damage_bytes(path, damage):
    kind, payload = damage
    data = bytearray(open(path, "rb").read())
    if kind == "random":
        data = bytearray(payload)
    elif kind == "header":  # keeps the 128-byte MATLAB header: scipy parses into the body
        data = data[:128] + payload
    elif kind == "header_flip":
        for pos, byte in payload:
            data[pos] = byte
    else:
        data = data[: int(payload * len(data))]
    with open(path, "wb") as f:
        f.write(bytes(data))


# --------------------------------------------------------------------------------------------
# CUHK-SYSU
# --------------------------------------------------------------------------------------------
@FUZZ
@given(which=st.sampled_from(sorted(CUHK_FILES)), damage=_byte_damage())
def test_cuhk_sysu_damaged_bytes(cuhk_tree, which, damage):
    with _copy(cuhk_tree) as root:
        _damage_bytes(os.path.join(root, CUHK_FILES[which][0]), damage)
        for load in _cuhk_loads(root):
            _run(load, which)


@FUZZ
@given(which=st.sampled_from(sorted(CUHK_FILES)), data=st.data())
def test_cuhk_sysu_wrong_structure(cuhk_tree, which, data):
    with _copy(cuhk_tree) as root:
        rel, key = CUHK_FILES[which]
        path = os.path.join(root, rel)
        value = scipy.io.loadmat(path)[key]
        scipy.io.savemat(path, {key: data.draw(_structural_mutation(value))})
        for load in _cuhk_loads(root):
            _run(load, which)


# --------------------------------------------------------------------------------------------
# PRW
# --------------------------------------------------------------------------------------------
def _prw_loads(root):
    return [lambda: load_prw(root, "train"), lambda: load_prw(root, "test")]


@FUZZ
@given(which=st.sampled_from(sorted(PRW_MAT_FILES)), damage=_byte_damage())
def test_prw_damaged_bytes(prw_tree, which, damage):
    with _copy(prw_tree) as root:
        _damage_bytes(os.path.join(root, PRW_MAT_FILES[which][0]), damage)
        for load in _prw_loads(root):
            _run(load, which)


@FUZZ
@given(
    which=st.sampled_from(sorted(PRW_MAT_FILES)),
    key=st.sampled_from(["box_new", "anno_file", "anno_previous", "img_index_test", "boxes"]),
    value=_numeric() | MAT_VALUES,
)
def test_prw_wrong_arrays(prw_tree, which, key, value):
    with _copy(prw_tree) as root:
        scipy.io.savemat(os.path.join(root, PRW_MAT_FILES[which][0]), {key: value})
        for load in _prw_loads(root):
            _run(load, which)


_QUERY_TOKENS = st.sampled_from(
    ["7", "605", "-2", "800", "3.5", "-1.7", "1e3", "nan", "inf", "x", "", "c6s1_000010",
     "c3s2_044587", "c1s1_000300", "c2s1_000200", "c9s9_000001", "\t", "1e999"]
)  # fmt: skip


@FUZZ
@given(
    lines=st.lists(
        st.lists(_QUERY_TOKENS, max_size=8).map(" ".join) | st.sampled_from(PRW_QUERY_LINES),
        max_size=6,
    ),
    line_ending=st.sampled_from(["\r\n", "\n", "\r"]),
    raw=st.binary(max_size=40),
)
def test_prw_random_query_lines(prw_tree, lines, line_ending, raw):
    with _copy(prw_tree) as root:
        path = os.path.join(root, "query_info.txt")
        with open(path, "wb") as f:
            f.write(line_ending.join(lines).encode() + (raw if len(lines) % 2 else b""))
        _run(lambda: load_prw(root, "test"), "query_info.txt")


# --------------------------------------------------------------------------------------------
# Person-search JSON
# --------------------------------------------------------------------------------------------
JSON_VALID = {
    "info": {"format": "personsearch-json", "version": 1},
    "categories": [{"id": 1, "name": "person"}],
    "images": [
        {"id": 1, "file_name": "a.jpg", "height": 60, "width": 80, "camera_id": 1},
        {"id": "b", "file_name": "sub/b.jpg"},  # no size: read from the image header
        {"id": 3, "file_name": "c.jpg", "height": 60, "width": 80},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "bbox": [1, 2, 10, 20], "person_id": 4, "category_id": 1},
        {"id": 2, "image_id": "b", "bbox": [70.5, 50, 30, 30], "person_id": -1},
        {"id": 3, "image_id": 3, "bbox": [5, 5, 10, 20], "person_id": 4},
    ],
    "queries": [
        {"image_id": 1, "bbox": [1, 2, 10, 20], "person_id": 4, "gallery_image_ids": ["b", 3]},
    ],
}
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["a.jpg", "sub/b.jpg", "zz.jpg", "", "b", "../a.jpg", "person"])
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["id", "bbox", "image_id", "x"]), children, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def json_tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("fuzz") / "json")
    for name, (h, w) in {"a.jpg": (60, 80), "sub/b.jpg": (64, 96), "c.jpg": (60, 80)}.items():
        write_jpeg(os.path.join(root, "images", name), h, w)
    with open(os.path.join(root, "set.json"), "w") as f:
        json.dump(JSON_VALID, f)
    return root


def _json_paths(node, path=()):
    items = node.items() if isinstance(node, dict) else enumerate(node)
    out = []
    for key, child in items:
        out.append(path + (key,))
        if isinstance(child, (dict, list)):
            out.extend(_json_paths(child, path + (key,)))
    return out


@st.composite
def _json_mutation(draw):
    data = copy.deepcopy(JSON_VALID)
    for _ in range(draw(st.integers(1, 3))):
        paths = _json_paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        kind = draw(st.sampled_from(["replace", "replace", "delete", "insert"]))
        if kind == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif kind == "delete":
            del parent[path[-1]]
        elif isinstance(parent, list):
            parent.insert(draw(st.integers(0, len(parent))), draw(JSON_VALUES))
        else:
            parent[draw(st.sampled_from(["height", "width", "queries", "camera_id"]))] = draw(
                JSON_VALUES
            )
    return data


def _json_load(root):
    return lambda: load_person_search_json(
        os.path.join(root, "set.json"), os.path.join(root, "images")
    )


@FUZZ
@given(data=_json_mutation())
def test_json_wrong_structure(json_tree, data):
    with _copy(json_tree) as root:
        with open(os.path.join(root, "set.json"), "w") as f:
            json.dump(data, f)  # NaN / Infinity are written as JSON's non-standard literals
        _run(_json_load(root), "set.json")


@FUZZ
@given(damage=_byte_damage())
def test_json_damaged_bytes(json_tree, damage):
    with _copy(json_tree) as root:
        _damage_bytes(os.path.join(root, "set.json"), damage)
        _run(_json_load(root), "set.json")
