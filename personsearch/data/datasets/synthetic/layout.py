"""Who appears where: identity tables, appearances per image, queries and gallery protocol files."""

import math
from typing import Dict, List, Sequence

import numpy as np

from personsearch.data.datasets.synthetic.render.attributes import sample_identities


def _assign_appearances(
    rng: np.random.Generator,
    num_ids: int,
    num_images: int,
    app_range: Sequence[int],
    per_image: Sequence[int],
    max_app: int,
) -> List[List[int]]:
    """Distribute identities over images: each identity at most once per image.

    Appearance counts are drawn from ``app_range`` (capped by ``max_app`` and the number of
    images), then nudged so that the per-image counts can stay inside ``per_image``; the images'
    counts are filled greedily (largest remaining capacity first, which succeeds whenever a
    solution exists).

    Returns:
        Per image, the local identity indices (0..num_ids-1) appearing in it.
    """
    cap = max(1, min(max_app, num_images))
    lo, hi = min(app_range[0], cap), min(app_range[1], cap)
    counts = rng.integers(lo, hi + 1, num_ids)
    min_total, max_total = per_image[0] * num_images, per_image[1] * num_images
    while counts.sum() < min_total and np.any(counts < cap):
        counts[rng.choice(np.flatnonzero(counts < cap))] += 1
    floor = max(1, min(lo, 2))
    while counts.sum() > max_total and np.any(counts > floor):
        counts[rng.choice(np.flatnonzero(counts > floor))] -= 1
    total = int(counts.sum())

    base = min(per_image[0], total // num_images)
    capacity = np.full(num_images, base, dtype=np.int64)
    top = max(per_image[1], math.ceil(total / num_images))
    # uneven extra capacity: some images are crowded, most hold a few identities
    weights = rng.gamma(0.7, size=num_images) + 1e-3
    while capacity.sum() < total:
        open_ = capacity < top
        prob = weights * open_
        extra = rng.multinomial(total - int(capacity.sum()), prob / prob.sum())
        capacity = np.minimum(capacity + extra, top)

    images: List[List[int]] = [[] for _ in range(num_images)]
    for k in np.argsort(-counts, kind="stable"):
        key = capacity + 0.5 * rng.random(num_images)
        for j in np.argsort(-key, kind="stable")[: counts[k]]:
            if capacity[j] > 0:
                images[j].append(int(k))
                capacity[j] -= 1
    for ids in images:
        rng.shuffle(ids)
    return images


def plan_layout(p: Dict) -> Dict:
    """Everything about the dataset that is not image content (drawn from the plan generator)."""
    rng = np.random.default_rng(np.random.SeedSequence(p["seed"], spawn_key=(0,)))
    n_tr_ids, n_te_ids = p["num_train_ids"], p["num_test_ids"]
    identities = sample_identities(rng, n_tr_ids + n_te_ids)
    n_img = p["num_train_images"] + p["num_test_images"]
    test_idx = np.sort(rng.permutation(n_img)[: p["num_test_images"]])
    train_idx = np.setdiff1d(np.arange(n_img), test_idx)
    sizes = [n for n in p["gallery_sizes"] if n < p["num_test_images"]]

    labeled: List[List[int]] = [[] for _ in range(n_img)]  # global pids per image
    tr = _assign_appearances(
        rng, n_tr_ids, len(train_idx), p["train_appearances"], p["labeled_per_image"], n_img
    )
    for j, ids in zip(train_idx, tr):
        labeled[j] = [int(k) for k in ids]
    te_lo = max(2, p["test_appearances"][0])
    te_hi = max(te_lo, p["test_appearances"][1])
    te = _assign_appearances(
        rng, n_te_ids, len(test_idx), (te_lo, te_hi), p["labeled_per_image"], min(sizes) + 1
    )
    for j, ids in zip(test_idx, te):
        labeled[j] = [n_tr_ids + int(k) for k in ids]

    appearances: Dict[int, List[int]] = {}
    for j, ids in enumerate(labeled):
        for pid in ids:
            appearances.setdefault(pid, []).append(j)
    for k in range(n_tr_ids + n_te_ids):
        split, need = ("train", 1) if k < n_tr_ids else ("test", 2)
        if len(appearances.get(k, [])) < need:
            raise ValueError(
                f"Synthetic {split} identity p{k + 1} got {len(appearances.get(k, []))} "
                f"appearances (needs >= {need}): use fewer identities or more images."
            )
    test_set = set(int(j) for j in test_idx)
    queries = []
    for k in range(n_tr_ids, n_tr_ids + n_te_ids):
        imgs = appearances[k]
        q = imgs[int(rng.integers(len(imgs)))]
        others = [j for j in test_set if j not in set(imgs)]
        queries.append(
            {"pid": k, "image": q, "distractors": [int(j) for j in rng.permutation(sorted(others))]}
        )
    return {
        "identities": identities,
        "test_idx": [int(j) for j in test_idx],
        "train_idx": [int(j) for j in train_idx],
        "labeled": labeled,
        "appearances": appearances,
        "queries": queries,
        "gallery_sizes": sizes,
    }
