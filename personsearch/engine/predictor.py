"""PersonSearchPredictor: detections, embeddings and query-box embeddings of raw BGR images.

Modelled on detectron2's :class:`~detectron2.engine.DefaultPredictor` (same conventions: the
config's weights are loaded, images come in as ``cv2.imread`` BGR ``uint8`` arrays and are
converted to ``cfg.INPUT.FORMAT``, the test resize ``INPUT.{MIN,MAX}_SIZE_TEST`` is applied) with
what person search needs on top: the embeddings of given query boxes from the same backbone pass,
a batched form, and clear errors for bad input.

Example::

    predictor = PersonSearchPredictor(cfg)           # cfg.MODEL.WEIGHTS = a trained model
    image = cv2.imread("scene.jpg")                  # (H, W, 3) uint8 BGR
    out = predictor(image, query_boxes=[[10, 20, 60, 180]])
    out["instances"].pred_boxes, out["instances"].scores, out["instances"].reid_feats
    out["query_feats"]                               # (1, D)
    predictor.embed(image, [[10, 20, 60, 180]])      # (1, D), no detection at all
"""

import logging
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from .checkpointer import PersonSearchCheckpointer

__all__ = ["BOX_TOLERANCE", "PersonSearchPredictor", "check_boxes", "check_image"]

logger = logging.getLogger(__name__)

# How far (in pixels) a query box may extend beyond the image border and still be accepted: boxes
# that touch the border (x2 == W) or cross it by rounding are fine, anything further is an error.
BOX_TOLERANCE = 1.0


def check_image(image: Any, name: str = "image") -> np.ndarray:
    """Check that ``image`` is what ``cv2.imread`` returns: a non-empty (H, W, 3) uint8 array.

    Args:
        image: the candidate image.
        name: how the error messages call the argument.

    Returns:
        ``image`` itself (unchanged).

    Raises:
        TypeError: not a numpy array, or not uint8.
        ValueError: not (H, W, 3), or H or W is 0.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{name}: expected a numpy array (H, W, 3) uint8 in BGR order as returned by "
            f"cv2.imread, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise TypeError(
            f"{name}: expected dtype uint8 (0..255, BGR, as cv2.imread returns), got {image.dtype}"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{name}: expected shape (H, W, 3) (a colour image, BGR), got {tuple(image.shape)}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: the image is empty (shape {tuple(image.shape)})")
    return image


def check_boxes(boxes: Any, height: int, width: int, name: str = "query_boxes") -> np.ndarray:
    """Check query boxes against the image they belong to.

    Args:
        boxes: (Q, 4) XYXY boxes in the image's pixels: a numpy array, a list of 4-lists, a tensor
            or a :class:`~detectron2.structures.Boxes`. Q may be 0.
        height, width: the image size.
        name: how the error messages call the argument.

    Returns:
        (Q, 4) float64 array.

    Raises:
        ValueError: not (Q, 4); a coordinate that is NaN or infinite; a box of zero or negative
            width or height; a box more than :data:`BOX_TOLERANCE` pixels outside the image.
    """
    if isinstance(boxes, Boxes):
        boxes = boxes.tensor
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected a (Q, 4) array of XYXY boxes: {e}") from e
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(
            f"{name}: expected a (Q, 4) array of XYXY boxes [x1, y1, x2, y2], got shape "
            f"{tuple(arr.shape)}"
        )
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {arr[i].tolist()} has a NaN or infinite coordinate")
    bad = (arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{i}] = {arr[i].tolist()} has zero or negative size (need x2 > x1 and y2 > y1)"
        )
    tol = BOX_TOLERANCE
    bad = (
        (arr[:, 0] < -tol)
        | (arr[:, 1] < -tol)
        | (arr[:, 2] > width + tol)
        | (arr[:, 3] > height + tol)
    )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{i}] = {arr[i].tolist()} lies outside the {width}x{height} (WxH) image "
            f"(boxes may touch the border, up to {tol:g} px beyond it)"
        )
    return arr


class PersonSearchPredictor:
    """Run a person-search model on single images or lists of images (BGR in, like detectron2's
    :class:`~detectron2.engine.DefaultPredictor`).

    Every call runs under ``torch.inference_mode()``; each image goes through the backbone once.
    All outputs are moved to the **CPU** (ready for ``.numpy()``), whatever ``MODEL.DEVICE`` is.
    Outputs are exactly those of the evaluation path (``PersonSearchDatasetMapper(cfg, False)`` +
    ``model.inference``) for the same image: same resize, same format conversion, batch size 1.

    Attributes:
        cfg: the predictor's own (cloned) config.
        model: the model, in eval mode, with ``cfg.MODEL.WEIGHTS`` loaded.
        metadata: metadata of ``cfg.DATASETS.TEST[0]`` when the config names a test split.
        aug: the test-time resize.
        input_format: ``"RGB"`` or ``"BGR"`` (``cfg.INPUT.FORMAT``), what the model expects.
    """

    def __init__(self, cfg):
        """
        Args:
            cfg: a personsearch config (``personsearch.get_person_search_cfg``). ``MODEL.WEIGHTS``
                is loaded with :class:`PersonSearchCheckpointer` (an empty string keeps the random
                initialisation, with detectron2's warning).
        """
        self.cfg = cfg.clone()  # the model may modify its config
        if self.cfg.TEST.SEARCH.USE_GT_BOXES:
            raise ValueError(
                "PersonSearchPredictor: TEST.SEARCH.USE_GT_BOXES needs ground-truth boxes, which "
                "raw images do not have; set TEST.SEARCH.USE_GT_BOXES False"
            )
        self.model = build_model(self.cfg)
        self.model.eval()
        self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if cfg.DATASETS.TEST else None
        PersonSearchCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {self.input_format!r}")

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
        only for images of the same (resized) size.

        Args:
            images: N (H_i, W_i, 3) uint8 BGR arrays.
            query_boxes: None, or N entries, each None or (Q_i, 4) boxes in that image's pixels.

        Returns:
            N dicts as :meth:`__call__` returns; ``"query_feats"`` only for images given boxes.
        """
        inputs = self._inputs(images, query_boxes)
        with torch.inference_mode():
            outputs = self.model.inference(inputs) if inputs else []
        results = []
        for inp, out in zip(inputs, outputs):
            res = {"instances": out["instances"].to("cpu")}
            if "query_boxes" in inp:
                res["query_feats"] = out["query_feats"].cpu()
                res["query_contexts"] = [c.cpu() for c in out.get("query_contexts", [])]
            results.append(res)
        return results

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
        inputs = self._inputs([image], [boxes], box_name="boxes")
        empty = Instances(tuple(inputs[0]["image"].shape[1:]))
        empty.pred_boxes = Boxes(torch.zeros((0, 4)))
        with torch.inference_mode():
            out = self.model.inference(inputs, detected_instances=[empty], do_postprocess=False)
        if with_uncertainty:
            return out[0]["query_feats"].cpu(), out[0]["query_uncertainty"].cpu()
        return out[0]["query_feats"].cpu()

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
            name = "image" if len(images) == 1 else f"images[{i}]"
            check_image(image, name)
            height, width = image.shape[:2]
            boxes = None
            if query_boxes is not None and query_boxes[i] is not None:
                name = box_name if len(images) == 1 else f"{box_name}[{i}]"
                boxes = check_boxes(query_boxes[i], height, width, name)
            if self.input_format == "RGB":  # the model expects RGB, cv2 gives BGR
                image = image[:, :, ::-1]
            transform = self.aug.get_transform(image)
            resized = transform.apply_image(image)
            inp = {
                "image": torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))),
                "height": height,
                "width": width,
            }
            if boxes is not None:
                boxes = transform.apply_box(boxes)
                inp["query_boxes"] = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
            inputs.append(inp)
        return inputs
