"""PersonSearchEvaluator: collects detections, embeddings and query embeddings of a test split and
scores them with the dataset's search protocol (and detection AP/recall)."""

import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import create_small_table

from .results_io import RESULTS_FILENAME, build_results, save_results
from .scoring import SearchOptions, score_results

logger = logging.getLogger(__name__)


def _cpu_f32(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


class PersonSearchEvaluator(DatasetEvaluator):
    """Person-search evaluation of a test split (any protocol named by the dataset metadata).

    Inputs/outputs contract of :meth:`process` (one entry per image):

    * input dict: ``image_id`` (str), ``file_name``, ``height``, ``width`` and optionally
      ``queries``: ``[{"bbox": [x1, y1, x2, y2] original pixels, "person_id", "query_index"}]``;
    * output dict: ``"instances"``: :class:`~detectron2.structures.Instances` with ``pred_boxes``
      (original pixels), ``scores`` (R,) and ``reid_feats`` (R, D) L2-normalised (not
      score-weighted); ``"query_feats"``: (Q, D) tensor in the order of ``input["queries"]``;
      optionally ``"query_contexts"``: one (K, D) tensor per query (the CBGM query context, saved
      as ``context_feats``; an empty list when the model does not compute it).

    :meth:`evaluate` gathers everything on rank 0, checks it against the dataset records, saves
    ``search_results.pth`` (``TEST.SEARCH.SAVE_RESULTS``) and scores it with
    :func:`~personsearch.evaluation.scoring.score_results` (the same code path as
    ``tools/evaluate_search.py``). Returns ``{"search": {"mAP", "top1", "top5", "top10"},
    "detection": {"AP", "recall"}}`` in percent on rank 0 and ``{}`` elsewhere.
    """

    def __init__(
        self,
        dataset_name: str,
        cfg=None,
        distributed: bool = True,
        output_dir: Optional[str] = None,
    ):
        """
        Args:
            dataset_name: a registered test split whose metadata has ``protocol`` (and ``root``
                for CUHK-SYSU).
            cfg: a config with ``TEST.SEARCH`` (see personsearch/config.py); None = defaults.
            distributed: gather results from all ranks before scoring.
            output_dir: where ``search_results.pth`` is written (not saved when None).
        """
        self._dataset_name = dataset_name
        self._options = SearchOptions.from_config(cfg)
        self._save = bool(cfg.TEST.SEARCH.SAVE_RESULTS) if cfg is not None else True
        self._config_str = ""
        if cfg is not None:
            try:
                self._config_str = cfg.dump()
            except Exception as e:  # a config with non-yaml values must not stop evaluation
                logger.warning("Could not dump the config into the results file: %s", e)
        self._distributed = distributed
        self._output_dir = output_dir
        self._metadata = MetadataCatalog.get(dataset_name)
        self.reset()

    def reset(self) -> None:
        self._gallery: Dict[str, Dict[str, np.ndarray]] = {}
        self._queries: List[Dict[str, Any]] = []

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Store each image's detections and its query boxes' embeddings (CPU float32)."""
        for inp, out in zip(inputs, outputs):
            image_id = str(inp["image_id"])
            inst = out["instances"]
            if not inst.has("reid_feats"):
                raise KeyError(
                    f"PersonSearchEvaluator: the model's instances for image {image_id!r} have no "
                    "'reid_feats'; a person-search model must return them."
                )
            boxes = _cpu_f32(inst.pred_boxes.tensor).reshape(-1, 4)
            feats = _cpu_f32(inst.reid_feats)
            if feats.ndim != 2 or len(feats) != len(boxes):
                raise ValueError(
                    f"PersonSearchEvaluator: image {image_id!r} has {len(boxes)} boxes but "
                    f"reid_feats of shape {tuple(feats.shape)}; expected ({len(boxes)}, D)."
                )
            self._gallery[image_id] = {
                "boxes": boxes,
                "scores": _cpu_f32(inst.scores).reshape(-1),
                "feats": feats,
            }
            queries = inp.get("queries") or []
            if not queries:
                continue
            qfeats = out.get("query_feats")
            if qfeats is None or len(qfeats) != len(queries):
                raise ValueError(
                    f"PersonSearchEvaluator: image {image_id!r} has {len(queries)} queries but the "
                    f"model returned {0 if qfeats is None else len(qfeats)} query_feats."
                )
            qfeats = _cpu_f32(qfeats).reshape(len(queries), -1)
            contexts = out.get("query_contexts") or [None] * len(queries)
            if len(contexts) != len(queries):
                raise ValueError(
                    f"PersonSearchEvaluator: image {image_id!r} has {len(queries)} queries but the "
                    f"model returned {len(contexts)} query_contexts."
                )
            for q, f, c in zip(queries, qfeats, contexts):
                entry = {
                    "query_index": int(q["query_index"]),
                    "image_id": image_id,
                    "bbox": [float(v) for v in q["bbox"]],
                    "person_id": int(q.get("person_id", -1)),
                    "feat": f.copy(),
                }
                if c is not None:
                    entry["context_feats"] = _cpu_f32(c).reshape(-1, f.shape[0])
                self._queries.append(entry)

    def _merged(self):
        if not self._distributed:
            return self._gallery, self._queries
        comm.synchronize()
        parts = comm.gather((self._gallery, self._queries), dst=0)
        if not comm.is_main_process():
            return None
        gallery: Dict[str, Dict[str, np.ndarray]] = {}
        queries: Dict[int, Dict[str, Any]] = {}
        repeated = 0
        for part_gallery, part_queries in parts:
            for image_id, det in part_gallery.items():
                if image_id in gallery:
                    repeated += 1  # a padding sampler may give an image to two ranks
                    continue
                gallery[image_id] = det
            for q in part_queries:
                queries.setdefault(q["query_index"], q)
        if repeated:
            logger.warning("%d images were evaluated by more than one rank; kept once.", repeated)
        return gallery, list(queries.values())

    def evaluate(self):
        """Gather, validate, save and score; see the class docstring for the returned dict."""
        merged = self._merged()
        if merged is None:
            return {}
        gallery, queries = merged
        if not gallery:
            logger.warning("PersonSearchEvaluator: no predictions were collected.")
            return {}
        results = build_results(self._dataset_name, gallery, queries, self._config_str)
        if self._save and self._output_dir:
            path = os.path.join(self._output_dir, RESULTS_FILENAME)
            save_results(path, results)
            logger.info("Saved the raw search results to %s", path)
        records = DatasetCatalog.get(self._dataset_name)
        scores = score_results(results, records, self._metadata, self._options)
        info = scores["info"]
        logger.info(
            "Person search on %s (protocol %s, subset %r, %d queries, %d without a gallery match, "
            "CBGM %s):\n%s",
            self._dataset_name,
            info["protocol"],
            info["subset"],
            info["num_queries"],
            info["num_queries_without_match"],
            "on" if info["cbgm"] else "off",
            create_small_table(scores["search"]),
        )
        logger.info(
            "Detection on %s:\n%s", self._dataset_name, create_small_table(scores["detection"])
        )
        return OrderedDict(search=dict(scores["search"]), detection=dict(scores["detection"]))
