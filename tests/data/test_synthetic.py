"""Tests of the built-in synthetic person-search dataset (tiny configurations, a few seconds)."""

import glob
import json
import os
import threading
import time

import numpy as np
import pytest
import scipy.io
from PIL import Image

from personsearch.data.datasets.synthetic import (
    INFO_FILE,
    SYNTHETIC_DEFAULTS,
    ensure_synthetic_dataset,
    generate_synthetic_dataset,
)
from personsearch.data.datasets.synthetic.cache import is_current
from personsearch.data.datasets.synthetic.layout import plan_layout
from personsearch.data.datasets.synthetic.params import GENERATOR_VERSION, normalize_params
from personsearch.data.datasets.synthetic.render import (
    NUM_ATTRIBUTES,
    is_distinct,
    sample_identities,
)

TINY = dict(
    num_train_images=6, num_test_images=6, num_train_ids=4, num_test_ids=3, gallery_sizes=(4,)
)
TEST_DIR = os.path.join("annotation", "test", "train_test")


def _generate(root, workers=1, **overrides):
    params = dict(TINY, **overrides)
    return generate_synthetic_dataset(str(root), workers=workers, progress=False, **params)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny set generated twice with seed 0 and once with seed 1."""
    base = tmp_path_factory.mktemp("synthetic")
    t0 = time.perf_counter()
    stats = _generate(base / "a")
    seconds = time.perf_counter() - t0
    _generate(base / "b")
    _generate(base / "c", seed=1)
    return {
        "a": str(base / "a"),
        "b": str(base / "b"),
        "c": str(base / "c"),
        "stats": stats,
        "seconds": seconds,
    }


def _files(root):
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            out[os.path.relpath(path, root)] = path
    return out


def _pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _load(root, rel, key):
    return scipy.io.loadmat(os.path.join(root, rel))[key]


def _s(value):
    return str(np.asarray(value).reshape(-1)[0])


def _box(value):
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    return None if arr.size == 0 else tuple(arr.tolist())


def _protocol(root, rel, key):
    """[(query image, query box, idname, [(gallery image, box or None)])]"""
    out = []
    for item in _load(root, rel, key).reshape(-1):
        q = item["Query"].reshape(-1)[0]
        gallery = [(_s(g["imname"]), _box(g["idlocate"])) for g in item["Gallery"].reshape(-1)]
        out.append((_s(q["imname"]), _box(q["idlocate"]), _s(q["idname"]), gallery))
    return out


def _images_mat(root):
    img = _load(root, os.path.join("annotation", "Images.mat"), "Img").reshape(-1)
    return {_s(e["imname"]): [_box(b["idlocate"]) for b in e["box"].reshape(-1)] for e in img}


# ------------------------------------------------------------------------------------------------
def test_tiny_generation_is_fast(tiny):
    assert tiny["seconds"] < 2.0, f"tiny set took {tiny['seconds']:.2f} s"


def test_deterministic_files_and_pixels(tiny):
    fa, fb = _files(tiny["a"]), _files(tiny["b"])
    assert fa.keys() == fb.keys()
    for rel in fa:
        if rel.endswith(".jpg"):
            np.testing.assert_array_equal(_pixels(fa[rel]), _pixels(fb[rel]), err_msg=rel)
        with open(fa[rel], "rb") as f1, open(fb[rel], "rb") as f2:
            assert f1.read() == f2.read(), f"{rel} differs between two generations with one seed"


def test_worker_processes_give_the_same_output(tmp_path):
    # >= 16 images use the process pool; the output must not depend on the number of workers
    params = dict(TINY, num_train_images=10)
    _generate(tmp_path / "serial", workers=1, **params)
    _generate(tmp_path / "pool", workers=2, **params)
    fs, fp = _files(str(tmp_path / "serial")), _files(str(tmp_path / "pool"))
    assert fs.keys() == fp.keys() and len(fs) > 16
    for rel in fs:
        with open(fs[rel], "rb") as f1, open(fp[rel], "rb") as f2:
            assert f1.read() == f2.read(), rel


def test_other_seed_differs(tiny):
    fa, fc = _files(tiny["a"]), _files(tiny["c"])
    for rel in ("annotation/Images.mat", "Image/SSM/s1.jpg"):
        with open(fa[rel], "rb") as f1, open(fc[rel], "rb") as f2:
            assert f1.read() != f2.read(), rel
    assert not np.array_equal(_pixels(fa["Image/SSM/s2.jpg"]), _pixels(fc["Image/SSM/s2.jpg"]))


def test_tree_and_boxes(tiny):
    root = tiny["a"]
    for rel in (
        "annotation/Images.mat",
        "annotation/pool.mat",
        f"{TEST_DIR}/Train.mat",
        f"{TEST_DIR}/TestG4.mat",
        "annotation/test/subset/Resolution.mat",
        "annotation/test/subset/Occlusion.mat",
        INFO_FILE,
    ):
        assert os.path.isfile(os.path.join(root, rel)), rel
    images = _images_mat(root)
    assert sorted(images) == sorted(f"s{k}.jpg" for k in range(1, 13))
    for name, boxes in images.items():
        with Image.open(os.path.join(root, "Image", "SSM", name)) as im:
            width, height = im.size
        assert 300 <= height <= 384 and 400 <= width <= 512
        assert len(boxes) >= 1
        assert len(set(boxes)) == len(boxes), f"{name}: two people share one box"
        for x, y, w, h in boxes:
            assert all(float(v).is_integer() for v in (x, y, w, h))
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= width and y + h <= height
    pool = [_s(c) for c in _load(root, "annotation/pool.mat", "pool").reshape(-1)]
    assert len(pool) == 6 and set(pool) <= set(images)
    for rel in glob.glob(os.path.join(root, "annotation", "**", "*.mat"), recursive=True):
        with open(rel, "rb") as fh:  # fixed header text instead of scipy's creation date
            assert fh.read(116).startswith(b"MATLAB 5.0 MAT-file, Platform: posix, Created by: ")
    info = json.load(open(os.path.join(root, INFO_FILE)))
    assert info["version"] == GENERATOR_VERSION
    assert info["params"]["num_train_ids"] == 4 and info["params"]["gallery_sizes"] == [4]
    assert info["statistics"]["images"] == 12


def test_identities_and_protocol(tiny):
    root = tiny["a"]
    images = _images_mat(root)
    pool = [_s(c) for c in _load(root, "annotation/pool.mat", "pool").reshape(-1)]
    train_images = set(images) - set(pool)
    train = _load(root, f"{TEST_DIR}/Train.mat", "Train").reshape(-1)
    train_ids = set()
    for cell in train:
        ident = cell.reshape(-1)[0]
        train_ids.add(_s(ident["idname"]))
        scenes = ident["scene"].reshape(-1)
        assert len(scenes) >= 1 and int(ident["nAppear"].reshape(-1)[0]) == len(scenes)
        names = [_s(sc["imname"]) for sc in scenes]
        assert len(set(names)) == len(names)
        for sc in scenes:
            assert _s(sc["imname"]) in train_images
            assert _box(sc["idlocate"]) in images[_s(sc["imname"])]
    assert len(train_ids) == 4

    # ground truth: where each test identity appears (from the generator's plan)
    plan = plan_layout(normalize_params(TINY))
    name_of = {j: f"s{j + 1}.jpg" for j in range(12)}
    protocol = _protocol(root, f"{TEST_DIR}/TestG4.mat", "TestG4")
    assert len(protocol) == 3
    query_ids = [idname for _, _, idname, _ in protocol]
    assert len(set(query_ids)) == 3 and not set(query_ids) & train_ids
    for (q_name, q_box, idname, gallery), q in zip(protocol, plan["queries"]):
        pid = int(idname[1:]) - 1
        assert pid == q["pid"]
        where = {name_of[j] for j in plan["appearances"][pid]}
        assert len(where) >= 2 and where <= set(pool)
        assert q_name in where and q_box in images[q_name]
        assert len(gallery) == 4
        g_names = [g for g, _ in gallery]
        assert len(set(g_names)) == 4 and q_name not in g_names and set(g_names) <= set(pool)
        n_pos = sum(b is not None for _, b in gallery)
        assert all(b is not None for _, b in gallery[:n_pos]), "positives must come first"
        assert {g for g, b in gallery if b is not None} == where - {q_name}
        for g, b in gallery:
            if b is not None:
                assert b in images[g]
    # subsets: same layout, queries taken from the protocol in order
    for rel, key in (("Resolution", "Test_Size"), ("Occlusion", "Occlusion1")):
        subset = _protocol(root, f"annotation/test/subset/{rel}.mat", key)
        assert [s[2] for s in subset] == [i for i in query_ids if i in {s[2] for s in subset}]
    res = _protocol(root, "annotation/test/subset/Resolution.mat", "Test_Size")
    assert len(res) == 1
    assert res[0][1][3] == min(p[1][3] for p in protocol)


def test_default_parameters_are_consistent():
    p = normalize_params({})
    assert p["gallery_sizes"] == [25, 50, 100]
    assert set(SYNTHETIC_DEFAULTS) == set(p)
    with pytest.raises(TypeError):
        normalize_params({"not_a_parameter": 1})
    with pytest.raises(ValueError):
        normalize_params({"num_test_images": 20, "gallery_sizes": (25, 50)})


def test_identities_are_pairwise_distinct():
    table = sample_identities(np.random.default_rng(3), 165)
    assert table.shape == (165, NUM_ATTRIBUTES)
    for k in range(len(table)):
        assert is_distinct(table[k], np.delete(table, k, axis=0))
    # identities do share attributes: most top colours are worn by several identities
    assert np.bincount(table[:, 0]).max() >= 5


def test_ensure_is_idempotent_and_regenerates(tmp_path):
    root = str(tmp_path / "synthetic")
    (tmp_path / ".synthetic.tmp-killed" / "Image").mkdir(parents=True)  # a killed generator's
    assert ensure_synthetic_dataset(root, progress=False, **TINY) == root
    info, image = os.path.join(root, INFO_FILE), os.path.join(root, "Image", "SSM", "s1.jpg")
    stamp = (os.stat(info).st_mtime_ns, os.stat(image).st_mtime_ns)
    time.sleep(0.02)
    ensure_synthetic_dataset(root, progress=False, **TINY)
    assert (os.stat(info).st_mtime_ns, os.stat(image).st_mtime_ns) == stamp

    ensure_synthetic_dataset(root, progress=False, **dict(TINY, seed=5))
    assert json.load(open(info))["params"]["seed"] == 5
    assert os.stat(image).st_mtime_ns != stamp[1]
    # nothing but the dataset and its lock file is left next to it
    assert sorted(os.listdir(tmp_path)) == [".synthetic.lock", "synthetic"]


def test_ensure_refuses_foreign_folder(tmp_path):
    root = tmp_path / "synthetic"
    root.mkdir()
    (root / "precious.txt").write_text("not a synthetic dataset")
    with pytest.raises(FileExistsError):
        ensure_synthetic_dataset(str(root), progress=False, **TINY)
    assert (root / "precious.txt").exists()


def test_ensure_concurrent_callers(tmp_path):
    root = str(tmp_path / "synthetic")
    results, errors = [], []

    def call():
        try:
            results.append(ensure_synthetic_dataset(root, progress=False, **TINY))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [root] * 3
    assert sorted(os.listdir(tmp_path)) == [".synthetic.lock", "synthetic"]
    assert is_current(root, normalize_params(TINY))


def test_loads_with_cuhk_sysu_loader(tiny):
    cuhk_sysu = pytest.importorskip("personsearch.data.datasets.cuhk_sysu")
    root = tiny["a"]
    plan = plan_layout(normalize_params(TINY))
    train = cuhk_sysu.load_cuhk_sysu(root, "train")
    test = cuhk_sysu.load_cuhk_sysu(root, "test")
    assert len(train) == 6 and len(test) == 6
    train_pids = [a["person_id"] for r in train for a in r["annotations"] if a["person_id"] >= 0]
    n_train_app = sum(len(plan["appearances"][k]) for k in range(4))
    assert len(train_pids) == n_train_app and set(train_pids) == {0, 1, 2, 3}
    test_pids = [a["person_id"] for r in test for a in r["annotations"] if a["person_id"] >= 0]
    n_test_app = sum(len(plan["appearances"][k]) for k in range(4, 7))
    assert len(test_pids) == n_test_app and set(test_pids) == {0, 1, 2}
    queries = [q for r in test for q in r.get("queries", [])]
    assert sorted(q["query_index"] for q in queries) == [0, 1, 2]
    stats = tiny["stats"]
    assert sum(len(r["annotations"]) for r in train + test) == stats["boxes"]
