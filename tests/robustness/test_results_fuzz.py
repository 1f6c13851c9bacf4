"""Fuzzing the results-file reader: ``load_results`` + ``validate_results`` (+ scoring).

Inputs: a valid results dict of the toy split with random structural damage (a value anywhere
replaced by a random value of any type, keys or list items removed or added, tensors of other
shapes and dtypes, NaNs), saved with ``torch.save`` or not, and files of random bytes, truncated
or byte-flipped valid files. Contract: ``load_results`` raises only ``ValueError`` naming the
file; ``validate_results`` raises only ``ValueError`` starting with ``results:``; whatever
passes validation scores without any exception; nothing hangs.
"""

import copy
import os
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personsearch.evaluation import load_results, save_results, score_results, validate_results
from tests.common import time_limit
from tests.evaluation.toy import toy_results, toy_split

FUZZ = settings(
    max_examples=int(os.environ.get("PS_FUZZ_EXAMPLES", 80)),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TIME_LIMIT_S = 10
METADATA = {"protocol": "prw"}

RECORDS, _OUTPUTS = toy_split()
VALID = toy_results(RECORDS, _OUTPUTS)


# --------------------------------------------------------------------------------------------
# Random values and structural mutations
# --------------------------------------------------------------------------------------------
_DTYPES = [
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.uint8, torch.bool, torch.complex64,
]  # fmt: skip


@st.composite
def _tensors(draw):
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    dtype = draw(st.sampled_from(_DTYPES))
    t = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    if dtype == torch.complex64:
        t = torch.complex(t, t)
    t = t.to(dtype)
    if dtype.is_floating_point and t.numel() and draw(st.booleans()):
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = draw(
            st.sampled_from([float("nan"), float("inf"), -float("inf")])
        )
    return t


_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from([r["image_id"] for r in RECORDS])
    | _tensors()
)
_VALUES = st.recursive(
    _LEAVES,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6) | st.integers(0, 3), children, max_size=3),
    max_leaves=8,
)


def _paths(node, path=()):
    """Paths (tuples of keys / indices) of every container element, tensors not entered."""
    out = []
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return out
    for key, child in items:
        out.append(path + (key,))
        out.extend(_paths(child, path + (key,)))
    return out


def _parent(root, path):
    node = root
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def _mutated_results(draw):
    results = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(results)
        kind = draw(st.sampled_from(["replace", "replace", "delete", "insert", "reshape"]))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(results, path), path[-1]
        if kind == "replace":
            parent[key] = draw(_VALUES)
        elif kind == "delete":
            del parent[key]
        elif kind == "insert":
            if isinstance(parent, list):
                parent.insert(draw(st.integers(0, len(parent))), draw(_VALUES))
            else:
                parent[draw(st.text(max_size=6))] = draw(_VALUES)
        elif isinstance(parent[key], torch.Tensor):
            parent[key] = draw(_tensors())
    return results


# --------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------
def _validate_and_score(results):
    """Validation fails with a ValueError naming the problem, or scoring succeeds."""
    try:
        validate_results(results, RECORDS)
    except ValueError as e:
        assert str(e).startswith("results: ") and len(str(e)) > len("results: ") + 10, str(e)
        return False
    out = score_results(results, RECORDS, METADATA)
    assert set(out["search"]) == {"mAP", "top1", "top5", "top10"}
    return True


@FUZZ
@given(results=_mutated_results())
def test_damaged_results_dict(results):
    with time_limit(TIME_LIMIT_S, "scoring"):
        _validate_and_score(results)


def _byte_damage():
    valid = st.just("valid")
    return st.one_of(
        st.tuples(st.just("random"), st.binary(max_size=600)),
        st.tuples(st.just("zip_header"), st.binary(max_size=300)),
        st.tuples(valid, st.floats(0.0, 0.999)),  # truncated
        st.tuples(
            st.just("flip"),
            st.lists(st.tuples(st.floats(0, 0.9999), st.integers(0, 255)), min_size=1, max_size=6),
        ),
    )


def _damaged_file(path, damage):
    kind, payload = damage
    save_results(path, VALID)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if kind == "random":
        data = bytearray(payload)
    elif kind == "zip_header":  # gets past the format sniffing into torch's zip reader
        data = bytearray(b"PK\x03\x04") + payload
    elif kind == "valid":
        data = data[: int(payload * len(data))]
    else:
        for pos, byte in payload:
            data[int(pos * len(data))] = byte
    with open(path, "wb") as f:
        f.write(bytes(data))


@FUZZ
@given(damage=_byte_damage())
def test_damaged_results_file(damage):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "search_results.pth")
        _damaged_file(path, damage)
        with time_limit(TIME_LIMIT_S, "scoring"):
            try:
                results = load_results(path)
            except ValueError as e:
                assert path in str(e), str(e)
                return
            _validate_and_score(results)


@FUZZ
@given(
    results=_mutated_results(),
    format_version=st.sampled_from([1, 1, 1, 0, "1", None, 1.0, True]) | _tensors(),
)
def test_damaged_results_saved_and_loaded(results, format_version):
    results["format_version"] = format_version
    readable_version = type(format_version) is int and format_version == 1
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "r.pth")
        torch.save(results, path)
        with time_limit(TIME_LIMIT_S, "scoring"):
            try:
                loaded = load_results(path)
            except ValueError as e:
                assert path in str(e), str(e)
                assert not readable_version or "not a readable" in str(e), str(e)
                return
            assert readable_version
            _validate_and_score(loaded)


def test_the_unmodified_file_scores():
    """The fuzzed inputs start from a results file that is valid and scores."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "r.pth")
        save_results(path, VALID)
        assert _validate_and_score(load_results(path))


@pytest.mark.parametrize("nan_at", [("gallery", "c2_a.jpg", "boxes"), ("queries", 1, "feat")])
def test_nan_anywhere_is_caught(nan_at):
    results = copy.deepcopy(VALID)
    section, key, field = nan_at
    results[section][key][field].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        validate_results(results, RECORDS)
