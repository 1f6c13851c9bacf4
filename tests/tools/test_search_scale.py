"""tools/search.py at scale: batched indexing with decoding workers, bad frames inside a batch,
multi-process indexing (2 gloo processes) and its resumption after a kill, uncertainty and
filters, format-1 migration, the approximate index through the tool, the search-scale benchmark.

The model is the random-weight tiny model of test_search.py (it detects with score threshold 0).
"""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from personsearch.apps.search import SearchIndex
from personsearch.apps.search.faiss_backend import faiss_available
from tests.common import REPO, load_tool, local_dist_url
from tests.tools.test_search import (
    CONFIG,
    MODEL_OPTS,
    _make_gallery,
    _weights,
    _write_video,
    all_entries,
    build_index,
    error_of,
    index_args,
    query,
    run,
)


@pytest.fixture(scope="module")
def tool():
    return load_tool("search")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search_scale_weights")
    return {"a": _weights(folder / "a.pth", 0)}


@pytest.fixture(scope="module")
def records(tiny_synthetic):
    from detectron2.data import DatasetCatalog

    return DatasetCatalog.get(tiny_synthetic["test"])


def _by_path(entries):
    """path (and frame) -> (feats, boxes, scores) of its detections."""
    out = {}
    for m, (p, f) in enumerate(zip(entries.item_path.tolist(), entries.item_frame.tolist())):
        sel = entries.det_item == m
        out[(p, f)] = (entries.feats[sel], entries.boxes[sel], entries.scores[sel])
    return out


def _assert_same_entries(a, b):
    pa, pb = _by_path(a), _by_path(b)
    assert sorted(pa) == sorted(pb)
    for key in pa:
        fa, ba, sa = pa[key]
        fb, bb, sb = pb[key]
        assert len(sa) == len(sb), key
        np.testing.assert_allclose(fa.astype(np.float32), fb.astype(np.float32), atol=2e-3)
        np.testing.assert_allclose(ba, bb, atol=1e-3)
        np.testing.assert_allclose(sa, sb, atol=1e-5)


@pytest.fixture
def mixed_gallery(tmp_path, records):
    """6 images of 3 sizes, a corrupt file and a truncated JPEG."""
    root = _make_gallery(tmp_path / "gallery", records)
    for i, r in enumerate(records[4:6]):
        image = cv2.imread(r["file_name"])
        cv2.imwrite(str(root / f"small{i}.png"), cv2.resize(image, (120, 90)))
    whole = (root / os.path.basename(records[0]["file_name"])).read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    return root


def test_batched_indexing_with_workers_equals_one_at_a_time(
    tool, mixed_gallery, weights, tmp_path, caplog
):
    one = build_index(tool, ["--images", mixed_gallery], tmp_path / "one", weights["a"])
    caplog.clear()
    many = build_index(tool, ["--images", mixed_gallery], tmp_path / "many", weights["a"],
                       "--batch-size", "4", "--num-workers", "2", "--shard-size", "3")  # fmt: skip
    for res in (one, many):
        s = res["stats"]
        assert (s.new, s.unreadable, s.skipped_files) == (6, 2, 1)
        assert sorted(s.unreadable_names) == ["corrupt.png", "truncated.jpg"]
    # the bad files were skipped one by one, their batches indexed; each is logged by name
    messages = "\n".join(caplog.messages)
    assert "Skipping unreadable 'truncated.jpg'" in messages and "truncated JPEG" in messages
    assert "Skipping unreadable 'corrupt.png'" in messages
    a, b = all_entries(tmp_path / "one"), all_entries(tmp_path / "many")
    assert a.num_items == b.num_items == 6
    # images are grouped by size within a batch: the same embeddings as one at a time
    _assert_same_entries(a, b)


def test_video_with_decoding_workers(tool, records, weights, tmp_path):
    video = _write_video(tmp_path / "clip.avi", records, frames=11)
    build_index(tool, ["--video", video, "--every", "2"], tmp_path / "one", weights["a"])
    stats = build_index(tool, ["--video", video, "--every", "2"], tmp_path / "many", weights["a"],
                        "--num-workers", "2", "--batch-size", "2", "--camera", "gate",
                        "--start-time", "2024-05-01T08:00:00")["stats"]  # fmt: skip
    assert (stats.new, stats.seen, stats.unreadable) == (6, 6, 0)
    a, b = all_entries(tmp_path / "one"), all_entries(tmp_path / "many")
    assert sorted(b.item_frame.tolist()) == [0, 2, 4, 6, 8, 10]
    _assert_same_entries(a, b)
    # wall-clock time and camera are stored
    t0 = 1714550400.0  # 2024-05-01T08:00:00 UTC
    order = np.argsort(b.item_frame)
    np.testing.assert_allclose(b.item_time[order], t0 + np.arange(0, 11, 2) / 5.0)
    assert set(b.item_camera.tolist()) == {"gate"}


def test_query_filters_through_the_tool(tool, records, weights, tmp_path, capsys):
    video = _write_video(tmp_path / "clip.avi", records, frames=10)
    index = tmp_path / "index"
    build_index(tool, ["--video", video, "--camera", "gate"], index, weights["a"])
    e = all_entries(index)
    row = int(np.flatnonzero(e.item_frame[e.det_item] == 3)[0])
    frame = tmp_path / "frame.png"
    cap = cv2.VideoCapture(str(video))
    for _ in range(4):
        ok, image = cap.read()
    cv2.imwrite(str(frame), image)
    base = ["--image", frame, "--box", *e.boxes[row].tolist(), "--top-k", "5000", "--output",
            tmp_path / "out"]  # fmt: skip
    hits = query(tool, index, *base, "--time-from", "0.5", "--time-to", "1.0")["queries"][0]["hits"]
    assert hits and all(0.5 <= h.time <= 1.0 for h in hits)
    assert {h.frame for h in hits} == {3, 4, 5}
    low = float(np.median(e.scores))
    hits = query(tool, index, *base, "--min-score", str(low), "--camera", "gate",
                 "--source", "clip.avi")["queries"][0]["hits"]  # fmt: skip
    assert len(hits) == int((e.scores >= low).sum())
    assert all(h.det_score >= low and h.camera == "gate" for h in hits)
    assert "filter: camera in ['gate']" in capsys.readouterr().out
    # conditions that nothing meets, fields the index lacks, bad values
    assert query(tool, index, *base, "--camera", "lobby")["queries"][0]["hits"] == []
    q = ["query", "--index", index, *base]
    err = error_of(tool, capsys, *q, "--max-uncertainty", "0")
    assert "Cannot filter on 'uncertainty'" in err and "OUTPUT_VARIANCE" in err
    err = error_of(tool, capsys, *q, "--source", "elsewhere")
    assert "--source 'elsewhere' matches no source" in err and "clip.avi" in err
    err = error_of(tool, capsys, *q, "--time-from", "noon")
    assert "--time-from: 'noon' is neither seconds nor an ISO 8601" in err
    err = error_of(tool, capsys, *q, "--time-from", "5", "--time-to", "1")
    assert "from 5.0 is after to 1.0" in err


def test_uncertainty_is_stored_when_the_model_outputs_it(weights, tmp_path, mixed_gallery):
    """A predictor whose detections carry ``uncertainty`` (UGAS with OUTPUT_VARIANCE): stored per
    detection and filterable; the wrapper adds a known value to the real model's output."""
    from personsearch import get_person_search_cfg
    from personsearch.apps.search import GallerySearch, Indexer, SearchFilter, model_fingerprint
    from personsearch.apps.search.sources import scan_image_folder
    from personsearch.engine import PersonSearchPredictor

    cfg = get_person_search_cfg(CONFIG, MODEL_OPTS + ["MODEL.WEIGHTS", weights["a"]])
    real = PersonSearchPredictor(cfg)

    class Uncertain:
        embed_dim = real.embed_dim

        def batch(self, images):
            out = real.batch(images)
            for res in out:
                inst = res["instances"]
                inst.uncertainty = inst.scores * 10 - 5  # any known function
            return out

    images, _ = scan_image_folder(str(mixed_gallery))
    path = str(tmp_path / "index")
    settings = {"score_thresh": 0.0, "dim": real.embed_dim}
    with SearchIndex.open_for_writing(path, model_fingerprint(cfg, weights["a"]), settings) as idx:
        Indexer(idx, Uncertain(), 0.0, progress=False).index_images(
            str(mixed_gallery), images, {"kind": "images", "root": str(mixed_gallery)}
        )
        e = idx.load()
        assert "uncertainty" in idx.fields()
        np.testing.assert_allclose(e.uncertainty, e.scores * 10 - 5, atol=1e-5)
    with SearchIndex.open(path) as index:
        search = GallerySearch(index, progress=False)
        q = e.feats[:1].astype(np.float32)
        limit = float(np.median(e.uncertainty))
        ((s, r),) = search.search_rows(q, 1000, SearchFilter(max_uncertainty=limit))
        assert 0 < len(r) == int((e.uncertainty <= limit).sum()) < e.num_dets
        assert (search.columns.uncertainty[r] <= limit).all()


# ------------------------------------------------------------------------------------------------
# several processes
# ------------------------------------------------------------------------------------------------
def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([REPO, env.get("PYTHONPATH", "")]))
    return env


def _tool_cmd(source, index, w, *extra):
    argv = [str(a) for a in index_args(source, index, w, *extra)]
    return [sys.executable, os.path.join(REPO, "tools", "search.py"), *argv]


def _start(cmd, log):
    return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _run_tool(cmd, log, timeout=420):
    proc = _start(cmd, log)
    try:
        code = proc.wait(timeout=timeout)
    finally:
        _kill(proc)
    return code, open(log, errors="replace").read()


def _commits(index):
    try:
        con = sqlite3.connect(f"file:{index / 'index.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM commits").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.fixture(scope="module")
def big_gallery(tmp_path_factory, records):
    """12 images (the tiny test split's, twice, the copies flipped)."""
    root = tmp_path_factory.mktemp("big") / "gallery"
    root.mkdir()
    for i, r in enumerate(records[:6]):
        shutil.copy(r["file_name"], root / f"a{i}.jpg")
        cv2.imwrite(str(root / f"b{i}.jpg"), cv2.imread(r["file_name"])[:, ::-1])
    return root


@pytest.fixture(scope="module")
def single_process_index(tool, big_gallery, weights, tmp_path_factory):
    index = tmp_path_factory.mktemp("single") / "index"
    build_index(tool, ["--images", big_gallery], index, weights["a"])
    return index


def test_two_processes_index_like_one(big_gallery, weights, single_process_index, tmp_path):
    index = tmp_path / "index"
    cmd = _tool_cmd(["--images", big_gallery], index, weights["a"], "--num-gpus", "2",
                    "--dist-url", local_dist_url(), "--shard-size", "2")  # fmt: skip
    code, log = _run_tool(cmd, tmp_path / "log.txt")
    assert code == 0, log[-3000:]
    assert "12 seen: 12 new" in log and "2 processes)" in log
    _assert_same_entries(all_entries(single_process_index), all_entries(index))
    with SearchIndex.open(str(index)) as i:
        # each step commits both ranks' images together: 12 images, 2 per rank per step
        assert i.num_commits == 3


def test_killed_multi_process_run_resumes_without_losing_commits(
    big_gallery, weights, single_process_index, tmp_path
):
    index = tmp_path / "index"
    cmd = _tool_cmd(["--images", big_gallery], index, weights["a"], "--num-gpus", "2",
                    "--dist-url", local_dist_url(), "--shard-size", "1")  # fmt: skip
    proc = _start(cmd, tmp_path / "log1.txt")
    try:
        deadline = time.time() + 300
        while _commits(index) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, open(tmp_path / "log1.txt").read()[-3000:]
    finally:
        _kill(proc)  # SIGKILL the whole process group: no cleanup runs
    before = all_entries(index)
    assert 0 < before.num_items < 12
    committed = _by_path(before)
    # resume with another number of processes: only the rest is indexed, nothing twice
    code, log = _run_tool(_tool_cmd(["--images", big_gallery], index, weights["a"]),
                          tmp_path / "log2.txt")  # fmt: skip
    assert code == 0, log[-3000:]
    assert f"{before.num_items} unchanged" in log
    after = all_entries(index)
    assert after.num_items == 12 and len(set(after.item_path.tolist())) == 12
    for key, (f, b, s) in committed.items():  # committed work is kept as it was
        np.testing.assert_array_equal(_by_path(after)[key][0], f)
    _assert_same_entries(all_entries(single_process_index), after)


def test_multi_process_errors_before_starting(
    tool, big_gallery, weights, single_process_index, tmp_path, capsys
):
    err = error_of(tool, capsys, *index_args(["--images", big_gallery], tmp_path / "i",
                                             weights["a"], "--machine-rank", "1"))  # fmt: skip
    assert "--machine-rank must be in [0, 1), got 1" in err
    err = error_of(tool, capsys, *index_args(["--images", big_gallery], tmp_path / "i",
                                             weights["a"], "--batch-size", "0"))  # fmt: skip
    assert "--batch-size must be >= 1, got 0" in err
    err = error_of(tool, capsys, *index_args(["--images", big_gallery], tmp_path / "i",
                                             weights["a"], "--num-workers", "-1"))  # fmt: skip
    assert "--num-workers must be >= 0, got -1" in err
    # an index of another model is refused in this process, before workers are started
    other = _weights(tmp_path / "b.pth", 1)
    before = (single_process_index / "index.sqlite").read_bytes()
    t0 = time.time()
    err = error_of(tool, capsys, *index_args(["--images", big_gallery], single_process_index,
                                             other, "--num-gpus", "2"))  # fmt: skip
    assert "was built by another model" in err and "b.pth" in err
    assert time.time() - t0 < 60 and (single_process_index / "index.sqlite").read_bytes() == before


# ------------------------------------------------------------------------------------------------
# format 1, approximate index through the tool, info, verify
# ------------------------------------------------------------------------------------------------
def _write_v1(index, folder):
    """The format-1 layout of ``index`` (manifest + .npz shards), as the earlier code wrote it."""
    with SearchIndex.open(str(index)) as i:
        e, m, sources = i.load(), i.manifest, i.sources
    folder.mkdir()
    (folder / "shards").mkdir()
    shards = []
    for s, (i0, i1) in enumerate([(0, e.num_items // 2), (e.num_items // 2, e.num_items)]):
        d0, d1 = np.searchsorted(e.det_item, [i0, i1])
        arrays = {"feats": e.feats[d0:d1], "boxes": e.boxes[d0:d1], "scores": e.scores[d0:d1],
                  "det_item": e.det_item[d0:d1] - i0}  # fmt: skip
        for f in ("item_source", "item_path", "item_sha1", "item_frame", "item_time", "item_hw"):
            arrays[f] = getattr(e, f)[i0:i1]
        arrays["item_source"] = arrays["item_source"] - 1  # format 1: positions in the list
        name = f"shards/shard_{s:06d}.npz"
        with open(folder / name, "wb") as f:
            np.savez(f, **arrays)
        shards.append({"file": name, "items": int(i1 - i0), "detections": int(d1 - d0),
                       "bytes": os.path.getsize(folder / name)})  # fmt: skip
    manifest = {"format": m["format"], "version": 1, "created": m["created"], "model": m["model"],
                "settings": m["settings"], "next_shard": 2, "shards": shards,
                "sources": [{k: v for k, v in s.items() if k != "id"} for s in sources],
                "totals": {"items": e.num_items, "detections": e.num_dets}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return e


def test_format_1_index_is_refused_then_migrated(tool, single_process_index, big_gallery,
                                                 weights, tmp_path, capsys):  # fmt: skip
    old = tmp_path / "old"
    e = _write_v1(single_process_index, old)
    image = big_gallery / "a0.jpg"
    err = error_of(tool, capsys, "query", "--index", old, "--image", image)
    assert "has format version 1" in err and "tools/search.py migrate --index" in err
    err = error_of(tool, capsys, *index_args(["--images", big_gallery], old, weights["a"]))
    assert "has format version 1" in err
    assert run(tool, "migrate", "--index", old) == 0
    assert "migrated" in capsys.readouterr().out and not (old / "shards").exists()
    _assert_same_entries(e, all_entries(old))
    assert json.loads((old / "manifest.json").read_text())["version"] == 2
    res = query(tool, old, "--image", image, "--top-k", "3", "--output", tmp_path / "out")
    assert len(res["queries"][0]["hits"]) == 3
    # and the migrated index can be extended: nothing to do
    stats = build_index(tool, ["--images", big_gallery], old, weights["a"])["stats"]
    assert (stats.new, stats.unchanged) == (0, 12)
    err = error_of(tool, capsys, "migrate", "--index", old)
    assert "has format version 2, not 1: nothing to migrate" in err


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
def test_approximate_index_through_the_tool(tool, single_process_index, big_gallery, tmp_path,
                                            capsys):  # fmt: skip
    index = tmp_path / "index"
    shutil.copytree(single_process_index, index)
    image = big_gallery / "a1.jpg"
    q = ["--image", image, "--top-k", "5", "--output", tmp_path / "out"]
    exact = query(tool, index, *q)["queries"][0]["hits"]
    err = error_of(tool, capsys, "query", "--index", index, *q, "--backend", "ann")
    assert "has no approximate index; build one with" in err
    assert run(tool, "ann", "--index", index, "--kind", "ivf-flat", "--nlist", "4",
               "--nprobe", "4") == 0  # fmt: skip
    assert "IVF4,SQfp16" in capsys.readouterr().out
    hits = query(tool, index, *q)["queries"][0]["hits"]  # auto: the approximate index
    assert [h.row for h in hits] == [h.row for h in exact]  # every cell visited: exact
    assert "top 5 of 284 detections (ann, CWS" in capsys.readouterr().out
    assert run(tool, "info", "--index", index) == 0
    out = capsys.readouterr().out
    assert "approximate index: ivf-flat" in out and "bytes per detection: embeddings.f16 32" in out
    assert run(tool, "verify", "--index", index) == 0
    assert ": OK" in capsys.readouterr().out


def test_benchmark_search_scale(tmp_path, capsys):
    if not faiss_available():
        pytest.skip("faiss-cpu is not installed")
    benchmark = load_tool("benchmark")
    argv = ["search-scale", "--index-dir", str(tmp_path / "sim"), "--num-dets", "3000", "--dim",
            "16", "--queries", "8", "--exact-queries", "2", "--nprobe", "2,64", "--rerank", "64",
            "--nlist", "16", "--json", str(tmp_path / "r.json")]  # fmt: skip
    res = load_tool("benchmark").build_parser().parse_args(argv)
    out = res.func(res)
    assert out["build"]["bytes_per_detection"]["embeddings"] == 32.0
    assert out["build"]["ann"]["factory"] == "IVF16,PQ2"
    recalls = [r["recall@10"] for r in out["ann"]]
    assert out["ann"][1]["nprobe"] == 64 and recalls[1] >= recalls[0]
    strategies = {r["strategy"] for r in out["filtered"]}
    assert {"exact over the filtered rows", "approximate + post-filter"} <= strategies
    for r in out["filtered"]:
        if r["strategy"].startswith("exact"):
            assert r["recall@10"] == 1.0
    printed = capsys.readouterr().out
    assert "recall@10" in printed and "bytes per detection" in printed
    assert json.loads((tmp_path / "r.json").read_text())["results"]["spec"]["num_dets"] == 3000
    # a second run reuses the simulated index and its approximate index
    again = benchmark.build_parser().parse_args(argv[:-2] + ["--no-filters"])
    assert again.func(again)["build"]["reused"] is True
    assert re.search(r"simulate\+write 0 s \(reused\)", capsys.readouterr().out)
