"""Tests of the built-in synthetic person-search dataset (tiny configurations, a few seconds)."""

import glob
import hashlib
import json
import os
import threading
import time

import numpy as np
import pytest
import scipy.io
from PIL import Image

from personsearch.data.datasets.synthetic import INFO_FILE, SYNTHETIC_DEFAULTS
from personsearch.data.datasets.synthetic.cache import is_current
from personsearch.data.datasets.synthetic.params import GENERATOR_VERSION, normalize_params
from synthetic_generator import ensure_synthetic_dataset, generate_synthetic_dataset
from synthetic_generator.layout import plan_layout
from synthetic_generator.render import NUM_ATTRIBUTES, is_distinct, sample_identities

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


# ------------------------------------------------------------------------------------------------
# extra training images and identities (extra_train_images / extra_train_ids)

# md5 of every file of the TINY set (seed 0, workers=1), recorded with the generator as it was
# before the extra-training parameters existed (opencv-python 4.11.0, numpy 1.26.4, scipy 1.15.3):
# with the extras at 0 the output must stay byte-identical. A different OpenCV/numpy/scipy build may
# change the bytes; then the set is not comparable with published numbers any more either.
TINY_MD5 = {
    "Image/SSM/s1.jpg": "a2c84dc075ccf19d797bed5077a18318",
    "Image/SSM/s10.jpg": "18380762b29179fe09133af19760869c",
    "Image/SSM/s11.jpg": "f138945cd69da71dd46c7b03bd3fc6e5",
    "Image/SSM/s12.jpg": "431304aae41d3b9f455418cbd0a63f05",
    "Image/SSM/s2.jpg": "c6f7bce3780a66971fe21770938401da",
    "Image/SSM/s3.jpg": "8589f4faed95aed2bac42c01ba537261",
    "Image/SSM/s4.jpg": "2b78fbc627128a196c48712a5bbee58b",
    "Image/SSM/s5.jpg": "130110b005c4c55492449ca1eac7669f",
    "Image/SSM/s6.jpg": "91758709d4ecf8f6bc0fc68db86f2ed3",
    "Image/SSM/s7.jpg": "07de6b0510d4116598e4d527ce8c6c73",
    "Image/SSM/s8.jpg": "c937a27448b1000030aa0abc59796c34",
    "Image/SSM/s9.jpg": "b280725753926ad6dfd6e4a8e9d581a9",
    "annotation/Images.mat": "39e5acc1684f58e553bfd23a2c95d9ba",
    "annotation/pool.mat": "7bddb0d5cebf70422bb28b9d59595424",
    "annotation/test/subset/Occlusion.mat": "287b92691433ddfe756d85399f84fa3d",
    "annotation/test/subset/Resolution.mat": "deaed7310771056ffaa53d43d95dc71e",
    "annotation/test/train_test/TestG4.mat": "ec53c4fae87d5428dfe7b78311dd511b",
    "annotation/test/train_test/Train.mat": "37ad9ef072da4d051a39eba639eeff0a",
    "synthetic_info.json": "b8e899d2cb85beb7319f71265af2dc96",
}
EXTRA = dict(extra_train_images=16, extra_train_ids=8)  # 16 images: rendered by worker processes
TEST_SPLIT_FILES = (
    "annotation/pool.mat",
    f"{TEST_DIR}/TestG4.mat",
    "annotation/test/subset/Resolution.mat",
    "annotation/test/subset/Occlusion.mat",
)


def _md5(path):
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def _bytes_equal(a, b):
    with open(a, "rb") as f1, open(b, "rb") as f2:
        return f1.read() == f2.read()


@pytest.fixture(scope="module")
def extra(tmp_path_factory):
    """The tiny set with 16 extra training images and 8 extra identities (2 workers)."""
    root = tmp_path_factory.mktemp("synthetic_extra") / "x"
    stats = _generate(root, workers=2, **EXTRA)
    return {"root": str(root), "stats": stats}


def _records(records, root):
    """Loader records by image file name, with file names relative to ``root``, as strings."""
    out = {}
    for r in records:
        rel = os.path.relpath(r["file_name"], root)
        out[rel] = repr(sorted(dict(r, file_name=rel).items()))
    return out


def test_zero_extras_are_byte_identical_to_the_previous_generator(tiny, tmp_path):
    files = _files(tiny["a"])
    assert {rel: _md5(path) for rel, path in files.items()} == TINY_MD5
    info = json.load(open(os.path.join(tiny["a"], INFO_FILE)))
    assert "extra_train_images" not in info["params"] and "extra_train_ids" not in info["params"]
    # explicit zeros are the default
    _generate(tmp_path / "zeros", extra_train_images=0, extra_train_ids=0)
    zeros = _files(str(tmp_path / "zeros"))
    assert zeros.keys() == files.keys()
    for rel in files:
        assert _bytes_equal(files[rel], zeros[rel]), rel


def test_extra_train_keeps_the_test_split_and_default_images(tiny, extra):
    base, root = _files(tiny["a"]), _files(extra["root"])
    images = [rel for rel in root if rel.endswith(".jpg")]
    assert sorted(images) == sorted(f"Image/SSM/s{k}.jpg" for k in range(1, 29))
    for rel in [r for r in base if r.endswith(".jpg")] + list(TEST_SPLIT_FILES):
        assert _bytes_equal(base[rel], root[rel]), f"{rel} changed with extra training data"
    assert not _bytes_equal(base[f"{TEST_DIR}/Train.mat"], root[f"{TEST_DIR}/Train.mat"])

    cuhk_sysu = pytest.importorskip("personsearch.data.datasets.cuhk_sysu")
    test_a = cuhk_sysu.load_cuhk_sysu(tiny["a"], "test")
    test_x = cuhk_sysu.load_cuhk_sysu(extra["root"], "test")
    assert _records(test_a, tiny["a"]) == _records(test_x, extra["root"])
    assert sum(len(r.get("queries", [])) for r in test_x) == 3
    train_a = cuhk_sysu.load_cuhk_sysu(tiny["a"], "train")
    train_x = cuhk_sysu.load_cuhk_sysu(extra["root"], "train")
    assert len(train_x) == 6 + 16
    # the default training images keep their ids, boxes and identities; the extra ones are added
    rec_a, rec_x = _records(train_a, tiny["a"]), _records(train_x, extra["root"])
    assert {rel: rec_x[rel] for rel in rec_a} == rec_a
    extra_names = {f"s{k}.jpg" for k in range(13, 29)}
    assert {os.path.basename(rel) for rel in set(rec_x) - set(rec_a)} == extra_names
    pids = [a["person_id"] for r in train_x for a in r["annotations"] if a["person_id"] >= 0]
    assert set(pids) == set(range(4 + 8)), "train person ids must be contiguous"
    new = [r for r in train_x if os.path.basename(r["file_name"]) in extra_names]
    assert {a["person_id"] for r in new for a in r["annotations"]} - {-1} == set(range(4, 12))
    idnames = [
        _s(c.reshape(-1)[0]["idname"])
        for c in _load(extra["root"], f"{TEST_DIR}/Train.mat", "Train").reshape(-1)
    ]
    assert idnames == [f"p{k}" for k in (1, 2, 3, 4, *range(8, 16))]  # p5..p7 are test identities
    stats = extra["stats"]
    assert stats["images"] == 28 and stats["train_images"] == 22 and stats["test_images"] == 6
    assert stats["train_identities"] == 12 and stats["extra_train_images"] == 16
    assert sum(len(r["annotations"]) for r in train_x + test_x) == stats["boxes"]
    info = json.load(open(os.path.join(extra["root"], INFO_FILE)))
    assert info["params"]["extra_train_images"] == 16 and info["params"]["extra_train_ids"] == 8
    assert info["version"] == GENERATOR_VERSION


def test_extra_identities_are_new_and_distinct():
    base = plan_layout(normalize_params(TINY))
    plan = plan_layout(normalize_params(dict(TINY, **EXTRA)))
    ids = plan["identities"]
    assert ids.shape == (7 + 8, NUM_ATTRIBUTES) and plan["num_base_ids"] == 7
    np.testing.assert_array_equal(ids[:7], base["identities"])
    assert plan["labeled"][:12] == base["labeled"] and plan["queries"] == base["queries"]
    assert plan["test_idx"] == base["test_idx"] and plan["train_idx"][:6] == base["train_idx"]
    assert plan["train_idx"][6:] == list(range(12, 28))
    for k in range(len(ids)):
        assert is_distinct(ids[k], np.delete(ids, k, axis=0)), f"p{k + 1} has a twin"
    for j in range(12, 28):
        assert all(7 <= pid < 15 for pid in plan["labeled"][j])
        assert len(set(plan["labeled"][j])) == len(plan["labeled"][j])
    for pid in range(7, 15):
        assert 1 <= len(plan["appearances"][pid]) and min(plan["appearances"][pid]) >= 12
    # at the scale of the default set: 560 extra identities, none a twin of the 240 others
    big = plan_layout(normalize_params(dict(extra_train_images=1200, extra_train_ids=560)))
    table, k0 = big["identities"], big["num_base_ids"]
    assert table.shape == (800, NUM_ATTRIBUTES) and k0 == 240
    for k in range(k0, len(table)):
        assert is_distinct(table[k], np.delete(table, k, axis=0)), f"p{k + 1} has a twin"
    labeled = [n for ids_ in big["labeled"][500:] for n in [len(ids_)]]
    assert min(labeled) >= 2 and max(labeled) <= 6


@pytest.mark.parametrize(
    "params, message",
    [
        ({"extra_train_images": -1}, "extra_train_images must be a non-negative int, got -1"),
        ({"extra_train_ids": 1.5}, "extra_train_ids must be a non-negative int, got 1.5"),
        ({"extra_train_images": "many"}, "extra_train_images must be a non-negative int"),
        ({"extra_train_images": 3}, "extra_train_ids must be >= 1 when extra_train_images > 0"),
        ({"extra_train_ids": 2}, "extra_train_ids=2 needs extra_train_images >= 1"),
        (
            {"extra_train_images": 2, "extra_train_ids": 13},
            r"extra_train_ids=13 is too large for extra_train_images=2.*labeled_per_image\[1\]=6",
        ),
    ],
)
def test_bad_extra_parameters_name_the_parameter(params, message):
    with pytest.raises(ValueError, match=message):
        normalize_params(dict(TINY, **params))


def test_ensure_treats_caches_without_the_extra_keys_as_zero(tmp_path):
    root = str(tmp_path / "synthetic")
    ensure_synthetic_dataset(root, progress=False, **TINY)
    info_path = os.path.join(root, INFO_FILE)
    image = os.path.join(root, "Image", "SSM", "s1.jpg")
    info = json.load(open(info_path))
    assert "extra_train_images" not in info["params"]  # as written before the keys existed
    stamp = os.stat(image).st_mtime_ns
    ensure_synthetic_dataset(root, progress=False, extra_train_images=0, **TINY)
    info["params"].update(extra_train_images=0, extra_train_ids=0)  # recorded explicitly: same
    with open(info_path, "w") as fh:
        json.dump(info, fh)
    assert is_current(root, normalize_params(TINY))
    ensure_synthetic_dataset(root, progress=False, **TINY)
    assert os.stat(image).st_mtime_ns == stamp

    ensure_synthetic_dataset(root, progress=False, extra_train_images=2, extra_train_ids=1, **TINY)
    assert not is_current(root, normalize_params(TINY))
    assert is_current(root, normalize_params(dict(TINY, extra_train_images=2, extra_train_ids=1)))
    assert os.path.isfile(os.path.join(root, "Image", "SSM", "s14.jpg"))
    assert sorted(os.listdir(tmp_path)) == [".synthetic.lock", "synthetic"]
