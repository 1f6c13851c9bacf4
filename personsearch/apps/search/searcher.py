"""Querying an index: rebuild its model, embed query crops/boxes (ranking: :mod:`.gallery`), read
the pictures of the hits."""

import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import IndexMismatchError, SearchIndexError
from .gallery import GallerySearch
from .index import SearchIndex
from .report import Hit
from .rerank import query_context_of
from .sources import VideoReader, check_image_file, file_sha1, read_image_file

__all__ = [
    "GallerySearch",
    "QuerySpec",
    "dataset_query_specs",
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


def dataset_query_specs(
    name: str, records: Sequence[Dict], wanted: Sequence[int]
) -> List[QuerySpec]:
    """The queries ``wanted`` (query indices) of a registered split, labelled ``<name>_q<i>``.

    Args:
        name: the split's name; records: its records (``queries: [{query_index, bbox}]``).
        wanted: query indices.

    Raises:
        ValueError: the split has no query of one of the indices.
    """
    by_index = {}
    for r in records:
        for q in r.get("queries", []):
            by_index[int(q["query_index"])] = (r["file_name"], q["bbox"])
    specs = []
    for i in wanted:
        if i not in by_index:
            span = f"{min(by_index)}..{max(by_index)}" if by_index else "none"
            raise ValueError(f"{name} has no query {i} (query indices {span})")
        file, box = by_index[i]
        specs.append(QuerySpec(file, box, f"{name}_q{i}"))
    return specs


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
