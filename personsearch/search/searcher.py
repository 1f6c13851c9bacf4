"""Querying an index: rebuild its model, embed query crops/boxes, rank every gallery detection."""

import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .backends import build_searcher
from .index import Entries, IndexMismatchError, SearchIndex, SearchIndexError
from .report import Hit
from .rerank import cbgm_rerank, query_context_of
from .sources import VideoReader, check_image_file, file_sha1, read_image_file

__all__ = [
    "GallerySearch",
    "QuerySpec",
    "embed_queries",
    "load_hit_pictures",
    "predictor_for_index",
]

logger = logging.getLogger(__name__)


@dataclass
class QuerySpec:
    """One query.

    Attributes:
        image: path of the query image.
        box: (4,) XYXY box in its pixels, or None: the whole image is the query (a person crop).
        label: a short name (used in file names and titles).
    """

    image: str
    box: Optional[Sequence[float]]
    label: str


def predictor_for_index(index: SearchIndex, weights: str = "", device: str = ""):
    """The :class:`~personsearch.engine.PersonSearchPredictor` of the model an index was built
    with: its config dump from the manifest, its weights file (or ``weights`` if given, which must
    be the same file by content).

    Raises:
        FileNotFoundError: the weights are missing. IndexMismatchError: ``weights`` differ.
    """
    from detectron2.config import CfgNode

    from personsearch import get_person_search_cfg
    from personsearch.engine import PersonSearchPredictor

    model = index.manifest["model"]
    weights = weights or model["weights"]
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"Weights of search index {index.path!r} not found: {weights!r}; pass the file with "
            "--weights"
        )
    sha1 = file_sha1(weights)
    if sha1 != model["weights_sha1"]:
        raise IndexMismatchError(
            f"Search index {index.path!r} was built with weights {model['weights']!r} (sha1 "
            f"{model['weights_sha1'][:12]}); {weights!r} (sha1 {sha1[:12]}) is another model, "
            "whose embeddings cannot be compared with the index's"
        )
    cfg = get_person_search_cfg()
    try:
        cfg.merge_from_other_cfg(CfgNode.load_cfg(model["config"]))
    except Exception as e:  # yaml and yacs raise many types for a damaged dump
        raise SearchIndexError(
            f"Search index {index.path!r}: the config stored in the manifest cannot be used "
            f"({type(e).__name__}: {e})"
        ) from e
    cfg.MODEL.WEIGHTS = weights
    if device:
        cfg.MODEL.DEVICE = device
    cfg.freeze()
    return PersonSearchPredictor(cfg)


def embed_queries(
    predictor,
    specs: Sequence[QuerySpec],
    with_context: bool = False,
    score_thresh: float = 0.5,
    k2: int = 3,
) -> List[Dict]:
    """Embed every query (one backbone pass each).

    Args:
        predictor: the index's predictor.
        specs: the queries.
        with_context: also compute the CBGM context (needs a box: the query image's detections).
        score_thresh: detections of the query image used for the emulated context.
        k2: context size.

    Returns:
        Per query ``{"spec", "image" (BGR), "box" (4,), "feat" (D,), "sha1", "context" (K, D) or
        None}``.

    Raises:
        FileNotFoundError / ValueError naming the image or ``--box``.
    """
    from personsearch.engine.predictor import check_boxes

    out = []
    for spec in specs:
        check_image_file(spec.image, "--image")
        image, sha1 = read_image_file(spec.image)
        h, w = image.shape[:2]
        if spec.box is None:
            if with_context:
                raise ValueError(
                    "--cbgm needs a query box in a full scene image (--box x1 y1 x2 y2): the "
                    "context is the other people of the query image"
                )
            box = np.array([0.0, 0.0, w, h])
        else:
            try:
                box = check_boxes([spec.box], h, w, "--box")[0]
            except ValueError as e:
                raise ValueError(
                    f"{spec.image}: {str(e).replace('--box[0]', '--box', 1)}"
                ) from None
        context = None
        if with_context:
            res = predictor(image, query_boxes=[box])
            feat = res["query_feats"][0].numpy()
            context = query_context_of(res, box, score_thresh, k2)
        else:
            feat = predictor.embed(image, [box])[0].numpy()
        out.append(
            {
                "spec": spec,
                "image": image,
                "box": box,
                "feat": feat,
                "sha1": sha1,
                "context": context,
            }
        )
    return out


class GallerySearch:
    """Every detection of an index, searchable.

    Args:
        index: an opened index.
        backend: ``"exact"`` or ``"faiss"``.
        cws: rank by cosine x detection score (the benchmark protocol's default) instead of cosine.
        progress: show a bar while loading the shards.

    Raises:
        SearchIndexError: the index holds no detection, or a shard is damaged.
    """

    def __init__(self, index: SearchIndex, backend: str = "exact", cws: bool = True, progress=True):
        self.index = index
        self.cws = cws
        self.entries: Entries = index.load(progress=progress)
        if self.entries.num_dets == 0:
            raise SearchIndexError(
                f"Search index {index.path!r} is empty: {self.entries.num_items} images/frames "
                "and no detection (index some images first, or lower --score-thresh)"
            )
        self.searcher = build_searcher(
            backend, self.entries.feats, self.entries.scores if cws else None
        )
        self.item_ranges = self.entries.item_ranges()

    def _rows_of_sha1(self, sha1: str) -> np.ndarray:
        items = np.flatnonzero(self.entries.item_sha1 == sha1)
        if not len(items):
            return np.zeros(0, np.int64)
        return np.concatenate(
            [np.arange(self.item_ranges[i], self.item_ranges[i + 1]) for i in items]
        )

    def search(
        self,
        queries: Sequence[Dict],
        top_k: int,
        cbgm: bool = False,
        k1: int = 10,
        exclude_query_image: bool = False,
    ) -> List[List[Hit]]:
        """Rank the gallery for every query (one batched search).

        Args:
            queries: :func:`embed_queries` results.
            top_k: hits per query.
            cbgm: re-rank with CBGM (the queries need a ``"context"``).
            k1: CBGM: hits whose images are re-scored.
            exclude_query_image: leave out the detections of the query image itself (matched by
                content hash), as the benchmark protocols do.

        Returns:
            Per query its ranked hits.
        """
        if top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {top_k}")
        excluded = [
            self._rows_of_sha1(q["sha1"]) if exclude_query_image else np.zeros(0, np.int64)
            for q in queries
        ]
        want = max(top_k, k1 if cbgm else 0)
        extra = max((len(x) for x in excluded), default=0)
        feats = np.stack([q["feat"] for q in queries]).astype(np.float32)
        scores, rows = self.searcher.search(feats, want + extra)
        results = []
        for q, s, r, ex in zip(queries, scores, rows, excluded):
            keep = ~np.isin(r, ex)
            s, r = s[keep][:want], r[keep][:want]
            rescored_rows = set()
            if cbgm:
                s, r, rescored = cbgm_rerank(
                    s, r, self.entries, self.item_ranges, q["context"], k1, top_k, self.cws
                )
                rescored_rows = {row for row, _ in rescored.values() if row is not None}
            results.append(self._hits(q["feat"], s[:top_k], r[:top_k], rescored_rows))
        return results

    def _hits(self, feat, scores, rows, rescored_rows) -> List[Hit]:
        e = self.entries
        cos = e.feats[rows].astype(np.float32) @ feat.astype(np.float32)
        sources = self.index.manifest["sources"]
        hits = []
        for rank, (score, row, c) in enumerate(zip(scores.tolist(), rows.tolist(), cos.tolist())):
            item = int(e.det_item[row])
            src = sources[int(e.item_source[item])]
            path = str(e.item_path[item])
            file = src["path"] if src["kind"] == "video" else os.path.join(src["root"], path)
            hits.append(
                Hit(
                    rank=rank + 1,
                    score=float(score),
                    cosine=float(c),
                    det_score=float(e.scores[row]),
                    box=[float(v) for v in e.boxes[row]],
                    source=path,
                    file=file,
                    frame=int(e.item_frame[item]),
                    time=float(e.item_time[item]),
                    row=int(row),
                    cbgm=row in rescored_rows,
                )
            )
        return hits

    def item_sha1(self, hit: Hit) -> str:
        """The content hash the hit's image/video had when it was indexed."""
        return str(self.entries.item_sha1[self.entries.det_item[hit.row]])


def load_hit_pictures(search: GallerySearch, hits: Sequence[Hit]) -> List[Optional[np.ndarray]]:
    """The source picture (RGB) of every hit; None (with a warning) when the file is gone or has
    changed since it was indexed."""
    import cv2

    cache: Dict[Tuple[str, int], Optional[np.ndarray]] = {}
    checked: Dict[str, bool] = {}
    pictures = []
    for hit in hits:
        key = (hit.file, hit.frame)
        if key not in cache:
            image = None
            try:
                if hit.frame < 0:
                    image, sha1 = read_image_file(hit.file)
                    if sha1 != search.item_sha1(hit):
                        logger.warning(f"{hit.file} changed since it was indexed; not shown")
                        image = None
                else:
                    if hit.file not in checked:
                        checked[hit.file] = os.path.isfile(hit.file)
                    if checked[hit.file]:
                        image = VideoReader(hit.file).read_frame(hit.frame)
                    else:
                        logger.warning(f"video {hit.file} not found; frames not shown")
            except (OSError, ValueError) as e:
                logger.warning(f"cannot read the picture of hit #{hit.rank}: {e}")
            cache[key] = None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        pictures.append(cache[key])
    return pictures
