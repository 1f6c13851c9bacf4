"""Search filters (personsearch.apps.search.filters) against brute force over the whole index."""

import math
import re

import numpy as np
import pytest

from personsearch.apps.search import GallerySearch, MissingFieldError, SearchFilter, SearchIndex
from personsearch.apps.search.filters import CompiledFilter, parse_time
from tests.apps.search.common import make_index


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    path = make_index(tmp_path_factory.mktemp("filters") / "index")
    with SearchIndex.open_for_writing(str(path), *_model_settings(path)) as idx:
        # drop a few images with detections: their rows become dead and must never match
        e = idx.load()
        with_dets = np.unique(e.det_item)
        paths = e.item_path[with_dets[[3, 90, 150, 220, 300]]].tolist()
        items, dets = idx.drop_items(1, paths)
        assert items == 5 and dets > 5 and idx.num_rows - idx.num_dets == dets
    return path


def _model_settings(path):
    m = SearchIndex.read_manifest(str(path))
    return m["model"], m["settings"]


def _reference(entries, rows, f: SearchFilter, sources):
    """The rows matching ``f``, computed from the loaded arrays."""
    item = entries.det_item
    ok = np.ones(entries.num_dets, bool)
    if f.cameras:
        ok &= np.isin(entries.item_camera[item], f.cameras)
    if f.sources:
        ok &= np.isin(entries.item_source[item], sources)
    t = entries.item_time[item]
    if f.time_from is not None:
        ok &= t >= f.time_from
    if f.time_to is not None:
        ok &= t <= f.time_to
    if f.path_prefix is not None:
        ok &= np.char.startswith(entries.item_path[item].astype(str), f.path_prefix)
    if f.min_score is not None:
        ok &= entries.scores >= f.min_score
    if f.max_uncertainty is not None:
        ok &= entries.uncertainty <= f.max_uncertainty
    return rows[ok]


FILTERS = [
    SearchFilter(cameras=["cam1"]),
    SearchFilter(cameras=["cam1", "cam3"], min_score=0.8),
    SearchFilter(sources=["archive"]),
    SearchFilter(sources=["/data/archive"], time_from=1000.0, time_to=2500.0),
    SearchFilter(sources=["archive"], time_to=50.0),
    SearchFilter(path_prefix="cam2/"),
    SearchFilter(path_prefix="cam2/001"),
    SearchFilter(min_score=0.9),
    SearchFilter(max_uncertainty=-0.5),
    SearchFilter(cameras=["cam0"], path_prefix="cam0/00", max_uncertainty=1.0, min_score=0.6),
    SearchFilter(cameras=["nope"]),
]


@pytest.mark.parametrize("i", range(len(FILTERS)))
def test_filter_rows_match_brute_force(index_path, i):
    f = FILTERS[i]
    with SearchIndex.open(str(index_path)) as index:
        entries, rows = index.load(return_rows=True)
        columns = index.columns()
        compiled = CompiledFilter(f, index, columns)
        expected = _reference(entries, rows, f, [1])
        got = compiled.rows()
        np.testing.assert_array_equal(got, expected)
        # the estimate is exact without item conditions
        if not f.has_item_terms:
            assert compiled.estimate() == len(expected)
        # passes() agrees on every row, dead ones included
        all_rows = np.arange(index.num_rows)
        np.testing.assert_array_equal(all_rows[compiled.passes(all_rows)], expected)
        assert not columns.live[np.setdiff1d(all_rows, rows)].any()


def test_filtered_search_is_exact_search_over_the_matching_rows(index_path):
    rng = np.random.default_rng(1)
    with SearchIndex.open(str(index_path)) as index:
        entries, rows = index.load(return_rows=True)
        search = GallerySearch(index, backend="exact", progress=False)
        q = rng.standard_normal((3, index.dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        for f in FILTERS:
            match = np.isin(rows, _reference(entries, rows, f, [1]))
            sims = q @ entries.feats.astype(np.float32).T * entries.scores
            sims[:, ~match] = -np.inf
            for j, (s, r) in enumerate(search.search_rows(q, 7, f)):
                order = np.lexsort((rows, -sims[j]))[: min(7, match.sum())]
                np.testing.assert_array_equal(r, rows[order])
                np.testing.assert_allclose(s, sims[j, order], atol=1e-5)


def test_a_filter_on_a_field_the_index_lacks_names_it(tmp_path):
    path = make_index(tmp_path / "index", batches=1, with_uncertainty=False)
    with SearchIndex.open(str(path)) as index:
        columns = index.columns()
        assert index.fields() == ["camera", "time"]
        with pytest.raises(
            MissingFieldError,
            match="Cannot filter on 'uncertainty': .* has no "
            "'uncertainty' field; its model outputs no per-detection uncertainty",
        ):
            CompiledFilter(SearchFilter(max_uncertainty=0.0), index, columns)
        with pytest.raises(ValueError, match="--source 'elsewhere' matches no source .*archive"):
            CompiledFilter(SearchFilter(sources=["elsewhere"]), index, columns)


def test_bad_filter_values():
    with pytest.raises(ValueError, match="from 10.0 is after to 5.0"):
        SearchFilter(time_from=10.0, time_to=5.0)
    with pytest.raises(ValueError, match="min_score: expected a number, got nan"):
        SearchFilter(min_score=math.nan)
    with pytest.raises(ValueError, match="path_prefix: empty"):
        SearchFilter(path_prefix="")
    assert parse_time("12.5", "--time-from") == 12.5
    assert parse_time("1970-01-01T00:01:00", "--time-from") == 60.0
    with pytest.raises(ValueError, match=re.escape("--time-to: 'yesterday' is neither seconds")):
        parse_time("yesterday", "--time-to")
    assert SearchFilter().is_empty and SearchFilter().describe() == "all"
    assert "score >= 0.7" in SearchFilter(min_score=0.7, cameras=["a"]).describe()
