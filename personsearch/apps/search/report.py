"""Search reports: a PNG contact sheet and a self-contained HTML page (images as data URIs).

Pictures are (H, W, 3) uint8 **RGB** arrays, as in :mod:`personsearch.utils.visualizer`, whose
drawing helpers compose them.
"""

import base64
import html
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from personsearch.utils.visualizer import (
    MATCH_COLOR,
    add_border,
    add_caption,
    crop_box,
    draw_box,
    fit_into,
    make_grid,
    resize_to_fit,
    save_image,
)

__all__ = [
    "Hit",
    "data_uri",
    "hit_crop",
    "missing_picture",
    "render_contact_sheet",
    "render_html",
    "write_query_report",
]

QUERY_COLOR = (30, 110, 230)
HIT_COLOR = MATCH_COLOR


@dataclass
class Hit:
    """One ranked gallery detection.

    Attributes:
        rank: 1-based rank.
        score: ranking score (cosine x detection score with CWS; the CBGM value if re-scored).
        cosine: cosine similarity of the query and the detection embeddings.
        det_score: detection score.
        box: (4,) XYXY in the source image/frame's pixels.
        source: display name: the image's relative path or the video file name.
        file: the file to read the picture from (image, or video).
        frame: video frame index, -1 for a still image.
        time: video timestamp in seconds, NaN for a still image.
        row: the detection's row in the index.
        cbgm: whether CBGM re-scored this detection.
        sha1: content hash of the image/video when it was indexed.
        camera: the image/frame's camera name, ``""`` if none.
        uncertainty: the model's uncertainty of the detection, NaN if none.
    """

    rank: int
    score: float
    cosine: float
    det_score: float
    box: Sequence[float]
    source: str
    file: str
    frame: int
    time: float
    row: int
    cbgm: bool = False
    sha1: str = ""
    camera: str = ""
    uncertainty: float = float("nan")

    @property
    def where(self) -> str:
        """``path`` or ``video.avi frame 120 (4.80 s)``."""
        cam = f" [{self.camera}]" if self.camera else ""
        if self.frame < 0:
            return self.source + cam
        t = "" if math.isnan(self.time) else f" ({self.time:.2f} s)"
        return f"{self.source} frame {self.frame}{t}{cam}"


def data_uri(image: np.ndarray, quality: int = 90) -> str:
    """An RGB image as a ``data:image/jpeg;base64,...`` URI."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("cannot encode an image as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def missing_picture(text: str = "missing", size=(64, 128)) -> np.ndarray:
    """A grey placeholder (W, H = ``size``) for a source image that cannot be read any more."""
    w, h = size
    img = np.full((h, w, 3), 200, dtype=np.uint8)
    cv2.putText(img, text, (2, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (90, 90, 90), 1)
    return img


def _scene(image: np.ndarray, box: Sequence[float], color, max_side: int = 360) -> np.ndarray:
    """A downscaled copy of ``image`` with ``box`` drawn."""
    small, scale = resize_to_fit(image, max_side, max_side)
    return draw_box(small, [v * scale for v in box], color, thickness=2, outline=(255, 255, 255))


def render_contact_sheet(
    path: str,
    query_crop: np.ndarray,
    query_label: str,
    hits: Sequence[Hit],
    crops: Sequence[np.ndarray],
    cell=(128, 256),
    ncols: int = 6,
) -> str:
    """Query crop then the ranked hit crops, one captioned cell each; written as PNG.

    Args:
        path: output file. query_crop: RGB. query_label: its caption.
        hits: ranked hits. crops: their RGB crops, same order.
        cell: (width, height) of each picture.
        ncols: cells per row.

    Returns:
        ``path``.
    """
    w, h = cell
    cells = [add_caption(add_border(fit_into(query_crop, w, h), QUERY_COLOR, 4), query_label[:18])]
    for hit, crop in zip(hits, crops):
        color = (230, 160, 20) if hit.cbgm else HIT_COLOR
        pic = add_border(fit_into(crop, w, h), color, 4)
        cells.append(add_caption(pic, f"#{hit.rank} {hit.score:.3f}"))
    grid = make_grid(cells, ncols=min(ncols, len(cells)), cell_size=(w + 8, h + 30))
    return save_image(path, grid)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}table{border-collapse:collapse}
td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
.hits{display:flex;flex-wrap:wrap;gap:12px}.q img.crop{height:180px}
.hit{border:1px solid #ccc;border-radius:6px;padding:6px;width:380px}
.hit img.crop{height:180px}.hit img.scene{max-width:360px;display:block;margin-top:4px}
.q{background:#eef4ff}.cbgm{color:#b06000}.small{color:#666;font-size:.85em}
"""


def render_html(
    path: str,
    title: str,
    query: Dict,
    hits: Sequence[Hit],
    crops: Sequence[np.ndarray],
    scenes: Sequence[Optional[np.ndarray]],
    settings: Dict,
) -> str:
    """A single-file HTML report (XHTML-style markup: every element closed, so XML parsers read
    it too).

    Args:
        path: output file.
        title: page title.
        query: ``{"label", "source", "box", "crop" (RGB), "scene" (RGB or None)}``.
        hits: ranked hits; crops: their RGB crops; scenes: their RGB source pictures (or None).
        settings: shown as a table (index, model fingerprint, CWS, CBGM, backend, ...).

    Returns:
        ``path``.
    """
    e = html.escape
    out: List[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/>',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        '<div class="q" id="query"><h2>Query</h2>',
        f'<img class="crop" alt="query crop" src="{data_uri(query["crop"])}"/>',
    ]
    if query.get("scene") is not None:
        scene = _scene(query["scene"], query["box"], QUERY_COLOR)
        out.append(f'<img class="scene" alt="query image" src="{data_uri(scene)}"/>')
    box = ", ".join(f"{v:.1f}" for v in query["box"])
    out.append(f"<p>{e(query['source'])}, box [{e(box)}]</p></div>")
    out.append("<h2>Settings</h2><table>")
    for k, v in settings.items():
        out.append(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>")
    out.append("</table>")
    out.append(f"<h2>Top {len(hits)} hits</h2><table><tr><th>rank</th><th>score</th>")
    out.append("<th>cosine</th><th>detection</th><th>source</th><th>box</th></tr>")
    for hit in hits:
        b = ", ".join(f"{v:.1f}" for v in hit.box)
        mark = ' <span class="cbgm">(CBGM)</span>' if hit.cbgm else ""
        out.append(
            f'<tr><td><a href="#hit-{hit.rank}">{hit.rank}</a></td><td>{hit.score:.4f}{mark}</td>'
            f"<td>{hit.cosine:.4f}</td><td>{hit.det_score:.3f}</td><td>{e(hit.where)}</td>"
            f"<td>[{e(b)}]</td></tr>"
        )
    out.append('</table><div class="hits">')
    for hit, crop, scene in zip(hits, crops, scenes):
        out.append(f'<div class="hit" id="hit-{hit.rank}">')
        out.append(f"<b>#{hit.rank}</b> score {hit.score:.4f}{' (CBGM)' if hit.cbgm else ''}")
        out.append(f'<div class="small">{e(hit.where)}</div>')
        out.append(f'<img class="crop" alt="hit {hit.rank} crop" src="{data_uri(crop)}"/>')
        if scene is not None:
            pic = _scene(scene, hit.box, HIT_COLOR)
            out.append(f'<img class="scene" alt="hit {hit.rank} image" src="{data_uri(pic)}"/>')
        out.append("</div>")
    out.append("</div></body></html>")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    return path


def hit_crop(image: Optional[np.ndarray], box: Sequence[float]) -> np.ndarray:
    """The crop of ``box`` (10 % margin) or a placeholder when the picture is unavailable."""
    if image is None:
        return missing_picture()
    return crop_box(image, box)


def write_query_report(
    out_dir: str,
    query: Dict,
    hits: Sequence[Hit],
    pictures: Sequence[Optional[np.ndarray]],
    settings: Dict,
) -> Tuple[str, str]:
    """Write ``<label>_contact_sheet.png`` and ``<label>_report.html`` of one query.

    Args:
        out_dir: the report folder.
        query: one result of :func:`~.searcher.embed_queries` (``spec``, ``image`` BGR, ``box``).
        hits: its ranked hits; pictures: the RGB picture of each hit's image or frame (None when
            unavailable), as :func:`~.searcher.load_hit_pictures` returns them.
        settings: the search settings listed in the HTML report.

    Returns:
        ``(contact sheet path, report path)``.
    """
    label = query["spec"].label
    scene = cv2.cvtColor(query["image"], cv2.COLOR_BGR2RGB)
    has_box = query["spec"].box is not None
    query_crop = hit_crop(scene, query["box"]) if has_box else scene
    crops = [hit_crop(p, h.box) for p, h in zip(pictures, hits)]
    sheet = render_contact_sheet(
        os.path.join(out_dir, f"{label}_contact_sheet.png"), query_crop, label, hits, crops
    )
    report = render_html(
        os.path.join(out_dir, f"{label}_report.html"),
        f"Person search: {label}",
        {
            "label": label,
            "source": query["spec"].image,
            "box": query["box"],
            "crop": query_crop,
            "scene": scene if has_box else None,
        },
        hits,
        crops,
        pictures,
        settings,
    )
    return sheet, report
