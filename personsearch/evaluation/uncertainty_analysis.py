"""Does a model's per-box uncertainty track box quality? Controlled degradations of ground-truth
boxes and the statistics ``tools/analyze_uncertainty.py`` reports.

For every ground-truth person of a split the model embeds (:meth:`PersonSearchPredictor.embed`
with ``with_uncertainty``) the exact box, the same box shifted so that its IoU with the ground
truth is 0.9 / 0.7 / 0.5 (:func:`jitter_to_iou`), and the exact box in the image downscaled so
that the person is below ``lowres_height`` pixels. A UG that works gives rising uncertainty as the
box degrades: a negative Spearman correlation with IoU and with the person's height.
"""

import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import cv2
import numpy as np
from scipy import stats

from personsearch.utils.model_tools import gt_boxes_xyxy


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two XYXY boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def jitter_to_iou(
    box: Sequence[float],
    target: float,
    rng: np.random.Generator,
    image_size: Optional[Tuple[int, int]] = None,
    tries: int = 20,
) -> Tuple[np.ndarray, float]:
    """The box shifted in a random direction by exactly the distance that gives IoU ``target``
    with the original (bisection on the distance; the IoU of a shift falls monotonically with its
    length), kept inside the image when ``image_size`` is given.

    Args:
        box: (4,) XYXY box.
        target: wanted IoU in (0, 1].
        rng: random generator (the direction).
        image_size: (height, width); directions whose box leaves the image are redrawn, up to
            ``tries`` times, then the box is clipped (its IoU then differs from ``target``).
        tries: directions tried before clipping.

    Returns:
        ``(jittered (4,), its IoU with box)``.
    """
    box = np.asarray(box, dtype=np.float64)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target IoU must be in (0, 1], got {target}")
    w, h = box[2] - box[0], box[3] - box[1]
    out = box
    for _ in range(max(1, tries)):
        angle = rng.uniform(0.0, 2.0 * math.pi)
        unit = np.array([w * math.cos(angle), h * math.sin(angle)])
        lo, hi = 0.0, 1.0  # a shift of one box side along both axes leaves no overlap
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            shifted = box + np.tile(unit * mid, 2)
            if box_iou(box, shifted) > target:
                lo = mid
            else:
                hi = mid
        out = box + np.tile(unit * 0.5 * (lo + hi), 2)
        if image_size is None:
            break
        height, width = image_size
        if out[0] >= 0 and out[1] >= 0 and out[2] <= width and out[3] <= height:
            break
    if image_size is not None:
        height, width = image_size
        out = np.clip(out, 0, [width, height, width, height])
    return out, box_iou(box, out)


def occluded_queries(protocol: Iterable[Mapping]) -> Set[Tuple[str, Tuple[int, ...]]]:
    """``{(image_id, rounded box)}`` of the queries of an occlusion protocol
    (``load_cuhk_sysu_protocol(root, subset="occlusion")``)."""
    out = set()
    for item in protocol:
        q = item["query"]
        out.add((str(q["image_id"]), tuple(int(round(v)) for v in q["bbox"])))
    return out


def measure_uncertainty(
    predictor,
    records: Sequence[Mapping],
    ious: Sequence[float] = (0.9, 0.7, 0.5),
    lowres_height: float = 60.0,
    seed: int = 0,
    occluded: Optional[Set[Tuple[str, Tuple[int, ...]]]] = None,
    progress=None,
) -> List[Dict]:
    """The model's uncertainty for every ground-truth person and its degradations.

    Args:
        predictor: a :class:`~personsearch.engine.PersonSearchPredictor` whose model outputs
            uncertainty (``MODEL.UGAS.UG.OUTPUT_VARIANCE True``).
        records: the split's records (``file_name``, ``image_id``, ``annotations``).
        ious: target IoUs of the jittered copies.
        lowres_height: the downscaled person's height bound in pixels (0: no low-res variant).
        seed: seed of the jitter directions.
        occluded: ``{(image_id, rounded box)}`` of occluded persons (None: unknown).
        progress: optional wrapper of the record iterator (e.g. tqdm).

    Returns:
        One row per embedded box: ``{"image_id", "person", "person_id", "variant" ("gt",
        "iou0.9", ..., "lowres"), "iou", "height" (the person's height in the pixels the model was
        given the image at, before its test resize), "uncertainty", "occluded" (bool or None)}``.

    Raises:
        ValueError: a record's image cannot be read (names the file).
    """
    rng = np.random.default_rng(seed)
    rows: List[Dict] = []
    iterator = progress(records) if progress is not None else records
    for rec in iterator:
        image = cv2.imread(rec["file_name"], cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read image {rec['file_name']!r} of {rec['image_id']!r}")
        size = image.shape[:2]
        gts = gt_boxes_xyxy(rec)
        keep = (gts[:, 2] - gts[:, 0] >= 2) & (gts[:, 3] - gts[:, 1] >= 2)
        anns = [a for a, k in zip(rec.get("annotations", []), keep) if k]
        gts = gts[keep]
        if len(gts) == 0:
            continue
        boxes, meta = [], []
        for p, (gt, ann) in enumerate(zip(gts, anns)):
            flag = None
            if occluded is not None:
                flag = (str(rec["image_id"]), tuple(int(round(v)) for v in gt)) in occluded
            base = {
                "image_id": str(rec["image_id"]),
                "person": p,
                "person_id": int(ann.get("person_id", -1)),
                "height": float(gt[3] - gt[1]),
                "occluded": flag,
            }
            boxes.append(gt)
            meta.append(dict(base, variant="gt", iou=1.0))
            for t in ious:
                jittered, iou = jitter_to_iou(gt, t, rng, size)
                boxes.append(jittered)
                meta.append(dict(base, variant=f"iou{t:g}", iou=float(iou)))
        _, unc = predictor.embed(image, np.stack(boxes), with_uncertainty=True)
        for m, u in zip(meta, unc.tolist()):
            rows.append(dict(m, uncertainty=float(u)))
        if lowres_height <= 0:
            continue
        for p, (gt, ann) in enumerate(zip(gts, anns)):
            h = gt[3] - gt[1]
            if h < lowres_height:
                continue
            scale = (lowres_height - 1.0) / h
            small = cv2.resize(
                image,
                (max(1, round(size[1] * scale)), max(1, round(size[0] * scale))),
                interpolation=cv2.INTER_AREA,
            )
            sy, sx = small.shape[0] / size[0], small.shape[1] / size[1]
            box = np.clip(gt * [sx, sy, sx, sy], 0, [small.shape[1], small.shape[0]] * 2)
            _, unc = predictor.embed(small, box[None], with_uncertainty=True)
            rows.append(
                {
                    "image_id": str(rec["image_id"]),
                    "person": p,
                    "person_id": int(ann.get("person_id", -1)),
                    "variant": "lowres",
                    "iou": 1.0,
                    "height": float(box[3] - box[1]),
                    "uncertainty": float(unc[0]),
                    "occluded": None,
                }
            )
    return rows


def _spearman(a: Sequence[float], b: Sequence[float]) -> Optional[Dict[str, float]]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    res = stats.spearmanr(a, b)
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": int(len(a))}


def summarize_uncertainty(rows: Sequence[Mapping]) -> Dict:
    """Statistics of :func:`measure_uncertainty`'s rows.

    Returns:
        ``{"variants": {variant: {n, mean, std, p10, p50, p90}}, "spread": {std, iqr, range} of
        the exact boxes' uncertainty, "spearman_iou" (exact + jittered boxes),
        "spearman_height" (exact boxes), "paired": {variant: fraction of persons whose degraded
        box is more uncertain than the exact one, mean difference}, "occlusion": {auc (P(an
        occluded query is more uncertain than a visible one)), n_occluded, n_visible} or None}``;
        a statistic that cannot be computed is None.
    """
    by_variant: Dict[str, List[Mapping]] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], []).append(r)
    variants = {}
    for name, rs in by_variant.items():
        u = np.asarray([r["uncertainty"] for r in rs])
        variants[name] = {
            "n": int(len(u)),
            "mean": float(u.mean()),
            "std": float(u.std(ddof=1)) if len(u) > 1 else 0.0,
            "p10": float(np.percentile(u, 10)),
            "p50": float(np.percentile(u, 50)),
            "p90": float(np.percentile(u, 90)),
        }
    gt = by_variant.get("gt", [])
    gt_u = np.asarray([r["uncertainty"] for r in gt])
    spread = None
    if len(gt_u) > 1:
        q75, q25 = np.percentile(gt_u, [75, 25])
        spread = {
            "std": float(gt_u.std(ddof=1)),
            "iqr": float(q75 - q25),
            "range": float(np.ptp(gt_u)),
        }
    boxes = [r for r in rows if r["variant"] == "gt" or r["variant"].startswith("iou")]
    key = {(r["image_id"], r["person"]): r["uncertainty"] for r in gt}
    paired = {}
    for name, rs in by_variant.items():
        if name == "gt":
            continue
        diffs = [
            r["uncertainty"] - key[(r["image_id"], r["person"])]
            for r in rs
            if (r["image_id"], r["person"]) in key
        ]
        if diffs:
            d = np.asarray(diffs)
            paired[name] = {
                "n": int(len(d)),
                "more_uncertain": float((d > 0).mean()),
                "mean_difference": float(d.mean()),
            }
    occlusion = None
    flagged = [r for r in gt if r["occluded"] is not None]
    occ = [r["uncertainty"] for r in flagged if r["occluded"]]
    vis = [r["uncertainty"] for r in flagged if not r["occluded"]]
    if occ and vis:
        u = stats.mannwhitneyu(occ, vis, alternative="two-sided")
        occlusion = {
            "auc": float(u.statistic / (len(occ) * len(vis))),
            "p": float(u.pvalue),
            "n_occluded": len(occ),
            "n_visible": len(vis),
        }
    return {
        "variants": variants,
        "spread": spread,
        "spearman_iou": _spearman([r["iou"] for r in boxes], [r["uncertainty"] for r in boxes]),
        "spearman_height": _spearman([r["height"] for r in gt], gt_u),
        "paired": paired,
        "occlusion": occlusion,
    }
