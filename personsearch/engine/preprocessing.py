"""The predictor's input side: validation of raw images and query boxes, and the test-time
resize to the model's input dict.

:class:`InferencePreprocessor` holds only the resize and the colour order, so it is cheap to pickle:
DataLoader workers can run it (decode, check, resize) while the model runs on earlier batches, and
:meth:`PersonSearchPredictor.run <personsearch.engine.PersonSearchPredictor.run>` takes its
outputs.
"""

from typing import Any, Dict, Optional

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.structures import Boxes

__all__ = ["BOX_TOLERANCE", "InferencePreprocessor", "check_boxes", "check_image"]

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


class InferencePreprocessor:
    """BGR ``uint8`` image (+ query boxes) -> the model's test-time input, on the CPU.

    The same steps as ``PersonSearchDatasetMapper(cfg, False)``: colour order
    ``INPUT.FORMAT``, the test resize ``ResizeShortestEdge(INPUT.MIN_SIZE_TEST,
    INPUT.MAX_SIZE_TEST)``, boxes moved with the image.

    Attributes:
        aug: the test-time resize.
        input_format: ``"RGB"`` or ``"BGR"``, what the model expects.
    """

    def __init__(self, min_size: int, max_size: int, input_format: str):
        """
        Args:
            min_size, max_size: ``INPUT.MIN_SIZE_TEST`` and ``INPUT.MAX_SIZE_TEST``.
            input_format: ``INPUT.FORMAT``.
        """
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {input_format!r}")
        self.aug = T.ResizeShortestEdge([min_size, min_size], max_size)
        self.input_format = input_format

    @classmethod
    def from_config(cls, cfg) -> "InferencePreprocessor":
        return cls(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.FORMAT)

    def __call__(
        self,
        image: np.ndarray,
        query_boxes: Optional[Any] = None,
        name: str = "image",
        box_name: str = "query_boxes",
    ) -> Dict[str, Any]:
        """Check and resize one image (and its boxes).

        Args:
            image: (H, W, 3) uint8 BGR array (``cv2.imread``).
            query_boxes: None or (Q, 4) XYXY boxes in ``image`` pixels (see :func:`check_boxes`).
            name, box_name: how error messages call the image and the boxes.

        Returns:
            ``{"image": (3, H', W') uint8 tensor, "height": H, "width": W}`` and, with boxes,
            ``"query_boxes"``: :class:`~detectron2.structures.Boxes` (Q, 4) float32 in resized
            pixels. The image tensor is a channel-first *view* of the resized (H', W', 3) array:
            no transposing copy on the CPU (the model normalises it into a new tensor anyway).

        Raises:
            TypeError, ValueError: see :func:`check_image` and :func:`check_boxes`.
        """
        check_image(image, name)
        height, width = image.shape[:2]
        boxes = None
        if query_boxes is not None:
            boxes = check_boxes(query_boxes, height, width, box_name)
        if self.input_format == "RGB":  # the model expects RGB, cv2 gives BGR
            image = image[:, :, ::-1]
        transform = self.aug.get_transform(image)
        resized = np.ascontiguousarray(transform.apply_image(image))
        if not resized.flags.writeable:  # PIL's arrays are read-only; torch wants writable memory
            resized = resized.copy()
        out = {
            "image": torch.from_numpy(resized).permute(2, 0, 1),
            "height": height,
            "width": width,
        }
        if boxes is not None:
            boxes = transform.apply_box(boxes)
            out["query_boxes"] = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
        return out
