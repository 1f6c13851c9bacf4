"""A whole scene: people and objects placed on the ground plane by perspective, composited by depth,
with shadows, occlusion bookkeeping, blur and the tight boxes of every person.

Boxes are integer ``(x, y, w, h)`` with the right and bottom edges exclusive (``x + w <= W``),
tight around the pixels where the person's coverage (alpha) is at least :data:`BOX_ALPHA`."""

import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from .attributes import sample_unlabeled_attributes
from .background import render_background
from .objects import (
    DISTRACTORS,
    OCCLUDERS,
    render_object,
)
from .painter import Sprite
from .person import render_person

# Alpha (coverage) from which a pixel belongs to the person's box and mask.
BOX_ALPHA = 0.25
# Body height in meters that sets the perspective scale (pixels per meter at a ground row).
PERSON_METERS = 1.72


class PlacedPerson(NamedTuple):
    """One person of a rendered scene.

    Attributes:
        pid: global identity index, -1 for an unlabeled passer-by.
        box: integer (x, y, w, h), tight around the whole (amodal) body.
        visibility: fraction of the body's pixels that are not hidden by objects or people.
    """

    pid: int
    box: Tuple[int, int, int, int]
    visibility: float


class _Layer(NamedTuple):
    sprite: Sprite
    ox: int  # sprite top-left in the image
    oy: int
    depth: float  # ground-contact row: larger = nearer the camera
    person: int  # index into the person list, -1 for objects
    shadow: bool


def _tight_box(alpha: np.ndarray) -> Tuple[int, int, int, int]:
    """(x0, y0, x1, y1) inclusive bounds of alpha >= BOX_ALPHA inside a sprite."""
    m = alpha >= BOX_ALPHA
    rows = np.flatnonzero(m.any(1))
    cols = np.flatnonzero(m.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _overlap(a: _Layer, b: _Layer) -> int:
    """Number of pixels where both layers have coverage >= 0.5."""
    ah, aw = a.sprite.alpha.shape
    bh, bw = b.sprite.alpha.shape
    x0, y0 = max(a.ox, b.ox), max(a.oy, b.oy)
    x1, y1 = min(a.ox + aw, b.ox + bw), min(a.oy + ah, b.oy + bh)
    if x1 <= x0 or y1 <= y0:
        return 0
    ma = a.sprite.alpha[y0 - a.oy : y1 - a.oy, x0 - a.ox : x1 - a.ox] >= 0.5
    mb = b.sprite.alpha[y0 - b.oy : y1 - b.oy, x0 - b.ox : x1 - b.ox] >= 0.5
    return int(np.count_nonzero(ma & mb))


def _iou(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def _composite(img: np.ndarray, owner: np.ndarray, layer: _Layer, owner_id: int) -> None:
    h, w = img.shape[:2]
    sh, sw = layer.sprite.alpha.shape
    x0, y0 = max(layer.ox, 0), max(layer.oy, 0)
    x1, y1 = min(layer.ox + sw, w), min(layer.oy + sh, h)
    if x1 <= x0 or y1 <= y0:
        return
    sy, sx = slice(y0 - layer.oy, y1 - layer.oy), slice(x0 - layer.ox, x1 - layer.ox)
    a = layer.sprite.alpha[sy, sx]
    region = img[y0:y1, x0:x1]
    region *= (1.0 - a)[..., None]
    region += layer.sprite.rgb[sy, sx]
    owner[y0:y1, x0:x1][a >= 0.5] = owner_id


def _shadow(img: np.ndarray, cx: float, cy: float, half_w: float, strength: float) -> None:
    h, w = img.shape[:2]
    half_h = max(1.0, half_w * 0.18)
    x0, x1 = int(max(cx - half_w - 2, 0)), int(min(cx + half_w + 3, w))
    y0, y1 = int(max(cy - half_h - 2, 0)), int(min(cy + half_h + 3, h))
    if x1 <= x0 or y1 <= y0:
        return
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.ellipse(
        m,
        (int(round((cx - x0) * 16)), int(round((cy - y0) * 16))),
        (int(half_w * 16), int(half_h * 16)),
        0,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
        4,
    )
    img[y0:y1, x0:x1] *= (1.0 - strength * m.astype(np.float32) / 255.0)[..., None]


def render_scene(
    rng: np.random.Generator,
    labeled: Sequence[Tuple[int, np.ndarray]],
    identities: np.ndarray,
    params: Dict,
) -> Tuple[np.ndarray, List[PlacedPerson]]:
    """Render one scene.

    Args:
        rng: the image's generator (everything random about the image comes from it).
        labeled: ``(global pid, attributes)`` of the identities that must appear.
        identities: (K, NUM_ATTRIBUTES) the whole identity table (passers-by must differ from it).
        params: generator parameters (``image_width``, ``image_height``, ``person_height``,
            ``unlabeled_per_image``, ``occlusion_prob``, ``person_blur_prob``,
            ``image_blur_prob``; see ``synthetic.SYNTHETIC_DEFAULTS``).

    Returns:
        The (H, W, 3) uint8 RGB image, and every person drawn (labeled first, in ``labeled``
        order, then passers-by).
    """
    width = int(rng.integers(params["image_width"][0], params["image_width"][1] + 1))
    height = int(rng.integers(params["image_height"][0], params["image_height"][1] + 1))
    horizon = int(height * rng.uniform(0.24, 0.45))
    h_lo, h_hi = params["person_height"]
    h_max = min(float(h_hi), 0.9 * height) * rng.uniform(0.85, 1.0)
    # perspective: pixels per meter at ground row y = c * (y - horizon)
    c = h_max / (PERSON_METERS * (height - horizon))

    img = render_background(rng, width, height, horizon)
    layers: List[_Layer] = []
    persons: List[dict] = []

    def px_per_m(y: float) -> float:
        return c * (y - horizon)

    def person_ok(layer: _Layer, box, labeled_person: bool) -> bool:
        for other in layers:
            if other.person < 0:
                continue
            ob = persons[other.person]["box"]
            if _iou(box, ob) > (0.25 if labeled_person else 0.4):
                return False
            near, far = (layer, other) if layer.depth >= other.depth else (other, layer)
            far_p = persons[far.person]
            lim = 0.35 if far_p["pid"] >= 0 else 0.6
            cover = _overlap(near, far) / far_p["area"]
            if far_p["cover"] + cover > lim:
                return False
        return True

    def add_person(pid: int, attrs: np.ndarray, min_h: float, tries: int) -> bool:
        for attempt in range(tries):
            h = math.exp(rng.uniform(math.log(min_h), math.log(max(h_max, min_h + 1))))
            sprite = render_person(
                attrs,
                h * rng.uniform(0.95, 1.03),
                rng,
                facing_right=bool(rng.random() < 0.5),
                phase=rng.uniform(0, 2 * math.pi),
                swing=rng.uniform(0.0, 0.42),
            )
            x0, y0, x1, y1 = _tight_box(sprite.alpha)
            bw, bh = x1 - x0 + 1, y1 - y0 + 1
            if bw >= width - 2 or bh >= height - 2:
                continue
            for _ in range(12):
                foot_y = horizon + bh / (PERSON_METERS * c)
                foot_y = min(foot_y, height - 1)
                bx = int(rng.integers(0, width - bw))
                by = int(round(foot_y)) - bh + 1
                by = int(np.clip(by, 0, height - bh))
                box = (bx, by, bw, bh)
                layer = _Layer(sprite, bx - x0, by - y0, by + bh, len(persons), True)
                area = float(np.count_nonzero(sprite.alpha >= 0.5))
                record = {"pid": pid, "box": box, "area": max(area, 1.0), "cover": 0.0}
                persons.append(record)
                strict = attempt < tries - 1
                if not strict or person_ok(layer, box, pid >= 0):
                    # update accumulated cover of farther people
                    for other in layers:
                        if other.person >= 0:
                            near, far = (
                                (layer, other) if layer.depth >= other.depth else (other, layer)
                            )
                            fp = persons[far.person]
                            fp["cover"] += _overlap(near, far) / fp["area"]
                    layers.append(layer)
                    return True
                persons.pop()
        return False

    for pid, attrs in labeled:
        if not add_person(int(pid), np.asarray(attrs), float(h_lo) + 6.0, 8):
            raise RuntimeError(
                f"Could not place identity {pid} in a {width}x{height} image; check the "
                f"person_height and image size parameters."
            )
    n_unl = int(
        rng.integers(params["unlabeled_per_image"][0], params["unlabeled_per_image"][1] + 1)
    )
    for _ in range(n_unl):
        add_person(-1, sample_unlabeled_attributes(rng, identities), float(h_lo) - 2.0, 2)

    def add_object(kind: str, foot_y: float, cx: float, target: Optional[int]) -> bool:
        m = px_per_m(foot_y)
        if m < 0.6:
            return False
        sprite = render_object(kind, m, rng)
        ox = int(round(cx - sprite.foot[0]))
        oy = int(round(foot_y - sprite.foot[1]))
        layer = _Layer(sprite, ox, oy, foot_y, -1, kind in ("car", "bin", "hydrant", "bench"))
        covers = {}
        for other in layers:
            if other.person < 0 or other.depth >= foot_y:
                continue
            p = persons[other.person]
            cov = _overlap(layer, other) / p["area"]
            if target is None:  # clutter may touch people but rarely hides much of them
                lim = 0.2 if p["pid"] >= 0 else 0.5
            else:
                lim = 0.45 if p["pid"] >= 0 else 0.7
            if p["cover"] + cov > lim:
                return False
            covers[other.person] = cov
        if target is not None and covers.get(target, 0.0) < 0.1:
            return False
        for k, cov in covers.items():
            persons[k]["cover"] += cov
        layers.append(layer)
        return True

    # occluders placed right in front of some people
    person_layers = [ly for ly in layers if ly.person >= 0]
    for ly in person_layers:
        if rng.random() >= params["occlusion_prob"]:
            continue
        box = persons[ly.person]["box"]
        kind = OCCLUDERS[rng.integers(len(OCCLUDERS))]
        for _ in range(4):
            foot_y = ly.depth + rng.uniform(0.02, 0.15) * box[3] + 1
            if foot_y >= height + 0.3 * box[3]:
                break
            cx = box[0] + box[2] / 2 + rng.uniform(-0.9, 0.9) * box[2]
            if add_object(kind, foot_y, cx, ly.person):
                break
    # clutter: distractors and a few random occluders anywhere on the ground
    n_clutter = int(rng.integers(2, 7))
    for _ in range(n_clutter):
        kind = (
            DISTRACTORS[rng.integers(len(DISTRACTORS))]
            if rng.random() < 0.75
            else OCCLUDERS[rng.integers(len(OCCLUDERS))]
        )
        foot_y = horizon + (height - horizon) * rng.uniform(0.05, 1.02)
        add_object(kind, foot_y, rng.uniform(-0.05, 1.05) * width, None)

    # paint far to near
    owner = np.full((height, width), -1, np.int32)
    for layer in sorted(layers, key=lambda ly: ly.depth):
        if layer.shadow:
            sh = layer.sprite
            fx = layer.ox + sh.foot[0]
            fy = layer.oy + sh.foot[1] - 1
            if layer.person >= 0:
                b = persons[layer.person]["box"]
                fx, fy, half = b[0] + b[2] / 2, b[1] + b[3] - 1, 0.22 * b[3]
            else:
                half = 0.5 * sh.alpha.shape[1]
            _shadow(img, fx, fy, half, rng.uniform(0.15, 0.35))
        sprite = layer.sprite
        if layer.person >= 0 and rng.random() < params.get("person_blur_prob", 0.12):
            k = float(rng.uniform(0.6, 1.3))
            sprite = Sprite(
                cv2.GaussianBlur(sprite.rgb, (0, 0), k),
                cv2.GaussianBlur(sprite.alpha, (0, 0), k),
                sprite.foot,
            )
            layer = layer._replace(sprite=sprite)
        _composite(img, owner, layer, layer.person if layer.person >= 0 else -2)

    # global lighting, colour cast, noise, blur
    cast = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    img *= (rng.uniform(0.72, 1.15) * cast)[None, None, :]
    if rng.random() < 0.3:  # vignetting-like gradient
        gx = np.linspace(rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), width, dtype=np.float32)
        img *= (1.0 + gx)[None, :, None]
    sigma = rng.uniform(1.0, 5.0)  # uniform noise with this standard deviation (fast to draw)
    img += (rng.random(img.shape, dtype=np.float32) - 0.5) * np.float32(sigma * math.sqrt(12.0))
    if rng.random() < params.get("image_blur_prob", 0.15):
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.1)))
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)

    result = []
    for k, p in enumerate(persons):
        vis = np.count_nonzero(owner == k) / p["area"]
        result.append(PlacedPerson(p["pid"], tuple(int(v) for v in p["box"]), float(min(vis, 1.0))))
    return out, result
