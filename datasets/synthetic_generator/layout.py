"""Who appears where: identity tables, appearances per image, queries and gallery protocol files."""

import math
from typing import Dict, List, Sequence

import numpy as np

from .render.attributes import (
    is_distinct,
    sample_attributes,
    sample_identities,
)


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


def extend_identities(
    rng: np.random.Generator, table: np.ndarray, num: int, min_diff: int = 2
) -> np.ndarray:
    """Draw ``num`` more identities, each distinguishable from every row of ``table`` and from the
    others drawn here (the rejection rule of ``sample_identities``, see ``is_distinct``).

    Args:
        rng: the generator to draw from.
        table: (K, NUM_ATTRIBUTES) the existing identities.
        num: how many identities to add.
        min_diff: minimum number of differing attributes.

    Returns:
        (num, NUM_ATTRIBUTES) int64 attribute table of the new identities only.

    Raises:
        RuntimeError: the attribute space is exhausted (``num`` far too large).
    """
    full = np.asarray(table, dtype=np.int64)
    tries = 0
    while len(full) < len(table) + num:
        tries += 1
        if tries > 200 * num + 1000:
            raise RuntimeError(
                f"Could not draw {num} more distinct identities next to {len(table)} "
                f"(got {len(full) - len(table)}): use fewer extra_train_ids."
            )
        cand = sample_attributes(rng)
        if is_distinct(cand, full, min_diff):
            full = np.concatenate([full, cand[None]], 0)
    return full[len(table) :]


def _add_extra_train(p: Dict, plan: Dict) -> None:
    """Append the extra training images and identities to ``plan`` (in place).

    They come from their own generator, ``SeedSequence(seed, spawn_key=(2,))``, so that nothing
    of the default plan changes: extra identity ``i`` gets the global pid ``K + i`` (``K`` the
    number of default identities, train and test) and extra image ``e`` the index ``N + e``
    (``N`` the number of default images). They follow the training rules (``train_appearances``,
    ``labeled_per_image``) among themselves.

    Args:
        p: normalized parameters with ``extra_train_images`` > 0.
        plan: the default plan made by :func:`plan_layout`; gets the extra images appended to
            ``labeled`` and ``train_idx``, their appearances and the extra ``identities`` rows.

    Raises:
        ValueError: an extra identity got no appearance.
    """
    n_img, n_ids = p["extra_train_images"], p["extra_train_ids"]
    base_ids, base_imgs = len(plan["identities"]), len(plan["labeled"])
    rng = np.random.default_rng(np.random.SeedSequence(p["seed"], spawn_key=(2,)))
    extra = extend_identities(rng, plan["identities"], n_ids)
    per_image = _assign_appearances(
        rng, n_ids, n_img, p["train_appearances"], p["labeled_per_image"], n_img
    )
    for e, ids in enumerate(per_image):
        j = base_imgs + e
        plan["labeled"].append([base_ids + int(k) for k in ids])
        plan["train_idx"].append(j)
        for k in ids:
            plan["appearances"].setdefault(base_ids + int(k), []).append(j)
    for k in range(base_ids, base_ids + n_ids):
        if not plan["appearances"].get(k):
            raise ValueError(
                f"Synthetic extra training identity p{k + 1} got no appearance: use fewer "
                f"extra_train_ids ({n_ids}) or more extra_train_images ({n_img})."
            )
    plan["identities"] = np.concatenate([plan["identities"], extra], 0)


def plan_layout(p: Dict) -> Dict:
    """Everything about the dataset that is not image content.

    The default set (images ``0..N-1``, identities ``0..K-1``, queries) is drawn from
    ``SeedSequence(seed, spawn_key=(0,))``; the extra training images and identities, if any, are
    appended from their own stream (see :func:`_add_extra_train`), so they change nothing else.

    Args:
        p: normalized parameters (see ``params.normalize_params``).

    Returns:
        ``identities`` (all, default ones first), ``test_idx``, ``train_idx`` (the extra images
        last), ``labeled`` (global pids per image), ``appearances`` (images per pid), ``queries``,
        ``gallery_sizes``, and ``num_base_images`` / ``num_base_ids`` (N and K).
    """
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
    plan = {
        "identities": identities,
        "test_idx": [int(j) for j in test_idx],
        "train_idx": [int(j) for j in train_idx],
        "labeled": labeled,
        "appearances": appearances,
        "queries": queries,
        "gallery_sizes": sizes,
        "num_base_images": n_img,
        "num_base_ids": n_tr_ids + n_te_ids,
    }
    if p.get("extra_train_images", 0) > 0:
        _add_extra_train(p, plan)
    return plan
