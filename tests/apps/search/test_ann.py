"""The approximate index (personsearch.apps.search.ann) and approximate search with exact re-ranking
(personsearch.apps.search.gallery), on small indexes written through the index API."""

import os
import shutil

import numpy as np
import pytest

from personsearch.apps.search import (
    AnnIndex,
    GallerySearch,
    SearchFilter,
    SearchIndex,
    SearchIndexError,
    update_ann,
)
from personsearch.apps.search.faiss_backend import faiss_available
from tests.apps.search.common import MODEL, make_index, random_batch

pytestmark = pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
SETTINGS = {"score_thresh": 0.5, "dim": 16}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An index of ~10,000 detections with an ivf-pq index over it."""
    path = make_index(tmp_path_factory.mktemp("ann") / "index", batches=8, items=500)
    with SearchIndex.open_for_writing(str(path), MODEL, SETTINGS) as idx:
        ann = update_ann(idx, "ivf-pq", {"nlist": 64}, progress=False)
        assert ann.ntotal == idx.num_dets and ann.meta["covered"] == idx.num_rows
        assert ann.meta["factory"] == "IVF64,PQ2"
    return path


@pytest.fixture
def index_copy(built, tmp_path):
    dst = tmp_path / "index"
    shutil.copytree(built, dst)
    return dst


def _queries(index, n=40, seed=3):
    """Perturbed stored embeddings (each has true neighbours in the index)."""
    rng = np.random.default_rng(seed)
    f = index.embeddings()[rng.integers(0, index.num_rows, n)].astype(np.float32)
    f += 0.1 * rng.standard_normal(f.shape).astype(np.float32)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def _recall(got, truth, k):
    return np.mean([len(set(g[1][:k]) & set(t[1][:k])) / k for g, t in zip(got, truth)])


def test_approximate_search_recall_and_exact_scores(built):
    with SearchIndex.open(str(built)) as index:
        ann_search = GallerySearch(index, progress=False)  # auto: the approximate index
        assert ann_search.backend == "ann" and ann_search.ann.meta["kind"] == "ivf-pq"
        exact = ann_search.with_backend("exact")
        q = _queries(index)
        truth = exact.search_rows(q, 10)
        got = ann_search.search_rows(q, 10)
        assert _recall(got, truth, 10) >= 0.9
        # every returned score is the exact score of its row (exact re-ranking)
        feats, w = index.embeddings().astype(np.float32), index.columns().score
        for j, (s, r) in enumerate(got):
            np.testing.assert_allclose(s, feats[r] @ q[j] * w[r], atol=1e-5)
            assert np.all(np.diff(s) <= 0)
        # visiting every cell with every row re-scored is exact search
        full = GallerySearch(index, nprobe=10**6, rerank=index.num_rows, progress=False)
        assert _recall(full.search_rows(q, 10), truth, 10) == 1.0


def test_rows_added_after_the_index_and_removed_rows(index_copy):
    rng = np.random.default_rng(7)
    with SearchIndex.open_for_writing(str(index_copy), MODEL, SETTINGS) as idx:
        covered = idx.num_rows
        idx.append(random_batch(rng, 20, 16, 1, start_frame=10_000))
        new_rows = np.arange(covered, idx.num_rows)
        e = idx.load()
        victim = e.item_path[e.det_item[0]]
        idx.drop_items(1, [victim])
    with SearchIndex.open(str(index_copy)) as index:
        search = GallerySearch(index, cws=False, progress=False)
        assert search.ann.meta["covered"] == covered  # not updated yet
        feats = index.embeddings()
        # a new row is found although the approximate index does not hold it (exact tail)
        q = feats[new_rows[5]].astype(np.float32)
        s, r = search.search_rows(q[None], 5)[0]
        assert r[0] == new_rows[5]
        # a removed row is never returned, although the approximate index still holds it
        dead = np.flatnonzero(~search.columns.live)
        assert len(dead)
        for row in dead[:3]:
            _, r = search.search_rows(feats[row].astype(np.float32)[None], 20)[0]
            assert not np.isin(r, dead).any()
    # the next update adds the new rows and removes the dead ones
    with SearchIndex.open_for_writing(str(index_copy), MODEL, SETTINGS) as idx:
        ann = update_ann(idx, "auto", progress=False)
        assert ann.meta["covered"] == idx.num_rows and ann.ntotal == idx.num_dets
        assert ann.meta["removed"] == len(dead) and ann.meta["generation"] == 2
    assert sorted(os.listdir(index_copy / "ann")) == ["ann.json", "index_000002.faiss"]


def test_filtered_approximate_search(built):
    with SearchIndex.open(str(built)) as index:
        # exact_limit 0: every filtered query goes through the approximate index
        search = GallerySearch(index, exact_limit=0, progress=False)
        exact = search.with_backend("exact")
        q = _queries(index, 20)
        for f in (SearchFilter(cameras=["cam1"]), SearchFilter(min_score=0.8),
                  SearchFilter(cameras=["cam2"], time_to=20000.0)):  # fmt: skip
            truth = exact.search_rows(q, 10, f)
            got = search.search_rows(q, 10, f)
            assert search.last_strategy == "approximate + post-filter"
            assert _recall(got, truth, 10) >= 0.85, f
            ok = set(exact.exact_in(q[:1], np.arange(index.num_rows), index.num_rows)[1][0])
            for _, r in got:
                assert len(r) == 10 and set(r) <= ok
        # a filter matching one image: over-fetching finds too few, exact search over it answers
        e, rows = index.load(return_rows=True)
        path = e.item_path[e.det_item[0]]
        n = int((e.item_path[e.det_item] == path).sum())
        got = search.search_rows(q[:2], 10, SearchFilter(path_prefix=path))
        assert "exact over the filtered rows" in search.last_strategy
        assert all(len(r) == n for _, r in got)
        # the estimate decides: small sets are searched exactly from the start
        search.exact_limit = 10**9
        search.search_rows(q[:1], 10, SearchFilter(cameras=["cam1"]))
        assert search.last_strategy == "exact over the filtered rows"


def test_ivf_flat_and_auto(tmp_path):
    path = make_index(tmp_path / "index", batches=4, items=500)
    with SearchIndex.open_for_writing(str(path), MODEL, SETTINGS) as idx:
        assert update_ann(idx, "auto", progress=False) is None  # below AUTO_MIN_DETS: exact
        assert not AnnIndex.exists(idx)
        ann = update_ann(idx, "ivf-flat", {"nlist": 32, "nprobe": 32}, progress=False)
        assert ann.meta["factory"] == "IVF32,SQfp16" and ann.meta["nprobe"] == 32
    with SearchIndex.open(str(path)) as index:
        search = GallerySearch(index, progress=False)
        q = _queries(index, 10)
        # all cells visited, float16 vectors: exact top-10
        truth = search.with_backend("exact").search_rows(q, 10)
        assert _recall(search.search_rows(q, 10), truth, 10) == 1.0


def test_damaged_or_foreign_approximate_index(index_copy, caplog):
    folder = index_copy / "ann"
    file = folder / [n for n in os.listdir(folder) if n.endswith(".faiss")][0]
    file.write_bytes(file.read_bytes()[:1000])
    with SearchIndex.open(str(index_copy)) as index:
        with pytest.raises(
            SearchIndexError,
            match=r"Approximate index file '.*\.faiss' has 1000 "
            "bytes, .*ann.json' says \\d+: truncated or changed; rebuild it",
        ):
            GallerySearch(index, progress=False)
        # exact search does not need it
        GallerySearch(index, backend="exact", progress=False)
    # an update rebuilds it, with a warning
    with SearchIndex.open_for_writing(str(index_copy), MODEL, SETTINGS) as idx:
        ann = update_ann(idx, "ivf-pq", {"nlist": 64}, progress=False)
        assert ann.ntotal == idx.num_dets
    assert any("building a new one" in m for m in caplog.messages)
    (folder / "ann.json").write_text("{")
    with SearchIndex.open(str(index_copy)) as index:
        with pytest.raises(SearchIndexError, match=r"ann.json' cannot be read"):
            GallerySearch(index, backend="ann", progress=False)


def test_too_small_to_train(tmp_path):
    path = make_index(tmp_path / "index", batches=1, items=20)
    with SearchIndex.open_for_writing(str(path), MODEL, SETTINGS) as idx:
        with pytest.raises(ValueError, match="needs at least 256 detections to train on"):
            update_ann(idx, "ivf-pq", progress=False)
    with SearchIndex.open(str(path)) as index:
        with pytest.raises(SearchIndexError, match="has no approximate index; build one"):
            GallerySearch(index, backend="ann", progress=False)
