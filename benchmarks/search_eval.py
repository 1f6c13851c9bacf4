"""The synthetic results set of ``tools/benchmark.py search-eval``: a random but well-formed
person-search results file of full CUHK-SYSU size, with its records, to time the protocol
scoring without a model."""

import numpy as np


def synthetic_search_set(
    num_images: int,
    num_queries: int,
    gallery_size: int,
    dets_per_image: float,
    dim: int,
    seed: int = 0,
    explicit_galleries: bool = True,
):
    """A random but well-formed results set with its records.

    Every query identity appears in its query image and in 1-3 other images; every image holds a
    few unlabeled people as well. Detections are jittered GT boxes plus clutter, with random scores
    in [0.3, 1) and random L2-normalised features (the true person's features lean towards the
    query's, so the metrics are not trivial).

    Returns:
        ``(results, records, metadata)`` ready for ``score_results``.
    """
    from personsearch.evaluation import build_results

    rng = np.random.default_rng(seed)
    if num_queries > num_images:
        raise ValueError("search-eval: need at least as many images as queries.")
    image_ids = [f"s{i:05d}.jpg" for i in range(num_images)]
    annotations = [[] for _ in range(num_images)]
    queries_of = [[] for _ in range(num_images)]
    identity_feats = rng.standard_normal((num_queries, dim)).astype(np.float32)

    def rand_box():
        w, h = rng.uniform(20, 120), rng.uniform(50, 300)
        x, y = rng.uniform(0, 800 - w), rng.uniform(0, 600 - h)
        return [float(x), float(y), float(x + w), float(y + h)]

    query_images = rng.permutation(num_images)[:num_queries]
    appearances = []
    for pid in range(num_queries):
        q_img = int(query_images[pid])
        others = rng.choice(num_images, size=int(rng.integers(1, 4)), replace=False)
        others = [int(o) for o in others if o != q_img]
        for img in [q_img] + others:
            annotations[img].append({"bbox": rand_box(), "person_id": pid, "category_id": 0})
        queries_of[q_img].append({"bbox": annotations[q_img][-1]["bbox"], "person_id": pid})
        appearances.append(others)
    for img in range(num_images):
        for _ in range(int(rng.integers(1, 5))):
            annotations[img].append({"bbox": rand_box(), "person_id": -1, "category_id": 0})

    gallery = {}
    for img in range(num_images):
        boxes, feats = [], []
        for a in annotations[img]:
            if rng.random() < 0.9:  # detected
                b = np.array(a["bbox"]) + rng.normal(0, 3, 4)
                boxes.append(b)
                f = rng.standard_normal(dim).astype(np.float32)
                if a["person_id"] >= 0:
                    f += 0.8 * identity_feats[a["person_id"]]
                feats.append(f)
        n_extra = max(0, int(rng.poisson(dets_per_image)) - len(boxes))
        for _ in range(n_extra):
            boxes.append(np.array(rand_box()))
            feats.append(rng.standard_normal(dim).astype(np.float32))
        n = len(boxes)
        feats = np.array(feats, np.float32).reshape(n, dim)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True).clip(1e-12)
        gallery[image_ids[img]] = {
            "boxes": np.array(boxes, np.float32).reshape(n, 4),
            "scores": rng.uniform(0.3, 1.0, n).astype(np.float32),
            "feats": feats,
        }

    records, queries = [], []
    qi = 0
    for img in range(num_images):
        rec_queries = []
        for q in queries_of[img]:
            pid = q["person_id"]
            entry = {"bbox": q["bbox"], "person_id": pid, "query_index": qi}
            if explicit_galleries:
                pos = appearances[pid]
                neg_pool = rng.choice(num_images, size=gallery_size + 8, replace=False)
                negs = [int(n) for n in neg_pool if n != img and n not in pos]
                negs = negs[: max(0, gallery_size - len(pos))]
                entry["gallery_image_ids"] = [image_ids[i] for i in pos + negs]
            rec_queries.append(entry)
            f = identity_feats[pid] + 0.5 * rng.standard_normal(dim).astype(np.float32)
            queries.append(
                {
                    "query_index": qi,
                    "image_id": image_ids[img],
                    "bbox": q["bbox"],
                    "person_id": pid,
                    "feat": f / np.linalg.norm(f),
                }
            )
            qi += 1
        record = {
            "file_name": image_ids[img],
            "image_id": image_ids[img],
            "height": 600,
            "width": 800,
            "annotations": annotations[img],
            "camera_id": img % 6,
        }
        if rec_queries:
            record["queries"] = rec_queries
        records.append(record)
    results = build_results("synthetic_benchmark", gallery, queries)
    protocol = "json" if explicit_galleries else "prw"
    return results, records, {"protocol": protocol}
