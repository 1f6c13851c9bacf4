"""Drawing primitives for person-search pictures (ground truth, queries, search results).

Images are ``(H, W, 3) uint8`` numpy arrays in **RGB** order; functions that draw modify the array
in place and also return it. Colours are RGB tuples. Drawing uses OpenCV, so pictures keep their
original pixel size; :func:`make_grid` and :func:`fit_into` make overviews.

Typical use::

    image = read_image(record["file_name"])
    draw_record(image, record)              # GT boxes coloured per identity, queries highlighted
    save_image("out.png", image)

Search-result pictures can be composed from the same pieces: :func:`crop_box` for the query,
:func:`draw_box` with :data:`MATCH_COLOR` / :data:`MISMATCH_COLOR` for ranked hits,
:func:`add_border`, :func:`add_caption` and :func:`make_grid` for the layout.
"""

import colorsys
import os
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.structures import BoxMode

__all__ = [
    "BACKGROUND_COLOR",
    "MATCH_COLOR",
    "MISMATCH_COLOR",
    "UNLABELED_COLOR",
    "add_border",
    "add_caption",
    "crop_box",
    "default_thickness",
    "draw_box",
    "draw_label",
    "draw_person_boxes",
    "draw_queries",
    "draw_record",
    "fit_into",
    "identity_color",
    "make_grid",
    "read_image",
    "resize_to_fit",
    "save_image",
]

Color = Tuple[int, int, int]

UNLABELED_COLOR: Color = (160, 160, 160)
MATCH_COLOR: Color = (40, 200, 40)
MISMATCH_COLOR: Color = (220, 40, 40)
BACKGROUND_COLOR: Color = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GOLDEN = 0.618033988749895


def identity_color(person_id: int) -> Color:
    """A stable, well-spread colour for an identity; grey for unlabeled people (id < 0).

    Hues follow the golden-ratio sequence, so consecutive ids get very different colours.
    """
    if person_id < 0:
        return UNLABELED_COLOR
    hue = (int(person_id) * _GOLDEN) % 1.0
    value = 0.95 if person_id % 2 == 0 else 0.75
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
    return int(r * 255), int(g * 255), int(b * 255)


def read_image(path: str) -> np.ndarray:
    """Read an image file as RGB uint8.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be decoded; the message names it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path!r}")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"Cannot decode image {path!r}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def save_image(path: str, image: np.ndarray) -> str:
    """Write an RGB image (PNG/JPEG by extension), creating the folder; returns ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)):
        raise OSError(f"Cannot write image {path!r}")
    return path


def default_thickness(image: np.ndarray) -> int:
    """Line thickness that stays visible on small and large images (1 px per ~400 px side)."""
    return max(1, int(round(min(image.shape[:2]) / 400)))


def _font_scale(image: np.ndarray) -> float:
    return float(np.clip(min(image.shape[:2]) / 900, 0.35, 1.5))


def _text_color(background: Color) -> Color:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def draw_label(
    image: np.ndarray,
    text: str,
    anchor: Tuple[float, float],
    color: Color,
    font_scale: Optional[float] = None,
    below: bool = False,
) -> np.ndarray:
    """Draw ``text`` on a filled box of ``color`` whose left edge is at ``anchor``.

    Args:
        anchor: ``(x, y)``; the label sits above ``y`` (or below it with ``below=True``) and is
            shifted to stay inside the image.
        font_scale: OpenCV font scale; by default derived from the image size.
    """
    scale = _font_scale(image) if font_scale is None else font_scale
    thickness = max(1, int(round(scale * 1.5)))
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    h, w = image.shape[:2]
    pad = max(1, int(round(2 * scale)))
    box_h = th + baseline + 2 * pad
    x = int(np.clip(anchor[0], 0, max(0, w - tw - 2 * pad)))
    y = int(anchor[1]) if below else int(anchor[1]) - box_h
    y = int(np.clip(y, 0, max(0, h - box_h)))
    cv2.rectangle(image, (x, y), (x + tw + 2 * pad, y + box_h), color, -1)
    cv2.putText(
        image,
        text,
        (x + pad, y + pad + th),
        _FONT,
        scale,
        _text_color(color),
        thickness,
        cv2.LINE_AA,
    )
    return image


def draw_box(
    image: np.ndarray,
    box: Sequence[float],
    color: Color,
    thickness: Optional[int] = None,
    label: Optional[str] = None,
    label_below: bool = False,
    outline: Optional[Color] = None,
) -> np.ndarray:
    """Draw one XYXY box, optionally with a label and a contrasting outline.

    Args:
        box: ``[x1, y1, x2, y2]`` in pixels.
        thickness: line width; :func:`default_thickness` when None.
        label: text drawn above the box's top-left corner (below its bottom-left corner with
            ``label_below``).
        outline: a colour drawn 1 px around the box on both sides, to make it stand out.
    """
    t = default_thickness(image) if thickness is None else max(1, int(thickness))
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    if outline is not None:
        cv2.rectangle(image, (x1, y1), (x2, y2), outline, t + 2, cv2.LINE_8)
    cv2.rectangle(image, (x1, y1), (x2, y2), color, t, cv2.LINE_8)
    if label:
        anchor = (x1, y2 + t) if label_below else (x1, y1 - t // 2)
        draw_label(image, label, anchor, color, below=label_below)
    return image


def draw_person_boxes(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    person_ids: Sequence[int],
    thickness: Optional[int] = None,
    show_ids: bool = True,
) -> np.ndarray:
    """Draw people: labeled identities in their own colour with their id, unlabeled ones (id -1)
    as thin grey boxes labelled ``"?"``. Unlabeled people are drawn first, so identities stay on
    top.
    """
    t = default_thickness(image) if thickness is None else thickness
    order = sorted(range(len(boxes)), key=lambda i: person_ids[i] >= 0)
    for i in order:
        pid = int(person_ids[i])
        if pid < 0:
            draw_box(image, boxes[i], UNLABELED_COLOR, max(1, t // 2), "?" if show_ids else None)
        else:
            draw_box(image, boxes[i], identity_color(pid), t, str(pid) if show_ids else None)
    return image


def draw_queries(
    image: np.ndarray,
    queries: Sequence[Dict],
    thickness: Optional[int] = None,
    scale: float = 1.0,
) -> np.ndarray:
    """Highlight query boxes: thick, white-outlined, labelled ``"Q{query_index} id{person_id}"``
    under the box (so it does not hide the ground-truth label above it).

    Args:
        queries: ``[{"bbox": xyxy, "person_id", "query_index"}]`` as in the records.
        scale: factor applied to the boxes (for an image resized by that factor).
    """
    t = 2 * default_thickness(image) + 1 if thickness is None else thickness
    for query in queries:
        label = f"Q{query.get('query_index', '?')} id{query['person_id']}"
        color = identity_color(int(query["person_id"]))
        box = [v * scale for v in query["bbox"]]
        draw_box(image, box, color, t, label, label_below=True, outline=(255, 255, 255))
    return image


def draw_record(
    image: np.ndarray, record: Dict, show_ids: bool = True, scale: float = 1.0
) -> np.ndarray:
    """Draw a record's ground-truth people and its query boxes (project record convention).

    Args:
        image: the record's image, possibly resized by ``scale``.
        scale: factor from original-image pixels to ``image`` pixels.
    """
    anns = record.get("annotations", [])
    boxes = [
        [
            v * scale
            for v in BoxMode.convert(
                list(a["bbox"]), a.get("bbox_mode", BoxMode.XYXY_ABS), BoxMode.XYXY_ABS
            )
        ]
        for a in anns
    ]
    draw_person_boxes(image, boxes, [a["person_id"] for a in anns], show_ids=show_ids)
    draw_queries(image, record.get("queries", []), scale=scale)
    return image


def resize_to_fit(image: np.ndarray, width: int, height: int) -> Tuple[np.ndarray, float]:
    """Resize keeping the aspect ratio so the image fits ``width`` x ``height`` (no padding).

    Returns:
        The resized image and the scale factor applied.
    """
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (nw, nh), interpolation=interp), scale


def crop_box(image: np.ndarray, box: Sequence[float], margin: float = 0.1) -> np.ndarray:
    """Crop a box enlarged by ``margin`` of its size on each side (clipped to the image)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    x1, x2 = int(max(0, np.floor(x1 - dx))), int(min(w, np.ceil(x2 + dx)))
    y1, y2 = int(max(0, np.floor(y1 - dy))), int(min(h, np.ceil(y2 + dy)))
    return image[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)].copy()


def fit_into(
    image: np.ndarray, width: int, height: int, background: Color = BACKGROUND_COLOR
) -> np.ndarray:
    """Resize keeping the aspect ratio to fit ``width`` x ``height``, then pad (centred)."""
    resized, _ = resize_to_fit(image, width, height)
    nh, nw = resized.shape[:2]
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = background
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    canvas[y0 : y0 + nh, x0 : x0 + nw] = resized
    return canvas


def add_border(image: np.ndarray, color: Color, width: int = 4) -> np.ndarray:
    """A new image with a solid border of ``width`` pixels around ``image``."""
    return cv2.copyMakeBorder(image, width, width, width, width, cv2.BORDER_CONSTANT, value=color)


def add_caption(
    image: np.ndarray,
    text: str,
    color: Color = BACKGROUND_COLOR,
    font_scale: float = 0.5,
) -> np.ndarray:
    """A new image with a one-line caption bar of ``color`` above ``image``."""
    thickness = 1
    (_, th), baseline = cv2.getTextSize(text, _FONT, font_scale, thickness)
    bar_h = th + baseline + 8
    bar = np.empty((bar_h, image.shape[1], 3), dtype=np.uint8)
    bar[:] = color
    cv2.putText(
        bar, text, (4, 4 + th), _FONT, font_scale, _text_color(color), thickness, cv2.LINE_AA
    )
    return np.concatenate([bar, image], axis=0)


def make_grid(
    images: Sequence[np.ndarray],
    ncols: Optional[int] = None,
    cell_size: Tuple[int, int] = (480, 360),
    spacing: int = 4,
    background: Color = BACKGROUND_COLOR,
) -> np.ndarray:
    """Tile images into one picture, each letterboxed into a ``cell_size`` = (width, height) cell.

    Args:
        ncols: columns; ``ceil(sqrt(n))`` by default.
    """
    if not images:
        raise ValueError("make_grid needs at least one image")
    n = len(images)
    ncols = int(np.ceil(np.sqrt(n))) if ncols is None else max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    cw, ch = cell_size
    grid = np.empty(
        (nrows * ch + (nrows + 1) * spacing, ncols * cw + (ncols + 1) * spacing, 3), dtype=np.uint8
    )
    grid[:] = background
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        y, x = spacing + r * (ch + spacing), spacing + c * (cw + spacing)
        grid[y : y + ch, x : x + cw] = fit_into(image, cw, ch, background)
    return grid
