"""tools/search.py (index, query, info) and personsearch.apps.search on tiny images with a tiny
model.

The model has random weights with ``MODEL.ROI_HEADS.SCORE_THRESH_TEST 0`` and ``--score-thresh 0``
so that it detects; its box regression is zeroed, so a detection's box is the proposal its
embedding was computed from and querying that box finds the detection itself.

Manual check of the HTML report's rendering (not automated: it needs a browser), done on the demo
index: ``apt-get install -y chromium`` then ``chromium --headless --no-sandbox --disable-gpu
--window-size=1300,1500 --screenshot=shot.png file:///abs/path/<label>_report.html`` and look at
``shot.png``: the query crop and scene, the settings and hits tables, one card per hit with its
crop and source picture.
"""

import json
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from personsearch.apps.search import ExactSearcher, SearchIndex
from personsearch.apps.search.faiss_backend import faiss_available
from tests.common import CONFIGS, TINY_MODEL_OPTS, load_tool, tiny_cfg

CONFIG = os.path.join(CONFIGS, "Base-PersonSearch.yaml")
MODEL_OPTS = [str(tuple(v)) if isinstance(v, (list, tuple)) else str(v) for v in TINY_MODEL_OPTS]
MODEL_OPTS += ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


@pytest.fixture(scope="module")
def tool():
    return load_tool("search")


def _weights(path, seed):
    torch.manual_seed(seed)
    state = build_model(tiny_cfg()).state_dict()
    for k in state:
        if "bbox_pred" in k:
            state[k].zero_()
    torch.save({"model": state}, path)
    return str(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search_weights")
    return {"a": _weights(folder / "a.pth", 0), "b": _weights(folder / "b.pth", 1)}


@pytest.fixture(scope="module")
def records(tiny_synthetic):
    return DatasetCatalog.get(tiny_synthetic["test"])


def _make_gallery(root, records):
    """4 test images, 2 of them in a subfolder, plus a text file."""
    (root / "sub").mkdir(parents=True)
    for i, r in enumerate(records[:4]):
        dst = root / ("sub" if i >= 2 else "") / os.path.basename(r["file_name"])
        shutil.copy(r["file_name"], dst)
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def gallery(tmp_path, records):
    """A gallery folder of this test only (it may change it)."""
    return _make_gallery(tmp_path / "gallery", records)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, records, tool, weights):
    """A gallery and its index, built once; tests copy the index (the gallery is read-only)."""
    folder = tmp_path_factory.mktemp("search_shared")
    root = _make_gallery(folder / "gallery", records)
    build_index(tool, ["--images", root], folder / "index", weights["a"])
    return {"gallery": root, "index": folder / "index"}


@pytest.fixture
def index_copy(shared, tmp_path):
    """(gallery, a fresh copy of its index)."""
    dst = tmp_path / "index"
    shutil.copytree(shared["index"], dst)
    return shared["gallery"], dst


def run(tool, *argv):
    return tool.main([str(a) for a in argv])


def index_args(source, index, w, *extra, opts=()):
    """``index`` arguments: flags in ``extra`` override the defaults, ``opts`` the config."""
    return ["index", "--config-file", CONFIG, *source, "--index", index, "--score-thresh", "0",
            *extra, *MODEL_OPTS, "MODEL.WEIGHTS", w, *opts]  # fmt: skip


def build_index(tool, source, index, w, *extra):
    args = tool.build_parser().parse_args([str(a) for a in index_args(source, index, w, *extra)])
    return args.func(args)


def query(tool, index, *extra):
    args = tool.build_parser().parse_args([str(a) for a in ["query", "--index", index, *extra]])
    return args.func(args)


def error_of(tool, capsys, *argv):
    capsys.readouterr()
    assert run(tool, *argv) == 2
    return capsys.readouterr().err


def manifest(index):
    return json.loads((index / "manifest.json").read_text())


def opened(index):
    return SearchIndex.open(str(index))


def sources_of(index):
    with opened(index) as i:
        return [{k: v for k, v in s.items() if k != "id"} for s in i.sources]


def all_entries(index):
    with opened(index) as i:
        return i.load()


def embeddings_size(index):
    """(bytes of embeddings.f16, bytes its committed rows need)."""
    with opened(index) as i:
        return (index / "embeddings.f16").stat().st_size, i.num_rows * i.row_bytes


# ------------------------------------------------------------------------------------------------
# round trip, report
# ------------------------------------------------------------------------------------------------
def test_index_and_query_round_trip(tool, gallery, weights, tmp_path, capsys):
    index = tmp_path / "index"
    res = build_index(tool, ["--images", gallery], index, weights["a"], "--shard-size", "3")
    stats = res["stats"]
    assert (stats.new, stats.seen, stats.skipped_files, stats.unreadable) == (4, 4, 1, 0)
    m = manifest(index)
    with opened(index) as i:
        assert (i.num_commits, i.num_items, i.num_rows) == (2, 4, res["detections"])
    assert m["settings"] == {"score_thresh": 0.0, "dim": 16} and m["version"] == 2
    assert sources_of(index) == [{"kind": "images", "root": str(gallery)}]
    entries = all_entries(index)
    assert entries.feats.dtype == np.float16 and entries.num_dets == res["detections"] > 0
    norms = np.linalg.norm(entries.feats.astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)
    assert sorted(entries.item_path.tolist())[-1].startswith("sub/")
    assert (entries.item_frame == -1).all() and np.isnan(entries.item_time).all()

    # query with one of the stored detections of an image of the gallery: that detection wins
    path = entries.item_path[1]
    rows = np.flatnonzero(entries.det_item == 1)
    row = rows[len(rows) // 2]
    box = entries.boxes[row].tolist()
    out = tmp_path / "reports"
    res = query(tool, index, "--image", gallery / path, "--box", *box, "--top-k", "5",
                "--no-cws", "--output", out)  # fmt: skip
    hits = res["queries"][0]["hits"]
    assert len(hits) == 5 and hits[0].row == row and hits[0].source == path
    assert hits[0].cosine > 0.999 and [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    printed = capsys.readouterr().out
    assert f"{path} [" in printed and "report: " in printed
    assert (out / f"{os.path.splitext(os.path.basename(path))[0]}_contact_sheet.png").exists()

    # CWS (the default): score = cosine x detection score; the query image can be excluded
    res = query(tool, index, "--image", gallery / path, "--box", *box, "--top-k", "4",
                "--exclude-query-image", "--output", out)  # fmt: skip
    hits = res["queries"][0]["hits"]
    for h in hits:
        assert h.score == pytest.approx(h.cosine * h.det_score, abs=2e-3)
        assert h.source != path
    # a person crop without --box: the whole image is the query
    crop = tmp_path / "crop.png"
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.imwrite(str(crop), cv2.imread(str(gallery / path))[y1:y2, x1:x2])
    res = query(tool, index, "--image", crop, "--top-k", "3", "--output", out)
    assert len(res["queries"][0]["hits"]) == 3
    assert run(tool, "info", "--index", index) == 0
    assert "4 images/frames" in capsys.readouterr().out


def _parse_html(path):
    text = open(path, encoding="utf-8").read()
    assert text.startswith("<!DOCTYPE html>")
    return text, ET.fromstring(text[len("<!DOCTYPE html>") :])


def test_html_report_is_self_contained_and_well_formed(tool, index_copy, tmp_path):
    gallery, index = index_copy
    entries = all_entries(index)
    box = entries.boxes[0].tolist()
    out = tmp_path / "out"
    res = query(tool, index, "--image", gallery / entries.item_path[0], "--box", *box,
                "--top-k", "6", "--cbgm", "--output", out)  # fmt: skip
    report = res["queries"][0]["report"]
    text, root = _parse_html(report)  # XML-parsable: every element is closed
    hits = res["queries"][0]["hits"]
    ids = {e.get("id") for e in root.iter() if e.get("id")}
    assert {f"hit-{h.rank}" for h in hits} | {"query"} <= ids
    for h in hits:  # each hit is listed with its source and score, and linked
        assert f'href="#hit-{h.rank}"' in text and f"{h.score:.4f}" in text and h.source in text
    images = [e for e in root.iter() if e.tag == "img"]
    assert len(images) >= 2 * len(hits) + 2  # crop + scene per hit, and the query's
    for img in images:
        src = img.get("src")
        assert src.startswith("data:image/jpeg;base64,")
        import base64

        data = np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8)
        assert cv2.imdecode(data, cv2.IMREAD_COLOR) is not None
    # nothing refers to another file
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert all(r.startswith("data:") or r.startswith("#") for r in refs)
    assert "CBGM" in text


# ------------------------------------------------------------------------------------------------
# incremental indexing, resume
# ------------------------------------------------------------------------------------------------
def test_incremental_index_processes_only_new_and_changed_files(
    tool, gallery, weights, tmp_path, records, caplog
):
    index = tmp_path / "index"
    build_index(tool, ["--images", gallery], index, weights["a"], "--shard-size", "2")
    before = all_entries(index)
    names = sorted(before.item_path.tolist())
    # grow: 2 new images; change one (flipped); remove one; add a broken image
    shutil.copy(records[4]["file_name"], gallery / "new1.jpg")
    shutil.copy(records[5]["file_name"], gallery / "sub" / "new2.jpg")
    changed = gallery / names[0]
    cv2.imwrite(str(changed), cv2.imread(str(changed))[:, ::-1])
    os.remove(gallery / names[1])
    (gallery / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    caplog.clear()
    stats = build_index(tool, ["--images", gallery], index, weights["a"])["stats"]
    assert (stats.new, stats.changed, stats.removed, stats.unchanged) == (2, 1, 1, 2)
    assert stats.unreadable == 1 and stats.skipped_files == 1
    assert stats.dropped_detections == np.isin(before.item_path[before.det_item], names[:2]).sum()
    assert any("broken.jpg" in m for m in caplog.messages)
    after = all_entries(index)
    assert sorted(after.item_path.tolist()) == sorted(
        [n for n in names if n != names[1]] + ["new1.jpg", "sub/new2.jpg"]
    )
    # unchanged images kept their entries (not processed again), the changed one is new
    for name in names[2:]:
        np.testing.assert_array_equal(
            after.feats[after.item_path[after.det_item] == name],
            before.feats[before.item_path[before.det_item] == name],
        )
    sha = dict(zip(after.item_path.tolist(), after.item_sha1.tolist()))
    old_sha = dict(zip(before.item_path.tolist(), before.item_sha1.tolist()))
    assert sha[names[0]] != old_sha[names[0]]
    # the dropped entries' embeddings stay as dead rows that no search returns
    with opened(index) as i:
        assert i.num_rows - i.num_dets == stats.dropped_detections
        assert i.num_dets == after.num_dets
    size, need = embeddings_size(index)
    assert size == need
    # nothing to do the next time (the broken file is tried again, and counted again)
    stats = build_index(tool, ["--images", gallery], index, weights["a"])["stats"]
    assert (stats.new, stats.changed, stats.removed, stats.unchanged) == (0, 0, 0, 5)
    assert stats.unreadable == 1


def test_interrupted_index_resumes_without_duplicates(
    tool, gallery, weights, tmp_path, monkeypatch
):
    from personsearch.apps.search.indexer import Indexer

    index = tmp_path / "index"
    original = Indexer._detect
    calls = {"n": 0}

    def failing(self, images):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the 4th image
        return original(self, images)

    monkeypatch.setattr(Indexer, "_detect", failing)
    assert (
        run(tool, *index_args(["--images", gallery], index, weights["a"], "--shard-size", "2"))
        == 130
    )
    with opened(index) as i:  # the full first commit, and the pending image (committed)
        assert (i.num_items, i.num_commits) == (3, 2)
    # a crash between writing embeddings and committing them leaves bytes past the committed
    # rows: cut off
    with open(index / "embeddings.f16", "ab") as f:
        f.write(b"partial commit")
    (index / "manifest.json.tmp").write_bytes(b"{")
    monkeypatch.setattr(Indexer, "_detect", original)
    stats = build_index(tool, ["--images", gallery], index, weights["a"])["stats"]
    assert (stats.new, stats.unchanged) == (1, 3)
    entries = all_entries(index)
    assert sorted(entries.item_path.tolist()) == sorted(set(entries.item_path.tolist()))
    assert entries.num_items == 4
    size, need = embeddings_size(index)
    assert size == need
    assert not (index / "manifest.json.tmp").exists()


def test_dataset_source(tool, tiny_synthetic, records, weights, tmp_path, capsys):
    index = tmp_path / "index"
    build_index(tool, ["--dataset", tiny_synthetic["test"]], index, weights["a"])
    entries = all_entries(index)
    assert entries.num_items == len(records)
    assert sources_of(index)[0]["dataset"] == tiny_synthetic["test"]
    res = query(tool, index, "--dataset-query", f"{tiny_synthetic['test']}:0,1", "--top-k", "2",
                "--output", tmp_path / "out")  # fmt: skip
    assert [q["label"] for q in res["queries"]] == [
        f"{tiny_synthetic['test']}_q0",
        f"{tiny_synthetic['test']}_q1",
    ]
    # the same queries one by one give the same hits (batched search == single search)
    single = query(tool, index, "--dataset-query", f"{tiny_synthetic['test']}:1", "--top-k", "2",
                   "--output", tmp_path / "out")  # fmt: skip
    assert [h.row for h in single["queries"][0]["hits"]] == [
        h.row for h in res["queries"][1]["hits"]
    ]


# ------------------------------------------------------------------------------------------------
# video
# ------------------------------------------------------------------------------------------------
def _write_video(path, records, frames=10, fps=5.0):
    size = (128, 96)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    base = [cv2.resize(cv2.imread(r["file_name"]), size) for r in records[:2]]
    for i in range(frames):
        writer.write(np.ascontiguousarray(np.roll(base[i % 2], 4 * i, axis=1)))
    writer.release()
    return path


def test_video_frames_are_indexed_with_frame_and_time(tool, records, weights, tmp_path):
    video = _write_video(tmp_path / "clip.avi", records)
    index = tmp_path / "index"
    stats = build_index(tool, ["--video", video, "--every", "3"], index, weights["a"])["stats"]
    assert (stats.new, stats.seen, stats.unreadable) == (4, 4, 0)
    e = all_entries(index)
    assert e.item_frame.tolist() == [0, 3, 6, 9]
    np.testing.assert_allclose(e.item_time, [0.0, 0.6, 1.2, 1.8])
    assert set(e.item_path.tolist()) == {"clip.avi"} and (e.item_hw == [96, 128]).all()
    src = sources_of(index)[0]
    assert src["kind"] == "video" and src["fps"] == 5.0 and src["every"] == 3
    # again: nothing new; a denser stride adds only the missing frames
    assert (
        build_index(tool, ["--video", video, "--every", "3"], index, weights["a"])["stats"].new == 0
    )
    stats = build_index(tool, ["--video", video, "--every", "2"], index, weights["a"])["stats"]
    assert (stats.new, stats.unchanged) == (3, 4)
    assert sorted(all_entries(index).item_frame.tolist()) == [0, 2, 3, 4, 6, 8, 9]
    # query a frame's detection: the hit names the frame and its time, and the report shows it
    frame3 = cv2.VideoCapture(str(video))
    for _ in range(4):
        ok, image = frame3.read()
    frame3.release()
    query_image = tmp_path / "frame3.png"
    cv2.imwrite(str(query_image), image)
    e = all_entries(index)
    row = int(np.flatnonzero(e.item_frame[e.det_item] == 3)[0])
    res = query(tool, index, "--image", query_image, "--box", *e.boxes[row].tolist(), "--no-cws",
                "--top-k", "3", "--output", tmp_path / "out")  # fmt: skip
    hit = res["queries"][0]["hits"][0]
    assert hit.frame == 3 and hit.time == pytest.approx(0.6) and hit.row == row
    text = open(res["queries"][0]["report"]).read()
    assert "clip.avi frame 3 (0.60 s)" in text


def test_unreadable_video_frames_are_counted_and_skipped(
    tool, records, weights, tmp_path, monkeypatch, caplog
):
    import personsearch.apps.search.sources as sources

    real = cv2.VideoCapture

    class FlakyCapture:
        def __init__(self, path):
            self.cap, self.pos = real(path), -1

        def __getattr__(self, name):
            return getattr(self.cap, name)

        def grab(self):
            self.pos += 1
            return self.cap.grab()

        def retrieve(self):
            ok, image = self.cap.retrieve()
            return (False, None) if self.pos == 2 else (ok, image)

    monkeypatch.setattr(sources.cv2, "VideoCapture", FlakyCapture)
    video = _write_video(tmp_path / "clip.avi", records, frames=5)
    index = tmp_path / "index"
    stats = build_index(tool, ["--video", video], index, weights["a"])["stats"]
    assert (stats.new, stats.unreadable, stats.seen) == (4, 1, 5)
    assert all_entries(index).item_frame.tolist() == [0, 1, 3, 4]
    assert any("frame 2 cannot be decoded" in m for m in caplog.messages)


# ------------------------------------------------------------------------------------------------
# search backends
# ------------------------------------------------------------------------------------------------
def _random_gallery(n=5003, d=24, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, d)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return g.astype(np.float16), rng.uniform(0.5, 1, n).astype(np.float32), rng


@pytest.mark.parametrize("cws", [False, True])
def test_exact_search_matches_a_full_sort(cws):
    g, w, rng = _random_gallery()
    q = rng.standard_normal((7, g.shape[1])).astype(np.float32)
    weights = w if cws else None
    sims = q @ g.astype(np.float32).T * (w if cws else 1.0)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :9]
    for chunk in (1, 100, 10_000):
        scores, rows = ExactSearcher(g, weights, chunk_size=chunk).search(q, 9)
        np.testing.assert_array_equal(rows, expected)
        np.testing.assert_allclose(scores, np.take_along_axis(sims, expected, 1), atol=1e-5)
    scores, rows = ExactSearcher(g[:3], None).search(q, 10)  # k > N
    assert rows.shape == (7, 3)


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
@pytest.mark.parametrize("cws", [False, True])
def test_faiss_backend_returns_the_exact_top_k(cws):
    from personsearch.apps.search.faiss_backend import FaissSearcher

    g, w, rng = _random_gallery()
    q = rng.standard_normal((5, g.shape[1])).astype(np.float32)
    exact = ExactSearcher(g, w if cws else None).search(q, 12)
    got = FaissSearcher(g, w if cws else None).search(q, 12)
    np.testing.assert_array_equal(got[1], exact[1])
    np.testing.assert_allclose(got[0], exact[0], atol=1e-5)


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
def test_faiss_backend_in_the_tool(tool, index_copy, tmp_path):
    gallery, index = index_copy
    e = all_entries(index)
    args = ["--image", gallery / e.item_path[0], "--box", *e.boxes[0].tolist(), "--top-k", "5",
            "--output", tmp_path / "out"]  # fmt: skip
    exact = query(tool, index, *args)["queries"][0]["hits"]
    faiss = query(tool, index, *args, "--backend", "faiss")["queries"][0]["hits"]
    assert [h.row for h in faiss] == [h.row for h in exact]


def test_missing_faiss_is_a_clear_error(tool, index_copy, tmp_path, capsys, monkeypatch):
    gallery, index = index_copy
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    e = all_entries(index)
    err = error_of(tool, capsys, "query", "--index", index, "--image", gallery / e.item_path[0],
                   "--backend", "faiss", "--output", tmp_path / "out")  # fmt: skip
    assert "pip install faiss-cpu" in err


def test_benchmark_search_index(capsys):
    benchmark = load_tool("benchmark")
    argv = ["search-index", "--num-dets", "3000", "--dim", "16", "--batch", "4", "--repeat", "1"]
    if faiss_available():
        argv.append("--faiss")
    args = benchmark.build_parser().parse_args(argv)
    timings = args.func(args)
    assert timings["exact: 1 query"] > 0 and timings["exact: batch of 4"] > 0
    if faiss_available():
        assert timings["faiss == exact (fraction of hits)"] == 1.0
    assert "exact: 1 query" in capsys.readouterr().out


def _random_entries(rng, images=30, dim=8):
    from personsearch.apps.search import Entries

    per_item, feats = [], []
    for _ in range(images):
        n = int(rng.integers(0, 6))
        f = rng.standard_normal((n, dim)).astype(np.float32)
        feats.append(f / np.linalg.norm(f, axis=1, keepdims=True).clip(1e-6))
        per_item.append((rng.uniform(0, 100, (n, 4)), rng.uniform(0.5, 1, n)))
    frames = [(-1, float("nan"), 10, 10)] * images
    return Entries.from_items(
        np.concatenate(feats), per_item, [0] * images, [f"{i}.jpg" for i in range(images)],
        ["0" * 40] * images, frames,
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_cbgm_rerank_equals_rescoring_the_whole_gallery(seed):
    from personsearch.apps.search.rerank import cbgm_rerank
    from personsearch.evaluation.cbgm import match_context

    rng = np.random.default_rng(seed)
    e = _random_entries(rng)
    feats, weights = e.feats.astype(np.float32), e.scores
    context = rng.standard_normal((3, e.dim)).astype(np.float32)
    context /= np.linalg.norm(context, axis=1, keepdims=True)
    k1, top_k = 6, 4
    # reference: every detection scored, the images of the k1 best re-scored, everything sorted
    sims = (feats @ context[0]) * weights
    ranges = e.item_ranges()
    full = sims.astype(np.float64).copy()
    for item in np.unique(e.det_item[np.argsort(-sims, kind="stable")[:k1]]):
        rows = np.arange(ranges[item], ranges[item + 1])
        j, value = match_context(context, feats[rows] * weights[rows, None])
        if j is not None:
            full[rows[j]] = value
    expected = np.lexsort((np.arange(len(full)), -full))[:top_k]
    scores, rows = ExactSearcher(e.feats, weights).search(context[:1], max(top_k, k1))
    got_scores, got_rows, rescored = cbgm_rerank(
        scores[0], rows[0], e.feats, weights, e.det_item,
        lambda item: np.arange(ranges[item], ranges[item + 1]), context, k1, top_k, cws=True,
    )  # fmt: skip
    np.testing.assert_array_equal(got_rows, expected)
    np.testing.assert_allclose(got_scores, full[expected], atol=1e-5)
    assert 1 <= len(rescored) <= k1


def test_query_context_prefers_the_models_own_context():
    from detectron2.structures import Boxes, Instances

    from personsearch.apps.search.rerank import query_context_of

    inst = Instances((50, 50))
    inst.pred_boxes = Boxes(torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [30, 0, 45, 20]]))
    inst.scores = torch.tensor([0.9, 0.8, 0.3])
    inst.reid_feats = torch.eye(3, 4)
    q = torch.tensor([[0.0, 0, 0, 1]])
    out = {"instances": inst, "query_feats": q, "query_contexts": []}
    # emulated (OIM): the query, then the best detections not overlapping the query box
    ctx = query_context_of(out, [0, 0, 10, 10], score_thresh=0.5, k2=3)
    np.testing.assert_array_equal(ctx, np.stack([q[0].numpy(), np.eye(3, 4)[1]]))
    # the model's own context (NAE family), cut to k2 rows
    own = torch.arange(20, dtype=torch.float32).reshape(5, 4)
    ctx = query_context_of(dict(out, query_contexts=[own]), [0, 0, 10, 10], 0.5, k2=3)
    np.testing.assert_array_equal(ctx, own[:3].numpy())


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
def test_index_bad_sources_and_arguments(tool, gallery, weights, tmp_path, capsys):
    index = tmp_path / "index"
    w = weights["a"]
    cases = [
        (["--images", tmp_path / "nope"], "Image folder not found: '.*nope'"),
        (["--images", gallery / "notes.txt"], "--images must be a folder"),
        (["--video", tmp_path / "nope.avi"], "--video: video file not found: '.*nope.avi'"),
        (["--video", gallery / "notes.txt"], r"not a supported video type \(\.txt\)"),
        (["--dataset", "no_such_split"], "Dataset 'no_such_split' is not registered"),
        (["--images", gallery, "--every", "0"], "--every must be >= 1"),
    ]
    (tmp_path / "garbage.avi").write_bytes(b"RIFF garbage, not a video")
    cases.append((["--video", tmp_path / "garbage.avi"], "OpenCV cannot open '.*garbage.avi'"))
    for source, message in cases:
        err = error_of(tool, capsys, *index_args(source, index, w))
        assert re.search(message, err), (source, err)
    err = error_of(
        tool, capsys, *index_args(["--images", gallery], index, w, "--score-thresh", "2")
    )
    assert re.search(r"--score-thresh must be in \[0, 1\], got 2", err)
    err = error_of(tool, capsys, *index_args(["--images", gallery], index, ""))
    assert "MODEL.WEIGHTS is empty" in err
    err = error_of(tool, capsys, *index_args(["--images", gallery], index, tmp_path / "no.pth"))
    assert "no.pth" in err
    # a folder that is not an index
    other = tmp_path / "other"
    other.mkdir()
    (other / "something.txt").write_text("x")
    err = error_of(tool, capsys, *index_args(["--images", gallery], other, w))
    assert "not a search index" in err


def test_index_of_another_model_or_settings_is_refused(tool, index_copy, weights, capsys):
    gallery, index = index_copy
    before = (index / "manifest.json").read_bytes()
    err = error_of(tool, capsys, *index_args(["--images", gallery], index, weights["b"]))
    assert "was built by another model" in err and "a.pth" in err and "b.pth" in err
    opts = ["MODEL.RPN.POST_NMS_TOPK_TEST", "20"]
    err = error_of(tool, capsys, *index_args(["--images", gallery], index, weights["a"], opts=opts))
    assert "was built by another model" in err and "model config sha1" in err
    args = index_args(["--images", gallery], index, weights["a"])
    args[args.index("--score-thresh") + 1] = "0.3"
    err = error_of(tool, capsys, *args)
    assert "score_thresh=0.0, this run uses 0.3" in err
    assert (index / "manifest.json").read_bytes() == before  # nothing changed
    # querying with other weights
    image = gallery / all_entries(index).item_path[0]
    err = error_of(tool, capsys, "query", "--index", index, "--image", image,
                   "--weights", weights["b"])  # fmt: skip
    assert "is another model" in err and "b.pth" in err


def test_query_bad_input(tool, index_copy, tmp_path, capsys, tiny_synthetic):
    gallery, index = index_copy
    image = str(gallery / sorted(p for p in os.listdir(gallery) if p.endswith(".jpg"))[0])
    h, w = cv2.imread(image).shape[:2]
    (tmp_path / "q.gif").write_bytes(b"GIF89a")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 nope")
    q = ["query", "--index", index, "--output", tmp_path / "out"]
    cases = [
        (["--image", tmp_path / "none.jpg"], "--image: image file not found: '.*none.jpg'"),
        (["--image", tmp_path / "q.gif"], r"not a supported image type \(\.gif\)"),
        (["--image", tmp_path / "bad.jpg"], "Cannot decode image '.*bad.jpg'"),
        (
            ["--image", image, "--box", 0, 0, w + 5, 10],
            r"s\d+.jpg: --box = \[0.0, 0.0, \d+.0, 10.0\] lies outside the \d+x\d+",
        ),
        (["--image", image, "--box", 5, 5, 5, 10], "zero or negative size"),
        (["--image", image, "--cbgm"], "--cbgm needs a query box"),
        (["--image", image, "--top-k", "0"], "--top-k must be >= 1"),
        (["--dataset-query", f"{tiny_synthetic['test']}:999"], "has no query 999"),
        (["--dataset-query", "nocolon"], "expected NAME:I"),
        (["--dataset-query", f"{tiny_synthetic['test']}:0", "--box", 1, 2, 3, 4], "--box goes"),
    ]
    for extra, message in cases:
        err = error_of(tool, capsys, *q, *extra)
        assert re.search(message, err), (extra, err)
    err = error_of(tool, capsys, "query", "--index", tmp_path / "missing", "--image", image)
    assert "Search index '" in err and "folder not found" in err


def test_empty_index(tool, gallery, weights, tmp_path, capsys):
    index = tmp_path / "index"
    stats = build_index(tool, ["--images", gallery], index, weights["a"], "--score-thresh", "1")
    assert stats["detections"] == 0 and stats["items"] == 4
    err = error_of(tool, capsys, "query", "--index", index, "--image",
                   gallery / all_entries(index).item_path[0])  # fmt: skip
    assert "is empty: 4 images/frames and no detection" in err


DAMAGES = ["manifest-truncated", "manifest-garbage", "embeddings-truncated", "embeddings-flipped",
           "embeddings-missing", "database-garbage", "database-missing"]  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGES)
def test_corrupt_index_files(tool, index_copy, weights, capsys, damage):
    gallery, index = index_copy
    emb, db, mfile = index / "embeddings.f16", index / "index.sqlite", index / "manifest.json"
    data = emb.read_bytes()
    if damage == "manifest-truncated":
        mfile.write_bytes(mfile.read_bytes()[:100])
        expected = r"manifest '.*manifest.json' is corrupt or truncated"
    elif damage == "manifest-garbage":
        mfile.write_text(json.dumps({"format": "something else"}))
        expected = "not a personsearch search-index manifest"
    elif damage == "embeddings-truncated":
        emb.write_bytes(data[: len(data) // 2])
        expected = r"embeddings file '.*embeddings.f16' has \d+ bytes, the index's \d+ rows need"
    elif damage == "embeddings-flipped":  # same size, damaged embeddings: the CRC check fails
        pos = len(data) // 2
        emb.write_bytes(
            data[:pos] + bytes(b ^ 0xFF for b in data[pos : pos + 32]) + data[pos + 32 :]
        )
        expected = r"embeddings.f16': rows \d+\.\.\d+ \(commit \d+\) fail their CRC-32 check"
    elif damage == "embeddings-missing":
        emb.unlink()
        expected = r"embeddings file '.*embeddings.f16' is missing"
    elif damage == "database-garbage":
        db.write_bytes(b"x" * db.stat().st_size)
        expected = r"database '.*index.sqlite' (is damaged|cannot be used)"
    else:
        db.unlink()
        expected = r"database '.*index.sqlite' is missing"
    image = gallery / sorted(p for p in os.listdir(gallery) if p.endswith(".jpg"))[0]
    err = error_of(tool, capsys, "query", "--index", index, "--image", image)
    assert re.search(expected, err), err
    before = {p: p.read_bytes() for p in index.rglob("*") if p.is_file()}
    if damage == "embeddings-flipped":
        # indexing checks sizes, not every byte; 'verify' (and exact search) checks the CRCs
        err = error_of(tool, capsys, "verify", "--index", index)
    else:  # indexing into the damaged index stops with the same error; nothing is overwritten
        err = error_of(tool, capsys, *index_args(["--images", gallery], index, weights["a"]))
    assert re.search(expected, err), err
    after = {p: p.read_bytes() for p in index.rglob("*") if p.is_file()}
    assert {p: v for p, v in after.items() if p.name != ".lock"} == {
        p: v for p, v in before.items() if p.name != ".lock"
    }


def test_concurrent_writers_are_refused(tool, index_copy, weights, capsys):
    gallery, index = index_copy
    m = manifest(index)
    held = SearchIndex.open_for_writing(str(index), m["model"], m["settings"])
    try:
        err = error_of(tool, capsys, *index_args(["--images", gallery], index, weights["a"]))
        assert "is being written by another process" in err
    finally:
        held.close()
