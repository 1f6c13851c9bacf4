"""Drawing primitives: :class:`Sprite` (a premultiplied RGBA layer with a ground contact point) and
:class:`Painter`, which draws anti-aliased shapes in body units on a supersampled canvas."""

import math
from typing import NamedTuple, Sequence, Tuple

import cv2
import numpy as np


class Sprite(NamedTuple):
    """A rendered layer: premultiplied colour and coverage, with the ground contact point.

    Attributes:
        rgb: (h, w, 3) float32 premultiplied colour.
        alpha: (h, w) float32 coverage in [0, 1].
        foot: (x, y) pixel of the ground contact point inside the sprite.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    foot: Tuple[int, int]


SHIFT = 4
ONE = 1 << SHIFT


class Painter:
    """Draws in "units" (y up from the ground line, x right from the centre) on a supersampled
    uint8 canvas: premultiplied colour plus coverage. ``finish`` reduces it to a :class:`Sprite`."""

    def __init__(self, width_u: float, height_u: float, px_per_unit: float, ss: int, pad: int = 3):
        self.ss = ss
        self.s = px_per_unit * ss
        w = int(math.ceil(width_u * px_per_unit)) + 2 * pad
        h = int(math.ceil(height_u * px_per_unit)) + 2 * pad
        self.rgb = np.zeros((h * ss, w * ss, 3), np.uint8)
        self.alpha = np.zeros((h * ss, w * ss), np.uint8)
        self.cx = w * ss / 2.0
        self.gy = (h - pad) * ss

    def p(self, x: float, y: float) -> Tuple[int, int]:
        """Fixed-point pixel coordinates of a point in units."""
        return (
            int(round((self.cx + x * self.s) * ONE)),
            int(round((self.gy - y * self.s) * ONE)),
        )

    def px(self, y: float) -> int:
        """Canvas row of height ``y`` (units)."""
        return int(round(self.gy - y * self.s))

    def col(self, x: float) -> int:
        """Canvas column of abscissa ``x`` (units)."""
        return int(round(self.cx + x * self.s))

    def _len(self, v: float) -> int:
        return max(1, int(round(v * self.s)))

    def poly(self, pts: Sequence[Tuple[float, float]], color) -> None:
        arr = np.array([self.p(x, y) for x, y in pts], np.int32)
        cv2.fillPoly(self.rgb, [arr], clip_color(color), cv2.LINE_AA, SHIFT)
        cv2.fillPoly(self.alpha, [arr], 255, cv2.LINE_AA, SHIFT)

    def rect(self, x0: float, y0: float, x1: float, y1: float, color) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color)

    def line(self, a: Tuple[float, float], b: Tuple[float, float], thick: float, color) -> None:
        t = self._len(thick)
        cv2.line(self.rgb, self.p(*a), self.p(*b), clip_color(color), t, cv2.LINE_AA, SHIFT)
        cv2.line(self.alpha, self.p(*a), self.p(*b), 255, t, cv2.LINE_AA, SHIFT)

    def circle(self, c: Tuple[float, float], r: float, color) -> None:
        rr = int(round(r * self.s * ONE))
        cv2.circle(self.rgb, self.p(*c), rr, clip_color(color), -1, cv2.LINE_AA, SHIFT)
        cv2.circle(self.alpha, self.p(*c), rr, 255, -1, cv2.LINE_AA, SHIFT)

    def ellipse(self, c, axes, start: float, end: float, color, angle: float = 0.0) -> None:
        ax = (int(round(axes[0] * self.s * ONE)), int(round(axes[1] * self.s * ONE)))
        rgb = clip_color(color)
        cv2.ellipse(self.rgb, self.p(*c), ax, angle, start, end, rgb, -1, cv2.LINE_AA, SHIFT)
        cv2.ellipse(self.alpha, self.p(*c), ax, angle, start, end, 255, -1, cv2.LINE_AA, SHIFT)

    def mask(self) -> np.ndarray:
        """A blank single-channel canvas to draw masks on."""
        return np.zeros(self.alpha.shape, np.uint8)

    def finish(
        self, shade: Tuple[float, float, float] = (1.0, 0.0, 0.0), flip: bool = False
    ) -> Sprite:
        """Reduce to a sprite.

        Args:
            shade: (brightness, horizontal gradient, darkening towards the bottom).
            flip: mirror horizontally.
        """
        ss = self.ss
        h, w = self.alpha.shape
        size = (w // ss, h // ss)
        rgb = cv2.resize(self.rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha = cv2.resize(self.alpha, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha *= 1.0 / 255.0
        bright, grad_x, grad_y = shade
        if bright != 1.0 or grad_x or grad_y:
            gx = np.linspace(-grad_x, grad_x, size[0], dtype=np.float32)[None, :]
            gy = np.linspace(0.0, -grad_y, size[1], dtype=np.float32)[:, None]
            rgb *= (bright * (1.0 + gx + gy))[..., None]
        foot = (size[0] // 2, int(round(self.gy / ss)))
        if flip:
            rgb, alpha = rgb[:, ::-1].copy(), alpha[:, ::-1].copy()
            foot = (size[0] - 1 - foot[0], foot[1])
        return Sprite(rgb, alpha, foot)


def clip_color(color) -> Tuple[int, int, int]:
    return tuple(min(255, max(0, int(v))) for v in color)


def jitter(rng: np.random.Generator, color: np.ndarray, amount: float = 0.06) -> np.ndarray:
    return np.clip(color * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, 4, 3), 0, 255)


def supersampling(height_px: float) -> int:
    return int(np.clip(math.ceil(150.0 / max(height_px, 1.0)), 2, 6))
