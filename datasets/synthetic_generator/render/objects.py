"""Street objects drawn in meters: occluders put in front of people and person-like distractors."""

import math

import numpy as np

from .attributes import PALETTE, SKIN_TONES
from .painter import Painter, Sprite, jitter

_CAR_COLORS = np.array(
    [
        (235, 235, 235),
        (170, 172, 178),
        (30, 30, 34),
        (180, 30, 30),
        (35, 60, 140),
        (40, 85, 60),
        (235, 190, 30),
        (120, 120, 125),
    ],
    np.float32,
)
GREENS = np.array([(45, 110, 45), (70, 135, 55), (35, 85, 40), (95, 140, 60)], np.float32)

OCCLUDERS = ("bench", "car", "railing", "bush", "bin")
DISTRACTORS = ("sign_pole", "poster", "bin", "hydrant", "lamp_post", "tree", "pillar", "bush")


def render_object(kind: str, px_per_meter: float, rng: np.random.Generator) -> Sprite:
    """Draw a street object standing on the ground.

    Args:
        kind: one of :data:`OCCLUDERS` or :data:`DISTRACTORS`.
        px_per_meter: scale at the object's ground line.
        rng: for sizes, colours and mirroring.
    """
    m = max(px_per_meter, 1e-3)
    ss = int(np.clip(math.ceil(60.0 / m), 2, 4))
    flip = bool(rng.random() < 0.5)
    if kind == "bench":
        wood = jitter(
            rng,
            (
                np.array((130, 85, 45), np.float32)
                if rng.random() < 0.6
                else np.array((50, 95, 60), np.float32)
            ),
        )
        legc = np.array((45, 45, 48), np.float32)
        pt = Painter(1.9, 0.95, m, ss)
        for x in (-0.8, 0.72):
            pt.rect(x, 0.0, x + 0.08, 0.88, legc)
        pt.rect(-0.92, 0.42, 0.92, 0.5, wood)
        pt.rect(-0.92, 0.6, 0.92, 0.68, wood)
        pt.rect(-0.92, 0.76, 0.92, 0.84, wood)
    elif kind == "car":
        body = jitter(rng, _CAR_COLORS[rng.integers(len(_CAR_COLORS))])
        glass = np.array((60, 75, 90), np.float32)
        pt = Painter(4.4, 1.55, m, ss)
        pt.poly(
            [(-2.15, 0.3), (2.15, 0.3), (2.2, 0.7), (1.9, 0.92), (-2.1, 0.95), (-2.2, 0.6)], body
        )
        pt.poly([(-1.4, 0.92), (1.05, 0.92), (0.6, 1.45), (-1.1, 1.45)], body * 0.95)
        pt.poly([(-1.25, 0.97), (-0.25, 0.97), (-0.25, 1.38), (-1.02, 1.38)], glass)
        pt.poly([(-0.15, 0.97), (0.9, 0.97), (0.55, 1.38), (-0.15, 1.38)], glass)
        for x in (-1.35, 1.35):
            pt.circle((x, 0.32), 0.32, (20, 20, 22))
            pt.circle((x, 0.32), 0.14, (150, 150, 155))
        pt.rect(1.95, 0.62, 2.18, 0.72, (250, 240, 200))
    elif kind == "railing":
        length = rng.uniform(2.5, 7.0)
        color = jitter(
            rng,
            np.array([(60, 60, 65), (230, 230, 225), (40, 90, 60)][rng.integers(3)], np.float32),
        )
        pt = Painter(length + 0.1, 1.05, m, ss)
        pt.rect(-length / 2, 0.95, length / 2, 1.02, color)
        pt.rect(-length / 2, 0.45, length / 2, 0.5, color)
        n = int(length / 0.14)
        for i in range(n + 1):
            x = -length / 2 + i * length / max(n, 1)
            wid = 0.06 if i % 7 == 0 else 0.022
            pt.rect(x - wid / 2, 0.0, x + wid / 2, 1.0, color)
    elif kind == "bush":
        w = rng.uniform(0.9, 1.8)
        pt = Painter(w + 0.4, 1.2, m, ss)
        for _ in range(9):
            c = GREENS[rng.integers(len(GREENS))] * rng.uniform(0.85, 1.1)
            r = rng.uniform(0.22, 0.38)
            pt.circle(
                (rng.uniform(-w / 2 + r * 0.5, w / 2 - r * 0.5), rng.uniform(r, 0.95 - r * 0.3)),
                r,
                c,
            )
    elif kind == "bin":
        color = jitter(
            rng,
            np.array(
                [(40, 100, 60), (90, 90, 95), (40, 70, 140), (150, 60, 30)][rng.integers(4)],
                np.float32,
            ),
        )
        pt = Painter(0.6, 1.0, m, ss)
        pt.poly([(-0.24, 0.0), (0.24, 0.0), (0.27, 0.86), (-0.27, 0.86)], color)
        pt.rect(-0.3, 0.86, 0.3, 0.95, color * 0.7)
        pt.rect(-0.24, 0.5, 0.24, 0.56, color * 0.8)
    elif kind == "hydrant":
        color = np.array((200, 35, 30) if rng.random() < 0.7 else (230, 190, 30), np.float32)
        pt = Painter(0.45, 0.8, m, ss)
        pt.rect(-0.11, 0.0, 0.11, 0.58, color)
        pt.ellipse((0.0, 0.58), (0.11, 0.11), 180, 360, color * 0.85)
        pt.rect(-0.19, 0.32, 0.19, 0.4, color * 0.9)
        pt.rect(-0.15, 0.0, 0.15, 0.06, color * 0.7)
    elif kind == "sign_pole":
        sign = np.array([(200, 30, 35), (35, 80, 190), (240, 200, 40)][rng.integers(3)], np.float32)
        h = rng.uniform(2.0, 2.7)
        pt = Painter(0.7, h + 0.4, m, ss)
        pt.rect(-0.035, 0.0, 0.035, h, (120, 120, 125))
        if rng.random() < 0.6:
            pt.circle((0.0, h), 0.3, (240, 240, 240))
            pt.circle((0.0, h), 0.26, sign)
            pt.rect(-0.17, h - 0.05, 0.17, h + 0.05, (245, 245, 245))
        else:
            pt.rect(-0.28, h - 0.28, 0.28, h + 0.28, sign)
            pt.rect(-0.2, h - 0.02, 0.2, h + 0.02, (245, 245, 245))
    elif kind == "poster":
        # a person-sized vertical panel with coloured bands: a hard negative for the detector
        pt = Painter(1.0, 2.2, m, ss)
        frame = np.array((90, 90, 95), np.float32)
        pt.rect(-0.42, 0.0, -0.36, 0.35, frame)
        pt.rect(0.36, 0.0, 0.42, 0.35, frame)
        pt.rect(-0.47, 0.3, 0.47, 2.15, frame)
        bands = rng.integers(2, 4)
        edges = np.sort(rng.uniform(0.4, 2.05, bands - 1))
        edges = np.concatenate([[0.36], edges, [2.09]])
        for i in range(bands):
            pt.rect(
                -0.41,
                edges[i],
                0.41,
                edges[i + 1],
                jitter(rng, PALETTE[rng.integers(len(PALETTE))]),
            )
        if rng.random() < 0.5:
            pt.circle(
                (rng.uniform(-0.15, 0.15), rng.uniform(1.5, 1.85)),
                0.14,
                SKIN_TONES[rng.integers(4)],
            )
    elif kind == "lamp_post":
        h = rng.uniform(3.5, 4.8)
        pt = Painter(1.4, h + 0.4, m, ss)
        c = np.array((55, 58, 62), np.float32)
        pt.rect(-0.06, 0.0, 0.06, h, c)
        pt.rect(-0.11, 0.0, 0.11, 0.4, c)
        pt.line((0.0, h), (0.45, h + 0.12), 0.05, c)
        pt.ellipse((0.5, h + 0.06), (0.17, 0.07), 0, 360, (235, 230, 190))
    elif kind == "tree":
        h = rng.uniform(2.2, 3.2)
        r = rng.uniform(0.9, 1.4)
        pt = Painter(2 * r + 0.8, h + 2 * r + 0.4, m, ss)
        pt.rect(-0.13, 0.0, 0.13, h + 0.4, (95, 65, 40))
        for _ in range(10):
            c = GREENS[rng.integers(len(GREENS))] * rng.uniform(0.8, 1.1)
            rr = rng.uniform(0.4, 0.7) * r
            pt.circle((rng.uniform(-r + rr, r - rr), h + r + rng.uniform(-0.6, 0.6) * r), rr, c)
    elif kind == "pillar":
        c = jitter(
            rng,
            np.array(
                [(200, 195, 185), (150, 145, 140), (170, 120, 95)][rng.integers(3)], np.float32
            ),
        )
        h = rng.uniform(2.5, 4.0)
        pt = Painter(0.8, h, m, ss)
        pt.rect(-0.3, 0.0, 0.3, h, c)
        pt.rect(-0.36, 0.0, 0.36, 0.15, c * 0.8)
    else:
        raise ValueError(f"Unknown object kind {kind!r}")
    return pt.finish((rng.uniform(0.85, 1.05), rng.uniform(-0.15, 0.15), 0.0), flip=flip)
