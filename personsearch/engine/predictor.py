"""PersonSearchPredictor: detections, embeddings and query-box embeddings of raw BGR images.

Modelled on detectron2's :class:`~detectron2.engine.DefaultPredictor` (same conventions: the
config's weights are loaded, images come in as ``cv2.imread`` BGR ``uint8`` arrays and are
converted to ``cfg.INPUT.FORMAT``, the test resize ``INPUT.{MIN,MAX}_SIZE_TEST`` is applied) with
what person search needs on top: the embeddings of given query boxes from the same backbone pass,
batches of images in one forward pass, the inference-only optimisations of ``TEST.OPTIMIZE``, and
clear errors for bad input.

Example::

    predictor = PersonSearchPredictor(cfg)           # cfg.MODEL.WEIGHTS = a trained model
    image = cv2.imread("scene.jpg")                  # (H, W, 3) uint8 BGR
    out = predictor(image, query_boxes=[[10, 20, 60, 180]])
    out["instances"].pred_boxes, out["instances"].scores, out["instances"].reid_feats
    out["query_feats"]                               # (1, D)
    predictor.embed(image, [[10, 20, 60, 180]])      # (1, D), no detection at all
    outs = predictor.batch([image1, image2, ...])    # N images, one forward pass

Throughput (a GPU): give :meth:`batch` 8-32 images per call; decode and resize in DataLoader
workers with :attr:`preprocessor` (picklable) and pass its outputs to :meth:`run`.
"""

import logging
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from personsearch.checkpoint import PersonSearchCheckpointer
from personsearch.modeling.inference_optimization import InferenceOptions, optimize_for_inference

from .preprocessing import BOX_TOLERANCE, InferencePreprocessor, check_boxes, check_image

__all__ = ["BOX_TOLERANCE", "PersonSearchPredictor", "check_boxes", "check_image"]

logger = logging.getLogger(__name__)


class PersonSearchPredictor:
    """Run a person-search model on single images or lists of images (BGR in, like detectron2's
    :class:`~detectron2.engine.DefaultPredictor`).

    Every call runs under ``torch.inference_mode()``; each image goes through the backbone once.
    All outputs are moved to the **CPU** (ready for ``.numpy()``), whatever ``MODEL.DEVICE`` is;
    on a GPU the inputs travel through pinned memory with non-blocking copies and all outputs of a
    call come back in one synchronisation. Outputs are those of the evaluation path
    (``PersonSearchDatasetMapper(cfg, False)`` + ``model.inference``) for the same image: same
    resize, same format conversion; with ``TEST.OPTIMIZE`` (BatchNorm folding, channels_last; on by
    default) equal up to float rounding (tolerances: MODEL_ZOO.md, "Speed"), and exactly equal with
    ``TEST.OPTIMIZE.FOLD_BATCHNORM False`` and ``CHANNELS_LAST off``.

    Attributes:
        cfg: the predictor's own (cloned) config.
        model: the model, in eval mode, with ``cfg.MODEL.WEIGHTS`` loaded and ``TEST.OPTIMIZE``
            applied (a folded model refuses to train).
        metadata: metadata of ``cfg.DATASETS.TEST[0]`` when the config names a test split.
        preprocessor: :class:`~.preprocessing.InferencePreprocessor`, image -> model input.
        aug: the test-time resize.
        input_format: ``"RGB"`` or ``"BGR"`` (``cfg.INPUT.FORMAT``), what the model expects.
        optimizations: what ``TEST.OPTIMIZE`` did (``optimize_for_inference``'s summary).
    """

    def __init__(self, cfg):
        """
        Args:
            cfg: a personsearch config (``personsearch.get_person_search_cfg``). ``MODEL.WEIGHTS``
                is loaded with :class:`PersonSearchCheckpointer` (an empty string keeps the random
                initialisation, with detectron2's warning). ``CUDNN_BENCHMARK`` turns on cuDNN's
                autotuner (for many images of one size).
        """
        self.cfg = cfg.clone()  # the model may modify its config
        if self.cfg.TEST.SEARCH.USE_GT_BOXES:
            raise ValueError(
                "PersonSearchPredictor: TEST.SEARCH.USE_GT_BOXES needs ground-truth boxes, which "
                "raw images do not have; set TEST.SEARCH.USE_GT_BOXES False"
            )
        self.preprocessor = InferencePreprocessor.from_config(cfg)
        options = InferenceOptions.from_config(cfg)  # checks the keys before the model is built
        self.model = build_model(self.cfg)
        self.model.eval()
        self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if cfg.DATASETS.TEST else None
        PersonSearchCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.optimizations = optimize_for_inference(self.model, options)
        self.device = self.model.device
        if self.device.type == "cuda" and cfg.CUDNN_BENCHMARK:
            torch.backends.cudnn.benchmark = True

    @property
    def aug(self):
        """The test-time resize (``ResizeShortestEdge``)."""
        return self.preprocessor.aug

    @property
    def input_format(self) -> str:
        """``INPUT.FORMAT``."""
        return self.preprocessor.input_format

    @property
    def embed_dim(self) -> int:
        """D, the size of every embedding."""
        return int(self.model.roi_heads.embed_dim)

    def __call__(self, image: np.ndarray, query_boxes: Optional[Any] = None) -> Dict[str, Any]:
        """Detect and embed the people of one image, and embed its query boxes.

        Args:
            image: (H, W, 3) uint8 BGR array (``cv2.imread``).
            query_boxes: optional (Q, 4) XYXY boxes in ``image`` pixels (see :func:`check_boxes`).

        Returns:
            ``{"instances": Instances}`` with ``pred_boxes`` (R, 4) in original pixels, ``scores``
            (R,), ``pred_classes`` (R,) and ``reid_feats`` (R, D) L2-normalised, not
            score-weighted; with ``query_boxes`` also ``"query_feats"`` (Q, D) L2-normalised and
            ``"query_contexts"`` (the model's CBGM contexts, one (K, D) tensor per query, or an
            empty list for heads that compute none). Everything on the CPU.
        """
        return self.batch([image], None if query_boxes is None else [query_boxes])[0]

    def batch(
        self, images: Sequence[np.ndarray], query_boxes: Optional[Sequence[Any]] = None
    ) -> List[Dict[str, Any]]:
        """:meth:`__call__` for a list of images, in one forward pass of the model.

        Images of different sizes are padded to a common size as in detectron2's batched
        inference; with convolutions and batch-size-1 evaluation that padding changes features
        near the bottom/right borders slightly, so equal outputs to single calls are guaranteed
        only for images of the same (resized) size (and then up to float rounding: convolution
        kernels may sum in another order for another batch size).

        Args:
            images: N (H_i, W_i, 3) uint8 BGR arrays.
            query_boxes: None, or N entries, each None or (Q_i, 4) boxes in that image's pixels.

        Returns:
            N dicts as :meth:`__call__` returns; ``"query_feats"`` only for images given boxes.
        """
        return self.run(self._inputs(images, query_boxes))

    def run(self, inputs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """:meth:`batch` for images already turned into model inputs by :attr:`preprocessor`
        (e.g. in DataLoader workers), in one forward pass.

        Args:
            inputs: N dicts from ``predictor.preprocessor(image, query_boxes)``.

        Returns:
            N dicts as :meth:`__call__` returns.
        """
        inputs = [self._to_device(x) for x in inputs]
        with torch.inference_mode():
            outputs = self.model.inference(inputs) if inputs else []
            results = []
            for inp, out in zip(inputs, outputs):
                res = {"instances": out["instances"]}
                if "query_boxes" in inp:
                    res["query_feats"] = out["query_feats"]
                    res["query_contexts"] = list(out.get("query_contexts", []))
                results.append(res)
            return self._to_cpu(results)

    def embed(self, image: np.ndarray, boxes: Any, with_uncertainty: bool = False):
        """Embeddings of given boxes only (one backbone pass, no detection).

        Args:
            image: (H, W, 3) uint8 BGR array.
            boxes: (Q, 4) XYXY boxes in ``image`` pixels.
            with_uncertainty: also return each box's uncertainty (UGAS models with
                ``MODEL.UGAS.UG.OUTPUT_VARIANCE True``; else a ValueError): one scalar per box,
                the mean log-variance of its embedding, larger = coarser (a poorly framed,
                small or occluded person), usable as a quality score to sort or filter by.

        Returns:
            (Q, D) L2-normalised embeddings on the CPU, equal to the ``"query_feats"`` of
            ``predictor(image, query_boxes=boxes)``; with ``with_uncertainty``,
            ``(embeddings, uncertainty (Q,))``.
        """
        if with_uncertainty and not self.model.roi_heads.has_uncertainty:
            raise ValueError(
                "embed(with_uncertainty=True): this model outputs no uncertainty; it needs a "
                "Gaussian UGAS UG with MODEL.UGAS.UG.OUTPUT_VARIANCE True"
            )
        inputs = [self._to_device(x) for x in self._inputs([image], [boxes], box_name="boxes")]
        empty = Instances(tuple(inputs[0]["image"].shape[1:]))
        empty.pred_boxes = Boxes(torch.zeros((0, 4), device=self.device))
        with torch.inference_mode():
            out = self.model.inference(inputs, detected_instances=[empty], do_postprocess=False)
            if with_uncertainty:
                feats, uncertainty = self._to_cpu(
                    [out[0]["query_feats"], out[0]["query_uncertainty"]]
                )
                return feats, uncertainty
            return self._to_cpu([out[0]["query_feats"]])[0]

    def _inputs(
        self,
        images: Sequence[np.ndarray],
        query_boxes: Optional[Sequence[Any]],
        box_name: str = "query_boxes",
    ) -> List[Dict[str, Any]]:
        """Model inputs (the mapper's test-time dicts) of validated images and boxes; errors call
        the boxes ``box_name``."""
        if isinstance(images, np.ndarray):
            raise TypeError("images: expected a list of (H, W, 3) arrays; use predictor(image)")
        images = list(images)
        if query_boxes is not None:
            query_boxes = list(query_boxes)
            if len(query_boxes) != len(images):
                raise ValueError(
                    f"query_boxes: expected one entry (None or (Q, 4) boxes) per image, got "
                    f"{len(query_boxes)} for {len(images)} images"
                )
        inputs = []
        for i, image in enumerate(images):
            single = len(images) == 1
            boxes = None if query_boxes is None else query_boxes[i]
            inputs.append(
                self.preprocessor(
                    image,
                    boxes,
                    name="image" if single else f"images[{i}]",
                    box_name=box_name if single else f"{box_name}[{i}]",
                )
            )
        return inputs

    def _to_device(self, inp: Dict[str, Any]) -> Dict[str, Any]:
        """A model input on the model's device: through pinned memory and a non-blocking copy on
        a GPU (the copy overlaps the host's work on the next image), unchanged on the CPU."""
        if self.device.type != "cuda":
            return inp
        out = dict(inp)
        out["image"] = inp["image"].pin_memory().to(self.device, non_blocking=True)
        if "query_boxes" in inp:
            boxes = inp["query_boxes"].tensor.pin_memory().to(self.device, non_blocking=True)
            out["query_boxes"] = Boxes(boxes)
        return out

    def _to_cpu(self, results: List[Any]) -> List[Any]:
        """``results`` (dicts of Instances, tensors and lists of tensors, or tensors) with every
        tensor on the CPU. On a GPU every copy is issued non-blocking into pinned memory and the
        stream is synchronised once at the end (not once per tensor)."""
        if self.device.type != "cuda":
            return results
        out = [_tree_to_cpu(r) for r in results]
        torch.cuda.current_stream(self.device).synchronize()
        return out


def _tree_to_cpu(x: Any) -> Any:
    """``x`` with every tensor copied to the CPU without blocking (see ``_to_cpu``)."""
    if isinstance(x, torch.Tensor):
        return x.to("cpu", non_blocking=True)
    if isinstance(x, Boxes):
        return Boxes(_tree_to_cpu(x.tensor))
    if isinstance(x, Instances):
        out = Instances(x.image_size)
        for name, value in x.get_fields().items():
            out.set(name, _tree_to_cpu(value))
        return out
    if isinstance(x, dict):
        return {k: _tree_to_cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_tree_to_cpu(v) for v in x)
    return x
