"""Scene backgrounds: sky, facades with windows, ground texture, kerbs and vegetation."""

from typing import Tuple

import cv2
import numpy as np

from .objects import GREENS
from .painter import jitter


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: Tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in about [-1, 1], shape (h, w)."""
    small = rng.normal(0.0, 1.0, cells).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def render_background(
    rng: np.random.Generator, width: int, height: int, horizon: int
) -> np.ndarray:
    """Sky, a skyline of buildings or trees, textured ground with tiles in perspective and kerbs.

    Args:
        rng: the image's generator.
        width, height: image size in pixels.
        horizon: row of the horizon line.

    Returns:
        The (height, width, 3) float32 RGB background, values about in [0, 255].
    """
    img = np.empty((height, width, 3), np.float32)
    # sky
    sky_top = np.array(
        [(95, 140, 205), (150, 170, 195), (200, 205, 215), (120, 150, 190)][rng.integers(4)],
        np.float32,
    )
    sky_top = jitter(rng, sky_top, 0.08)
    sky_bot = np.clip(sky_top * 1.25 + 20, 0, 255)
    t = np.linspace(0, 1, max(horizon, 1), dtype=np.float32)[:, None, None]
    img[:horizon] = sky_top * (1 - t) + sky_bot * t

    # ground
    ground_kinds = [
        np.array((105, 105, 108), np.float32),  # asphalt
        np.array((175, 160, 135), np.float32),  # pavement
        np.array((160, 110, 95), np.float32),  # red tiles
        np.array((95, 135, 70), np.float32),  # grass
        np.array((140, 140, 135), np.float32),  # concrete
    ]
    g = jitter(rng, ground_kinds[rng.integers(len(ground_kinds))], 0.1)
    gh = height - horizon
    tt = np.linspace(0, 1, gh, dtype=np.float32)[:, None, None]
    far = np.clip(g * 1.12 + 12, 0, 255)
    img[horizon:] = far * (1 - tt) + g * tt
    tex = _smooth_noise(rng, gh, width, (5, 7)) * rng.uniform(6, 16)
    tex += _smooth_noise(rng, gh, width, (20, 28)) * rng.uniform(2, 7)
    img[horizon:] += tex[..., None]

    # perspective tiles / road lines
    if rng.random() < 0.6:
        line_col = tuple(float(v) for v in g * rng.uniform(0.75, 0.88))
        vx = rng.uniform(0.2, 0.8) * width
        n = rng.integers(6, 14)
        for i in range(-n, 2 * n):
            x_bottom = vx + (i - n / 2) * width * 0.35
            cv2.line(
                img, (int(vx), horizon), (int(x_bottom), height + 200), line_col, 1, cv2.LINE_AA
            )
        k = 1.0
        while True:
            y = horizon + int(gh * (k / 14.0) ** 2 * 14 / 14.0)
            if y >= height:
                break
            cv2.line(img, (0, y), (width, y), line_col, 1, cv2.LINE_AA)
            k += 1.0
    if rng.random() < 0.4:  # kerb
        y = int(horizon + gh * rng.uniform(0.15, 0.5))
        kc = tuple(float(v) for v in jitter(rng, np.array((185, 185, 180), np.float32)))
        cv2.rectangle(img, (0, y), (width, y + max(2, gh // 40)), kc, -1)
        below = jitter(rng, ground_kinds[rng.integers(len(ground_kinds))], 0.1) - g
        img[y + max(2, gh // 40) :] += below * 0.6

    # skyline: buildings or a row of trees
    if rng.random() < 0.7:
        x = -int(rng.uniform(0, 60))
        while x < width:
            bw = int(rng.uniform(0.12, 0.4) * width)
            top = int(rng.uniform(-0.2, 0.85) * horizon)
            base = horizon + int(rng.uniform(0, 0.04) * height)
            facade = jitter(
                rng,
                np.array(
                    [
                        (190, 175, 150),
                        (150, 150, 155),
                        (165, 95, 75),
                        (210, 205, 190),
                        (120, 130, 145),
                    ][rng.integers(5)],
                    np.float32,
                ),
                0.1,
            )
            cv2.rectangle(img, (x, top), (x + bw, base), tuple(float(v) for v in facade), -1)
            cv2.rectangle(img, (x, top), (x + bw, base), tuple(float(v) for v in facade * 0.8), 1)
            win = jitter(
                rng,
                np.array(
                    [(60, 75, 95), (70, 85, 110), (215, 205, 150)][rng.integers(3)], np.float32
                ),
                0.1,
            )
            ww = int(rng.uniform(5, 14))
            wh = int(ww * rng.uniform(0.8, 1.8))
            gx = ww + int(rng.uniform(3, 10))
            gy = wh + int(rng.uniform(4, 12))
            for wy in range(top + 6, base - wh - 6, gy):
                for wx in range(x + 5, x + bw - ww - 3, gx):
                    cv2.rectangle(
                        img, (wx, wy), (wx + ww, wy + wh), tuple(float(v) for v in win), -1
                    )
            x += bw + int(rng.uniform(0, 25))
    else:
        for _ in range(int(rng.integers(5, 14))):
            cx = rng.uniform(0, width)
            r = rng.uniform(12, 40)
            c = GREENS[rng.integers(len(GREENS))] * rng.uniform(0.7, 1.0)
            cv2.rectangle(
                img, (int(cx - 2), int(horizon - r)), (int(cx + 2), horizon + 2), (80, 60, 40), -1
            )
            for _ in range(4):
                cv2.circle(
                    img,
                    (
                        int(cx + rng.uniform(-r, r) * 0.6),
                        int(horizon - r * 1.2 + rng.uniform(-r, r) * 0.4),
                    ),
                    int(r * rng.uniform(0.5, 0.8)),
                    tuple(float(v) for v in c),
                    -1,
                    cv2.LINE_AA,
                )
    return img
