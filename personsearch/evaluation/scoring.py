"""Score a results file (or the evaluator's collected results) under a dataset's protocol.

:func:`score_results` is the one code path shared by :class:`PersonSearchEvaluator` and
``tools/evaluate_search.py``: validate, pack, build the protocol's galleries, run the pure
protocol functions, convert to percent.
"""

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from ..config import upgrade_renamed_keys
from .cbgm import CBGMOptions
from .detection import evaluate_detections
from .galleries import (
    AllButQueryGalleries,
    JsonGalleries,
    SubsetView,
    cuhk_sysu_galleries,
    lowres_subset,
    map_protocol_queries,
    person_index,
)
from .results_io import validate_results
from .search_protocol import TOPK, PackedDetections, evaluate_search

logger = logging.getLogger(__name__)

PROTOCOLS = ("cuhk_sysu", "prw", "json")
SUBSETS = ("", "resolution", "occlusion", "lowres")
# Reference CBGM hyper-parameters per protocol (k1, k2).
CBGM_DEFAULTS = {"cuhk_sysu": (10, 3), "prw": (30, 4)}


@dataclass(frozen=True)
class SearchOptions:
    """Evaluation options; the fields mirror ``cfg.TEST.SEARCH`` (see personsearch/config.py):
    ``det_thresh`` is ``GALLERY_SCORE_THRESH`` (the protocols' name for it), ``detection_thresh``
    is ``DETECTION_THRESH``."""

    gallery_size: int = 100
    subset: str = ""
    lowres_fraction: float = 0.1
    det_thresh: float = 0.5
    cws: bool = True
    cross_camera: bool = False
    cbgm: bool = False
    cbgm_k1: int = -1  # -1: the protocol's reference value (CBGM_DEFAULTS)
    cbgm_k2: int = -1
    detection_thresh: float = 0.01
    detection_labeled_only: bool = False

    def __post_init__(self):
        if self.subset not in SUBSETS:
            raise ValueError(f"Unknown search subset {self.subset!r}; expected one of {SUBSETS}.")
        for name in ("det_thresh", "detection_thresh"):
            if math.isnan(getattr(self, name)):  # every comparison with NaN is False
                raise ValueError(f"SearchOptions.{name} must be a number, got NaN.")

    @classmethod
    def from_config(cls, cfg=None) -> "SearchOptions":
        """Read ``cfg.TEST.SEARCH``; ``cfg=None`` gives the defaults."""
        if cfg is None:
            return cls()
        s = upgrade_renamed_keys(cfg).TEST.SEARCH
        return cls(
            gallery_size=int(s.GALLERY_SIZE),
            subset=str(s.SUBSET or ""),
            lowres_fraction=float(s.LOWRES_FRACTION),
            det_thresh=float(s.GALLERY_SCORE_THRESH),
            cws=bool(s.CWS),
            cross_camera=bool(s.CROSS_CAMERA),
            cbgm=bool(s.CBGM.ENABLED),
            cbgm_k1=int(s.CBGM.K1),
            cbgm_k2=int(s.CBGM.K2),
            detection_thresh=float(s.DETECTION_THRESH),
            detection_labeled_only=bool(s.DETECTION_LABELED_ONLY),
        )

    def with_(self, **changes) -> "SearchOptions":
        """A copy with some fields changed."""
        return replace(self, **changes)


def _meta_get(metadata: Any, key: str, default=None):
    """Read ``key`` from a detectron2 Metadata, a dict or any object with attributes."""
    if metadata is None:
        return default
    getter = getattr(metadata, "get", None)
    if callable(getter):
        return getter(key, default)
    return getattr(metadata, key, default)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass
class _Queries:
    query_index: np.ndarray  # (Q,)
    image_ids: List[str]
    image_pos: np.ndarray  # (Q,) index into records
    boxes: np.ndarray  # (Q, 4)
    pids: np.ndarray  # (Q,)
    feats: np.ndarray  # (Q, D)
    contexts: List[Optional[np.ndarray]]  # per query (K, D) CBGM context or None

    def take(self, pos: np.ndarray) -> "_Queries":
        pos = np.asarray(pos, dtype=np.int64)
        return _Queries(
            self.query_index[pos],
            [self.image_ids[p] for p in pos],
            self.image_pos[pos],
            self.boxes[pos],
            self.pids[pos],
            self.feats[pos],
            [self.contexts[p] for p in pos],
        )


def pack_results(results: Mapping, records: Sequence[Mapping], dim: int):
    """Turn a (validated) results dict into a :class:`PackedDetections` in record order and a
    query table sorted by query_index."""
    image_ids = [str(r["image_id"]) for r in records]
    gallery = results["gallery"]
    dets = PackedDetections.from_per_image(
        image_ids,
        [_np(gallery[i]["boxes"]) for i in image_ids],
        [_np(gallery[i]["scores"]) for i in image_ids],
        [_np(gallery[i]["feats"]) for i in image_ids],
        dim,
    )
    image_index = {image_id: i for i, image_id in enumerate(image_ids)}
    qs = sorted(results["queries"], key=lambda q: int(q["query_index"]))
    queries = _Queries(
        np.array([int(q["query_index"]) for q in qs], np.int64),
        [str(q["image_id"]) for q in qs],
        np.array([image_index[str(q["image_id"])] for q in qs], np.int64),
        np.array([_np(q["bbox"]).astype(np.float64).reshape(4) for q in qs]).reshape(-1, 4),
        np.array([int(q["person_id"]) for q in qs], np.int64),
        np.array([_np(q["feat"]).astype(np.float32).reshape(-1) for q in qs]).reshape(len(qs), dim),
        [
            (
                None
                if q.get("context_feats") is None
                else _np(q["context_feats"]).astype(np.float32).reshape(-1, dim)
            )
            for q in qs
        ],
    )
    return dets, queries, image_index


def _protocol_galleries(
    protocol: str,
    metadata: Any,
    records: Sequence[Mapping],
    queries: _Queries,
    image_index: Mapping[str, int],
    options: SearchOptions,
):
    """Return ``(query positions evaluated, galleries, info)`` for the protocol."""
    info: Dict[str, Any] = {}
    subset = options.subset
    if subset in ("resolution", "occlusion") and protocol != "cuhk_sysu":
        raise ValueError(
            f"Subset {subset!r} exists only for CUHK-SYSU (protocol 'cuhk_sysu'), not {protocol!r}."
        )
    if protocol == "cuhk_sysu":
        from personsearch.data.datasets.cuhk_sysu import load_cuhk_sysu_protocol

        root = _meta_get(metadata, "root")
        if not root:
            raise ValueError("CUHK-SYSU protocol: the dataset metadata has no 'root'.")
        full_set = options.gallery_size == -1
        size = 50 if full_set else options.gallery_size
        file_subset = subset if subset in ("resolution", "occlusion") else None
        protocol_list = load_cuhk_sysu_protocol(root, size, file_subset)
        source = f"CUHK-SYSU {file_subset or f'TestG{size}'} protocol"
        sizes = {str(r["image_id"]): (r.get("height"), r.get("width")) for r in records}
        sizes = {k: v for k, v in sizes.items() if None not in v}
        positions = map_protocol_queries(
            [p["query"] for p in protocol_list], queries.image_ids, queries.boxes, source, sizes
        )
        galleries = cuhk_sysu_galleries(protocol_list, image_index, full_set, source)
        not_in_protocol = len(queries.query_index) - len(set(positions.tolist()))
        if file_subset is None and not_in_protocol:
            logger.warning(
                "%d dataset queries are not in the %s and are not evaluated.",
                not_in_protocol,
                source,
            )
        info["gallery_size"] = options.gallery_size
    elif protocol in ("prw", "json"):
        if options.cross_camera:
            no_camera = [str(r["image_id"]) for r in records if r.get("camera_id") is None]
            if no_camera:
                raise ValueError(
                    f"Cross-camera search needs a 'camera_id' in every record; {len(no_camera)} "
                    f"of {len(records)} images have none, e.g. {no_camera[0]!r}."
                )
        persons = person_index(records)
        cams = [r.get("camera_id") for r in records]
        positions = np.arange(len(queries.query_index))
        fallback = AllButQueryGalleries(
            len(records),
            queries.image_pos,
            queries.pids,
            persons,
            cams if options.cross_camera else None,
            options.cross_camera,
        )
        if protocol == "prw":
            galleries = fallback
        else:
            by_index = {}
            for r in records:
                for q in r.get("queries", None) or []:
                    by_index[int(q["query_index"])] = q.get("gallery_image_ids")
            explicit = [by_index.get(int(qi)) for qi in queries.query_index]
            galleries = JsonGalleries(explicit, fallback, image_index, queries.query_index)
        info["cross_camera"] = options.cross_camera
    else:
        raise ValueError(
            f"Unknown person-search protocol {protocol!r} in the dataset metadata; expected one "
            f"of {PROTOCOLS}."
        )
    if subset == "lowres":
        sel, height = lowres_subset(
            queries.boxes[positions], queries.query_index[positions], options.lowres_fraction
        )
        positions = positions[sel]
        galleries = SubsetView(galleries, sel)
        info["lowres_height_threshold"] = height
        logger.info(
            "lowres subset: %d queries with box height <= %.1f px (fraction %.3f).",
            len(sel),
            height,
            options.lowres_fraction,
        )
    return positions, galleries, info


def resolve_cbgm_options(protocol: Optional[str], options: SearchOptions) -> CBGMOptions:
    """CBGM's k1/k2: the configured values, or (-1) the reference values of the protocol
    (CUHK-SYSU 10/3, PRW 30/4; CUHK-SYSU's for other protocols)."""
    k1, k2 = CBGM_DEFAULTS.get(protocol, CBGM_DEFAULTS["cuhk_sysu"])
    return CBGMOptions(
        k1 if options.cbgm_k1 == -1 else options.cbgm_k1,
        k2 if options.cbgm_k2 == -1 else options.cbgm_k2,
    )


def score_results(
    results: Mapping,
    records: Sequence[Mapping],
    metadata: Any,
    options: Optional[SearchOptions] = None,
    evaluate_detection: bool = True,
) -> Dict[str, Dict[str, Any]]:
    """Score search (and detection) for a results dict under the dataset's protocol.

    Protocol selection: ``metadata.protocol`` is ``"cuhk_sysu"`` (gallery lists from the
    dataset's TestG{N}.mat / subset files under ``metadata.root``; gallery size -1 = TestG50 plus
    all other test images as negatives), ``"prw"`` (every test image except the query's;
    ``cross_camera`` also drops the query camera) or ``"json"`` (a query's ``gallery_image_ids``
    or all-but-query). ``subset`` "resolution"/"occlusion" (CUHK-SYSU files) or "lowres" (the
    smallest-box fraction of the evaluated queries) restricts the queries.

    Args:
        results: a results dict (see ``results_io``).
        records: the dataset records it was produced on.
        metadata: the dataset metadata (or any object/dict with ``protocol`` and ``root``).
        options: evaluation options; defaults if None.
        evaluate_detection: also compute detection AP/recall.

    Returns:
        ``{"search": {"mAP", "top1", "top5", "top10"}, "detection": {"AP", "recall"},
        "info": {...}}``; metrics are Python floats in percent; "info" holds counts
        (``num_queries``, ``num_queries_without_match``, ...) and the per-query APs.

    Raises:
        ValueError: the results do not match the dataset, or the protocol is unknown.
    """
    options = options or SearchOptions()
    protocol = _meta_get(metadata, "protocol")
    dim = validate_results(results, records)
    dets, queries, image_index = pack_results(results, records, dim)
    if len(queries.query_index) == 0:
        raise ValueError(
            f"Dataset {results.get('dataset', '')!r} has no queries (no record carries "
            "'queries'), so person search cannot be scored; is it a training split?"
        )
    if not np.any(dets.scores >= options.det_thresh):
        logger.warning(
            "None of the %d gallery images has a detection with score >= %s (det_thresh); every "
            "query scores 0. Is the model trained, and is the threshold right?",
            dets.num_images,
            options.det_thresh,
        )
    positions, galleries, info = _protocol_galleries(
        protocol, metadata, records, queries, image_index, options
    )
    evaluated = queries.take(positions)
    cbgm = None
    if options.cbgm:
        cbgm = resolve_cbgm_options(protocol, options)
        info["cbgm_k1"], info["cbgm_k2"] = cbgm.k1, cbgm.k2
    res = evaluate_search(
        dets,
        evaluated.feats,
        galleries,
        det_thresh=options.det_thresh,
        cws=options.cws,
        cbgm=cbgm,
        query_images=evaluated.image_pos,
        query_boxes=evaluated.boxes,
        query_contexts=evaluated.contexts,
        topk=TOPK,
    )
    if cbgm is not None:
        exact = sum(c is not None for c in evaluated.contexts)
        info["cbgm_exact_contexts"] = exact
        if exact < len(evaluated.contexts):
            logger.info(
                "CBGM: %d of %d queries have no saved query-image context in the results; it is "
                "emulated from the query image's detections for them (docs/METHODS.md).",
                len(evaluated.contexts) - exact,
                len(evaluated.contexts),
            )
    summary = res.summary()
    out: Dict[str, Dict[str, Any]] = {
        "search": {k: 100.0 * float(v) for k, v in summary.items()},
    }
    if evaluate_detection:
        gts, pids = [], []
        for r in records:
            anns = r.get("annotations", ())
            gts.append(np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4))
            pids.append(np.array([int(a.get("person_id", -1)) for a in anns], np.int64))
        det = evaluate_detections(
            gts,
            [dets.boxes[dets.image(i)] for i in range(dets.num_images)],
            [dets.scores[dets.image(i)] for i in range(dets.num_images)],
            gt_person_ids=pids,
            det_thresh=options.detection_thresh,
            labeled_only=options.detection_labeled_only,
        )
        out["detection"] = {"AP": 100.0 * det.ap, "recall": 100.0 * det.recall}
        info["detection_num_gt"] = det.num_gt
    info.update(
        protocol=protocol,
        subset=options.subset,
        num_queries=int(len(positions)),
        num_queries_without_match=res.num_queries_without_match,
        cbgm=options.cbgm,
        query_indices=evaluated.query_index.tolist(),
        per_query_ap=[None if np.isnan(a) else float(a) for a in res.ap],
    )
    out["info"] = info
    return out
