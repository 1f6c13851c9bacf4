"""Search at archive scale: a simulated index of N detections, exact vs approximate search,
recall and latency, filtered search, memory per detection (``tools/benchmark.py search-scale``).

The simulated archive is a real index (:class:`~personsearch.apps.search.SearchIndex`, format 2)
built from generated embeddings and metadata, searched through the same code as ``tools/search.py
query`` (:class:`~personsearch.apps.search.GallerySearch`):

* **embeddings** (``--sim clustered``, the default): ``N / dets_per_id`` identities; identity i
  has a centre ``c_i = normalize(B z_i + 0.5 e_i)`` (``z_i`` ~ N(0, I) of ``intrinsic_dim``
  dimensions, ``B`` a fixed random orthonormal (intrinsic_dim, D) basis, ``e_i`` ~ N(0, I / D)
  scaled like ``B z_i``: identities lie near a low-dimensional subspace, as learned embeddings
  do); each detection is ``normalize(c_i + noise * n)`` with ``n`` ~ N(0, I) for a uniformly drawn
  identity (so Poisson(dets_per_id) detections per identity). With the defaults (noise 0.03,
  D = 512) detections of one identity have a cosine of about 0.6, others about 0 (measured and
  printed). ``--sim uniform``: independent uniform directions, no structure at all (the worst
  case of every approximate index: the "nearest" neighbours are barely nearer than the rest).
* **queries**: a new detection of a gallery identity (its centre plus fresh noise).
* **metadata**: images of ``cameras`` cameras over ``days`` days, ``dets_per_image`` detections
  per image, path ``camNNN/dayDD/FFFFFFFF.jpg``, camera name ``camNNN``, time = day x 86400 + a
  uniform second of the day, score ~ U(0.5, 1), uncertainty ~ N(-3, 0.5).

Recall@k of a search is ``|hits ∩ exact hits| / k`` averaged over the queries, where the exact
hits come from exact search over the same rows with the same filter and scoring (CWS).
"""

import hashlib
import json
import logging
import os
import resource
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["SimulationSpec", "build_simulated_index", "measure_search_scale"]


@dataclass
class SimulationSpec:
    """What the simulated archive holds (see the module docstring)."""

    num_dets: int = 1_000_000
    dim: int = 512
    sim: str = "clustered"
    dets_per_id: int = 20
    intrinsic_dim: int = 64
    noise: float = 0.03
    dets_per_image: int = 7
    cameras: int = 100
    days: int = 10
    seed: int = 0

    def fingerprint(self) -> str:
        """Identifies the simulated index (stored as its model fingerprint)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return "simulated-" + hashlib.sha1(text.encode()).hexdigest()[:16]


class _Identities:
    """Identity centres and detections of the clustered simulation."""

    def __init__(self, spec: SimulationSpec):
        rng = np.random.default_rng(spec.seed)
        self.spec = spec
        self.num_ids = max(1, spec.num_dets // spec.dets_per_id)
        d, k = spec.dim, min(spec.intrinsic_dim, spec.dim)
        basis = np.linalg.qr(rng.standard_normal((d, k)))[0].T.astype(np.float32)  # (k, D)
        self.centres = np.empty((self.num_ids, d), np.float16)
        for s in range(0, self.num_ids, 65536):
            n = min(65536, self.num_ids - s)
            c = rng.standard_normal((n, k), dtype=np.float32) @ basis
            c += 0.5 * np.sqrt(k / d) * rng.standard_normal((n, d), dtype=np.float32)
            c /= np.linalg.norm(c, axis=1, keepdims=True)
            self.centres[s : s + n] = c

    def detections(self, ids: np.ndarray, rng) -> np.ndarray:
        x = self.centres[ids].astype(np.float32)
        x += self.spec.noise * rng.standard_normal(x.shape, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def _uniform(n: int, d: int, rng) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def simulated_model(spec: SimulationSpec) -> Dict[str, str]:
    """The ``model`` record of a simulated index (no weights: nothing can be queried by image)."""
    fp = spec.fingerprint()
    return {"fingerprint": fp, "weights": "", "weights_sha1": "", "config_sha1": fp,
            "config": json.dumps(asdict(spec))}  # fmt: skip


def build_simulated_index(path: str, spec: SimulationSpec, chunk: int = 262_144, progress=True):
    """Build (or reuse, if ``path`` holds the same simulation) a simulated index.

    Returns:
        ``{"reused": bool, "seconds": float, "identities": _Identities or None}``.
    """
    from tqdm import tqdm

    from personsearch.apps.search import Entries, SearchIndex

    model = simulated_model(spec)
    if SearchIndex.exists(path):
        with SearchIndex.open(path) as old:
            if old.manifest["model"]["fingerprint"] == model["fingerprint"] and (
                old.num_rows == spec.num_dets
            ):
                ids = _Identities(spec) if spec.sim == "clustered" else None
                return {"reused": True, "seconds": 0.0, "identities": ids}
        raise ValueError(f"{path!r} holds another index; remove it or use another --index-dir")
    t0 = time.perf_counter()
    ids = _Identities(spec) if spec.sim == "clustered" else None
    rng = np.random.default_rng(spec.seed + 1)
    settings = {"score_thresh": 0.5, "dim": spec.dim}
    per = spec.dets_per_image
    with SearchIndex.open_for_writing(path, model, settings) as index:
        sid = index.source_id({"kind": "images", "root": "/simulated", "label": "simulated"})
        item0 = 0
        bar = tqdm(total=spec.num_dets, desc="simulated index", unit="det", disable=not progress)
        for s in range(0, spec.num_dets, chunk):
            n = min(chunk, spec.num_dets - s)
            m = -(-n // per)
            det_item = np.minimum(np.arange(n) // per, m - 1)
            if ids is not None:
                feats = ids.detections(rng.integers(0, ids.num_ids, n), rng)
            else:
                feats = _uniform(n, spec.dim, rng)
            cam = rng.integers(0, spec.cameras, m)
            day = rng.integers(0, spec.days, m)
            frame = item0 + np.arange(m)
            x1 = rng.uniform(0, 1800, n)
            y1 = rng.uniform(0, 900, n)
            entries = Entries(
                feats=feats.astype(np.float16),
                boxes=np.stack([x1, y1, x1 + 60, y1 + 150], 1).astype(np.float32),
                scores=rng.uniform(0.5, 1.0, n).astype(np.float32),
                uncertainty=rng.normal(-3.0, 0.5, n).astype(np.float32),
                det_item=det_item.astype(np.int64),
                item_source=np.full(m, sid, np.int32),
                item_path=np.array(
                    [f"cam{c:03d}/day{d:02d}/{f:08d}.jpg" for c, d, f in zip(cam, day, frame)]
                ),
                item_sha1=np.array([f"{f:040x}" for f in frame]),
                item_frame=np.full(m, -1, np.int64),
                item_time=(day * 86400 + rng.uniform(0, 86400, m)).astype(np.float64),
                item_hw=np.tile(np.array([[1080, 1920]], np.int32), (m, 1)),
                item_camera=np.array([f"cam{c:03d}" for c in cam]),
            )
            index.append(entries)
            item0 += m
            bar.update(n)
        bar.close()
    return {"reused": False, "seconds": time.perf_counter() - t0, "identities": ids}


def _queries(spec: SimulationSpec, ids: Optional[_Identities], n: int) -> np.ndarray:
    rng = np.random.default_rng(spec.seed + 2)
    if ids is None:
        return _uniform(n, spec.dim, rng)
    return ids.detections(rng.integers(0, ids.num_ids, n), rng)


def _rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _recall(got: Sequence, truth: Sequence, k: int) -> float:
    vals = []
    for (_, g), (_, t) in zip(got, truth):
        t = set(t[:k].tolist())
        if not t:  # nothing matches: right if nothing was returned
            vals.append(float(not len(g)))
            continue
        vals.append(len(set(g[:k].tolist()) & t) / len(t))
    return float(np.mean(vals))


def _timed_single(search, queries: np.ndarray, k: int, filters=None):
    """Each query alone: (results, seconds per query)."""
    results, seconds = [], []
    for q in queries:
        t0 = time.perf_counter()
        results.append(search.search_rows(q[None], k, filters)[0])
        seconds.append(time.perf_counter() - t0)
    return results, seconds


def _pct(seconds: Sequence[float], p: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000, p))


def default_filters(spec: SimulationSpec):
    """Named filters of several selectivities on the simulated metadata."""
    from personsearch.apps.search import SearchFilter

    return {
        "camera (1 of 100)": SearchFilter(cameras=["cam007"]),
        "path prefix (camera + day)": SearchFilter(path_prefix="cam007/day03/"),
        "time range (1 of 10 days)": SearchFilter(time_from=3 * 86400.0, time_to=4 * 86400.0),
        "score >= 0.9 (20 %)": SearchFilter(min_score=0.9),
        "uncertainty <= -3 (50 %)": SearchFilter(max_uncertainty=-3.0),
        "10 cameras, score >= 0.7": SearchFilter(
            cameras=[f"cam{c:03d}" for c in range(10)], min_score=0.7
        ),
    }


def measure_search_scale(
    path: str,
    spec: SimulationSpec,
    kind: str = "ivf-pq",
    nprobes: Sequence[int] = (16, 32, 64),
    reranks: Sequence[int] = (256,),
    num_queries: int = 100,
    exact_queries: int = 5,
    top_k: int = 10,
    nlist: int = 0,
    pq_m: int = 0,
    filters: bool = True,
    progress: bool = True,
) -> Dict:
    """Build (or reuse) the simulated index and its approximate index, then measure.

    Returns:
        A JSON-able dict: ``spec``, ``build`` (seconds, bytes per detection), ``open`` (seconds,
        RSS), ``exact`` (p50/p90 ms of single queries), ``ann`` (per setting: p50/p90 ms, recall),
        ``filtered`` (per filter: matching rows, strategy, p50 ms, recall), ``same_id_cosine``.
    """
    from personsearch.apps.search import AnnIndex, GallerySearch, SearchIndex, update_ann
    from personsearch.apps.search.filters import CompiledFilter
    from personsearch.apps.search.gallery import EXACT_LIMIT

    out: Dict = {"spec": asdict(spec), "kind": kind, "top_k": top_k}
    built = build_simulated_index(path, spec, progress=progress)
    ids = built["identities"]
    out["build"] = {"simulate_and_write_s": built["seconds"], "reused": built["reused"]}
    queries = _queries(spec, ids, num_queries)
    index = SearchIndex.open_for_writing(
        path, simulated_model(spec), {"score_thresh": 0.5, "dim": spec.dim}
    )
    try:
        ann = AnnIndex.load(index) if AnnIndex.exists(index) else None
        want = {"nlist": nlist, "m": pq_m}
        if (
            ann is None
            or ann.meta["kind"] != kind
            or any(v and ann.meta[k] != v for k, v in want.items())
        ):
            t0 = time.perf_counter()
            ann = update_ann(index, kind, want, rebuild=True, progress=progress)
            out["build"]["ann_s"] = time.perf_counter() - t0
    finally:
        index.close()
    files = {
        "embeddings": os.path.getsize(os.path.join(path, "embeddings.f16")),
        "sqlite": os.path.getsize(os.path.join(path, "index.sqlite")),
        "ann": ann.meta["bytes"],
    }
    out["build"]["bytes_per_detection"] = {k: v / spec.num_dets for k, v in files.items()}
    out["build"]["ann"] = {k: ann.meta[k] for k in ("factory", "nlist", "m", "trained_rows")}

    rss0 = _rss_mb()
    t0 = time.perf_counter()
    index = SearchIndex.open(path)
    search = GallerySearch(index, backend="ann", verify=False, progress=progress)
    out["open"] = {"seconds": time.perf_counter() - t0, "rss_mb_delta": _rss_mb() - rss0}
    out["open"]["ram_bytes_per_detection"] = out["open"]["rss_mb_delta"] * 2**20 / spec.num_dets
    exact = search.with_backend("exact")

    # identity structure, as a sanity check of the simulation
    if ids is not None:
        rng = np.random.default_rng(spec.seed + 3)
        q = ids.detections(rng.integers(0, ids.num_ids, 1), rng)
        other = _uniform(1, spec.dim, rng)
        same = ids.detections(np.repeat(rng.integers(0, ids.num_ids, 1), 2), rng)
        out["same_id_cosine"] = float(same[0] @ same[1])
        out["random_pair_cosine"] = float(q[0] @ other[0])

    # exact: single-query latency on a few queries, ground truth for all in one batched pass
    t0 = time.perf_counter()
    truth = exact.search_rows(queries, top_k)
    out["exact"] = {"batch_s_per_query": (time.perf_counter() - t0) / len(queries)}
    _, secs = _timed_single(exact, queries[:exact_queries], top_k)
    out["exact"].update(p50_ms=_pct(secs, 50), p90_ms=_pct(secs, 90), queries=len(secs))

    out["ann"] = []
    for nprobe in nprobes:
        for rerank in reranks:
            search.nprobe, search.rerank = nprobe, rerank
            _timed_single(search, queries[:3], top_k)  # warm-up (page cache, FAISS tables)
            got, secs = _timed_single(search, queries, top_k)
            out["ann"].append({
                "nprobe": nprobe, "rerank": rerank, "p50_ms": _pct(secs, 50),
                "p90_ms": _pct(secs, 90), f"recall@{top_k}": _recall(got, truth, top_k),
            })  # fmt: skip

    if filters:
        best = _pick(out["ann"], top_k)
        search.nprobe, search.rerank = best["nprobe"], best["rerank"]
        out["filter_settings"] = {"nprobe": best["nprobe"], "rerank": best["rerank"],
                                  "exact_limit": EXACT_LIMIT}  # fmt: skip
        out["filtered"] = []
        n_f = min(len(queries), 30)
        for name, f in default_filters(spec).items():
            compiled = CompiledFilter(f, index, search.columns)
            rows = compiled.rows()
            truth_f = exact.exact_in(queries[:n_f], rows, top_k)
            truth_f = [(truth_f[0][j], truth_f[1][j]) for j in range(n_f)]
            # both strategies, whatever the default limit would pick (exact search over a large
            # set is slow: a few queries time it)
            for limit in (10**12, 0):
                search.exact_limit = limit
                n_t = n_f if (limit == 0 or len(rows) <= EXACT_LIMIT) else min(n_f, 5)
                _timed_single(search, queries[:1], top_k, f)
                got, secs = _timed_single(search, queries[:n_t], top_k, f)
                out["filtered"].append({
                    "filter": name, "matching_rows": int(len(rows)),
                    "estimate": int(compiled.estimate()), "strategy": search.last_strategy,
                    "p50_ms": _pct(secs, 50), "p90_ms": _pct(secs, 90),
                    f"recall@{top_k}": _recall(got, truth_f[:n_t], top_k), "queries": n_t,
                })  # fmt: skip
    index.close()
    return out


def _pick(rows: List[Dict], k: int) -> Dict:
    """The fastest setting with recall >= 0.95 (else the most accurate)."""
    good = [r for r in rows if r[f"recall@{k}"] >= 0.95]
    if good:
        return min(good, key=lambda r: r["p50_ms"])
    return max(rows, key=lambda r: r[f"recall@{k}"])


def print_report(res: Dict) -> None:
    """The measurements as plain-text tables."""
    s, k = res["spec"], res["top_k"]
    print(f"\nsimulated index: {s['num_dets']} detections, D={s['dim']}, {s['sim']} "
          f"(seed {s['seed']}); top-{k}, CWS")  # fmt: skip
    if "same_id_cosine" in res:
        print(f"  same-identity cosine {res['same_id_cosine']:.2f}, random pair "
              f"{res['random_pair_cosine']:.2f}")  # fmt: skip
    b = res["build"]
    bpd = ", ".join(f"{n} {v:.1f}" for n, v in b["bytes_per_detection"].items())
    print(f"  build: simulate+write {b['simulate_and_write_s']:.0f} s"
          f"{' (reused)' if b['reused'] else ''}, approximate index "
          f"{b.get('ann_s', 0):.0f} s ({b['ann']['factory']}, trained on "
          f"{b['ann']['trained_rows']})")  # fmt: skip
    print(f"  on disk, bytes per detection: {bpd}")
    o = res["open"]
    print(f"  open for search: {o['seconds']:.1f} s, RAM +{o['rss_mb_delta']:.0f} MiB "
          f"({o['ram_bytes_per_detection']:.0f} bytes per detection; the embeddings are read "
          "through the page cache)")  # fmt: skip
    e = res["exact"]
    print(f"\n{'search':<34}{'p50 ms':>9}{'p90 ms':>9}{'recall@' + str(k):>11}")
    print(f"{'exact (1 query)':<34}{e['p50_ms']:>9.1f}{e['p90_ms']:>9.1f}{1.0:>11.3f}")
    for r in res["ann"]:
        name = f"{res['kind']} nprobe {r['nprobe']} rerank {r['rerank']}"
        print(f"{name:<34}{r['p50_ms']:>9.1f}{r['p90_ms']:>9.1f}{r[f'recall@{k}']:>11.3f}")
    if res.get("filtered"):
        fs = res["filter_settings"]
        print(f"\nfiltered (nprobe {fs['nprobe']}, rerank {fs['rerank']}; both strategies; the "
              f"search picks exact when at most {fs['exact_limit']} rows match)")  # fmt: skip
        print(f"{'filter':<30}{'rows':>10}{'strategy':>34}{'p50 ms':>9}{'recall':>8}")
        for r in res["filtered"]:
            print(f"{r['filter']:<30}{r['matching_rows']:>10}{r['strategy']:>34}"
                  f"{r['p50_ms']:>9.1f}{r[f'recall@{k}']:>8.3f}")  # fmt: skip
