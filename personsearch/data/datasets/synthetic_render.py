"""Renderer of the synthetic person-search scenes: identity attributes, people, objects, scenes.

Everything here is a pure function of a ``numpy.random.Generator`` and its arguments, so a scene is
reproducible from its seed. Drawing uses OpenCV primitives on supersampled canvases that are
reduced with area interpolation (anti-aliased people even at 30 px). The dataset layout (which
identity appears in which image, protocol files) lives in
:mod:`personsearch.data.datasets.synthetic`; the design is described in ``docs/SYNTHETIC.md``.

Coordinates: images are ``(H, W, 3)`` RGB; boxes are integer ``(x, y, w, h)`` with the right and
bottom edges exclusive (``x + w <= W``), tight around the pixels where the person's coverage
(alpha) is at least :data:`BOX_ALPHA`.
"""

import math
import os
import pickle
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

# --------------------------------------------------------------------------------------------
# Attribute space
# --------------------------------------------------------------------------------------------
# 12 clearly different clothing colours (RGB).
PALETTE = np.array(
    [
        (205, 35, 40),  # red
        (245, 135, 25),  # orange
        (240, 215, 45),  # yellow
        (60, 170, 70),  # green
        (30, 185, 200),  # cyan
        (40, 80, 205),  # blue
        (125, 55, 170),  # purple
        (245, 125, 185),  # pink
        (125, 75, 40),  # brown
        (238, 238, 232),  # white
        (128, 128, 132),  # grey
        (28, 28, 32),  # black
    ],
    dtype=np.float32,
)
COLOR_NAMES = (
    "red",
    "orange",
    "yellow",
    "green",
    "cyan",
    "blue",
    "purple",
    "pink",
    "brown",
    "white",
    "grey",
    "black",
)
# trousers are more often dark or blue: mild weights make bottom colours more shared
_BOTTOM_COLOR_P = np.array([0.5, 0.4, 0.4, 0.6, 0.4, 1.6, 0.5, 0.4, 1.2, 0.8, 1.4, 2.0])
SKIN_TONES = np.array([(240, 200, 170), (215, 165, 125), (170, 115, 80), (110, 72, 50)], np.float32)
HAIR_TONES = np.array([(25, 20, 18), (95, 60, 35), (215, 180, 105), (175, 175, 170)], np.float32)
SHOE_TONES = np.array([(38, 34, 34), (232, 232, 228), (115, 70, 35)], np.float32)

PATTERNS = ("plain", "horizontal_stripes", "two_tone", "vertical_split", "chest_logo")
BOTTOM_STYLES = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder_bag")

# One identity = one integer vector over these attributes (-1 = "not applicable / none").
ATTRIBUTES = (
    "top_color",  # 0..11 PALETTE index
    "top_pattern",  # PATTERNS index
    "pattern_color",  # PALETTE index != top_color, -1 when plain
    "sleeves",  # 0 long, 1 short
    "bottom_color",  # PALETTE index
    "bottom_style",  # BOTTOM_STYLES index
    "hat",  # PALETTE index of a cap, -1 none
    "bag",  # BAGS index
    "bag_color",  # PALETTE index, -1 when no bag
    "shoes",  # SHOE_TONES index
    "build",  # 0 slim, 1 broad
    "legs",  # 0 short, 1 long
    "head",  # 0 small, 1 large
    "skin",  # SKIN_TONES index
    "hair",  # HAIR_TONES index
)
NUM_ATTRIBUTES = len(ATTRIBUTES)
# Attributes that are visible at any scale (colours, patterns, accessories); two identities must
# differ in at least one of them besides the overall minimum of differing attributes.
SALIENT_ATTRIBUTES = (0, 1, 2, 4, 5, 6, 7, 8)
_SALIENT_MASK = np.zeros(NUM_ATTRIBUTES, dtype=bool)
_SALIENT_MASK[list(SALIENT_ATTRIBUTES)] = True

# Alpha (coverage) from which a pixel belongs to the person's box and mask.
BOX_ALPHA = 0.25
PERSON_METERS = 1.72


def sample_attributes(rng: np.random.Generator) -> np.ndarray:
    """Draw one attribute vector.

    Returns:
        (NUM_ATTRIBUTES,) int64 vector, see :data:`ATTRIBUTES`.
    """
    n = len(PALETTE)
    a = np.full(NUM_ATTRIBUTES, -1, dtype=np.int64)
    a[0] = rng.integers(n)
    a[1] = rng.choice(len(PATTERNS), p=[0.36, 0.16, 0.16, 0.16, 0.16])
    if a[1] != 0:
        a[2] = (a[0] + rng.integers(1, n)) % n
    a[3] = rng.random() < 0.35
    a[4] = rng.choice(n, p=_BOTTOM_COLOR_P / _BOTTOM_COLOR_P.sum())
    a[5] = rng.choice(len(BOTTOM_STYLES), p=[0.62, 0.19, 0.19])
    if rng.random() < 0.35:
        a[6] = rng.integers(n)
    a[7] = rng.choice(len(BAGS), p=[0.45, 0.3, 0.25])
    if a[7] != 0:
        a[8] = rng.integers(n)
    a[9] = rng.choice(len(SHOE_TONES), p=[0.55, 0.25, 0.2])
    a[10] = rng.integers(2)
    a[11] = rng.integers(2)
    a[12] = rng.integers(2)
    a[13] = rng.integers(len(SKIN_TONES))
    a[14] = rng.integers(len(HAIR_TONES))
    return a


def is_distinct(candidate: np.ndarray, table: np.ndarray, min_diff: int = 2) -> bool:
    """Whether ``candidate`` differs from every row of ``table`` in >= ``min_diff`` attributes, at
    least one of them salient (see :data:`SALIENT_ATTRIBUTES`).

    Args:
        candidate: (NUM_ATTRIBUTES,) attribute vector.
        table: (K, NUM_ATTRIBUTES) attribute vectors (K may be 0).
    """
    if len(table) == 0:
        return True
    diff = table != candidate[None]
    return bool(np.all((diff.sum(1) >= min_diff) & (diff[:, _SALIENT_MASK].sum(1) >= 1)))


def sample_identities(rng: np.random.Generator, num: int, min_diff: int = 2) -> np.ndarray:
    """Draw ``num`` pairwise distinguishable identities (see :func:`is_distinct`).

    Returns:
        (num, NUM_ATTRIBUTES) int64 attribute table.

    Raises:
        RuntimeError: the attribute space is exhausted (``num`` far too large).
    """
    table = np.zeros((0, NUM_ATTRIBUTES), dtype=np.int64)
    tries = 0
    while len(table) < num:
        tries += 1
        if tries > 200 * num + 1000:
            raise RuntimeError(f"Could not draw {num} distinct identities (got {len(table)}).")
        cand = sample_attributes(rng)
        if is_distinct(cand, table, min_diff):
            table = np.concatenate([table, cand[None]], 0)
    return table


def sample_unlabeled_attributes(
    rng: np.random.Generator, identities: np.ndarray, min_diff: int = 2
) -> np.ndarray:
    """Attributes of a random passer-by that cannot be confused with any identity of the set."""
    for _ in range(1000):
        cand = sample_attributes(rng)
        if is_distinct(cand, identities, min_diff):
            return cand
    return cand  # pragma: no cover - practically unreachable with a few hundred identities


def describe_attributes(a: Sequence[int]) -> Dict[str, str]:
    """Human-readable attribute names of one identity (for docs and debugging)."""

    def col(i: int) -> str:
        return "none" if i < 0 else COLOR_NAMES[i]

    return {
        "top": f"{col(a[0])} {PATTERNS[a[1]]}" + (f" ({col(a[2])})" if a[1] else ""),
        "sleeves": ("long", "short")[a[3]],
        "bottom": f"{col(a[4])} {BOTTOM_STYLES[a[5]]}",
        "hat": col(a[6]),
        "bag": BAGS[a[7]] + (f" ({col(a[8])})" if a[7] else ""),
        "shoes": ("dark", "white", "brown")[a[9]],
        "build": ("slim", "broad")[a[10]],
        "legs": ("short", "long")[a[11]],
        "head": ("small", "large")[a[12]],
        "skin": str(a[13]),
        "hair": ("black", "brown", "blond", "grey")[a[14]],
    }


# --------------------------------------------------------------------------------------------
# Sprites
# --------------------------------------------------------------------------------------------
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


_SHIFT = 4
_ONE = 1 << _SHIFT


class _Painter:
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
            int(round((self.cx + x * self.s) * _ONE)),
            int(round((self.gy - y * self.s) * _ONE)),
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
        cv2.fillPoly(self.rgb, [arr], _c(color), cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(self.alpha, [arr], 255, cv2.LINE_AA, _SHIFT)

    def rect(self, x0: float, y0: float, x1: float, y1: float, color) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color)

    def line(self, a: Tuple[float, float], b: Tuple[float, float], thick: float, color) -> None:
        t = self._len(thick)
        cv2.line(self.rgb, self.p(*a), self.p(*b), _c(color), t, cv2.LINE_AA, _SHIFT)
        cv2.line(self.alpha, self.p(*a), self.p(*b), 255, t, cv2.LINE_AA, _SHIFT)

    def circle(self, c: Tuple[float, float], r: float, color) -> None:
        rr = int(round(r * self.s * _ONE))
        cv2.circle(self.rgb, self.p(*c), rr, _c(color), -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(self.alpha, self.p(*c), rr, 255, -1, cv2.LINE_AA, _SHIFT)

    def ellipse(self, c, axes, start: float, end: float, color, angle: float = 0.0) -> None:
        ax = (int(round(axes[0] * self.s * _ONE)), int(round(axes[1] * self.s * _ONE)))
        cv2.ellipse(self.rgb, self.p(*c), ax, angle, start, end, _c(color), -1, cv2.LINE_AA, _SHIFT)
        cv2.ellipse(self.alpha, self.p(*c), ax, angle, start, end, 255, -1, cv2.LINE_AA, _SHIFT)

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


def _c(color) -> Tuple[int, int, int]:
    return tuple(min(255, max(0, int(v))) for v in color)


def _jitter(rng: np.random.Generator, color: np.ndarray, amount: float = 0.06) -> np.ndarray:
    return np.clip(color * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, 4, 3), 0, 255)


def _supersampling(height_px: float) -> int:
    return int(np.clip(math.ceil(150.0 / max(height_px, 1.0)), 2, 6))


def render_person(
    attrs: np.ndarray,
    height_px: float,
    rng: np.random.Generator,
    facing_right: bool = True,
    phase: float = 0.0,
    swing: float = 0.3,
) -> Sprite:
    """Draw a walking person in side / three-quarter view.

    Args:
        attrs: (NUM_ATTRIBUTES,) identity attributes.
        height_px: body height (head top to feet) in pixels.
        rng: for the per-appearance colour jitter and shading.
        facing_right: walking direction; facing left mirrors the person (accessories change side).
        phase: walking phase in radians (leg and arm swing).
        swing: leg swing amplitude in radians (0 = standing).

    Returns:
        The person sprite; its ``foot`` is the bottom centre of the body.
    """
    a = [int(v) for v in attrs]
    skin = _jitter(rng, SKIN_TONES[a[13]], 0.04)
    hair = _jitter(rng, HAIR_TONES[a[14]], 0.04)
    top = _jitter(rng, PALETTE[a[0]])
    pat = _jitter(rng, PALETTE[a[2]]) if a[1] else top
    bottom = _jitter(rng, PALETTE[a[4]])
    shoes = _jitter(rng, SHOE_TONES[a[9]], 0.04)
    hat = _jitter(rng, PALETTE[a[6]]) if a[6] >= 0 else None
    bag = _jitter(rng, PALETTE[a[8]]) if a[7] else None
    broad = a[10] == 1

    ss = _supersampling(height_px)
    pt = _Painter(0.85, 1.04, height_px, ss, pad=2)

    head_r = 0.068 if a[12] else 0.058
    leg_len = 0.51 if a[11] else 0.45
    y_top = 1.0
    y_sh = y_top - 2 * head_r - 0.035  # shoulder line
    y_hip = leg_len
    sw = 0.105 if broad else 0.085  # half shoulder width
    hw = 0.085 if broad else 0.07  # half hip width
    leg_t = 0.085 if broad else 0.07
    arm_t = 0.058 if broad else 0.048
    foot_h = 0.025

    def darker(c, f=0.78):
        return c * f

    # --- legs (back leg first, darker) ---
    s = swing * math.sin(phase)
    legs = []
    for sign in (-1.0, 1.0):  # -1 back leg, +1 front leg
        alpha_ = sign * s
        hip = (0.3 * hw * sign, y_hip)
        l1 = 0.5 * (leg_len - foot_h)
        knee = (hip[0] + l1 * math.sin(alpha_), hip[1] - l1 * math.cos(alpha_))
        beta = alpha_ * (1.7 if alpha_ < 0 else 0.4)
        ankle = (knee[0] + l1 * math.sin(beta), knee[1] - l1 * math.cos(beta))
        legs.append((sign, hip, knee, ankle))

    # backpack sits behind the body
    if a[7] == 1:
        pt.poly(
            [
                (-sw - 0.085, y_sh - 0.02),
                (-0.3 * sw, y_sh + 0.005),
                (-0.3 * sw, y_sh - 0.25),
                (-sw - 0.075, y_sh - 0.24),
            ],
            bag,
        )
        pt.circle((-sw - 0.06, y_sh - 0.03), 0.03, bag)

    # back arm
    arm_s = 0.8 * swing * math.sin(phase)
    arms = []
    for sign in (-1.0, 1.0):
        g = -sign * arm_s
        sh = (0.15 * sw * (1 if sign > 0 else -1), y_sh - 0.035)
        elbow = (sh[0] + 0.17 * math.sin(g), sh[1] - 0.17 * math.cos(g))
        g2 = g + 0.25 + max(0.0, g) * 0.6
        hand = (elbow[0] + 0.155 * math.sin(g2), elbow[1] - 0.155 * math.cos(g2))
        arms.append((sign, sh, elbow, hand))

    def draw_arm(sh, elbow, hand, shade_f):
        sleeve = darker(top, shade_f)
        sk = darker(skin, shade_f)
        pt.line(sh, elbow, arm_t, sk)
        pt.line(elbow, hand, arm_t * 0.9, sk)
        pt.circle(hand, arm_t * 0.55, sk)
        if a[3] == 0:  # long sleeves
            pt.line(sh, elbow, arm_t, sleeve)
            pt.line(elbow, hand, arm_t * 0.9, sleeve)
            pt.circle(hand, arm_t * 0.5, sk)
        else:
            mid = (sh[0] + 0.55 * (elbow[0] - sh[0]), sh[1] + 0.55 * (elbow[1] - sh[1]))
            pt.line(sh, mid, arm_t * 1.1, sleeve)

    _, sh, elbow, hand = arms[0]
    draw_arm(sh, elbow, hand, 0.75)

    def draw_leg(hip, knee, ankle, shade_f):
        trousers = darker(bottom, shade_f)
        sk = darker(skin, shade_f)
        sh_col = darker(shoes, shade_f)
        if a[5] == 0:  # trousers
            pt.line(hip, knee, leg_t, trousers)
            pt.line(knee, ankle, leg_t * 0.85, trousers)
        elif a[5] == 1:  # shorts
            pt.line(knee, ankle, leg_t * 0.7, sk)
            pt.line(hip, knee, leg_t * 0.8, sk)
            mid = (hip[0] + 0.6 * (knee[0] - hip[0]), hip[1] + 0.6 * (knee[1] - hip[1]))
            pt.line(hip, mid, leg_t * 1.05, trousers)
        else:  # skirt: bare legs, the skirt is drawn over them
            pt.line(hip, knee, leg_t * 0.75, sk)
            pt.line(knee, ankle, leg_t * 0.65, sk)
        pt.ellipse(
            (ankle[0] + 0.025, ankle[1] - foot_h * 0.3), (0.045, foot_h * 0.8), 0, 360, sh_col
        )

    for sign, hip, knee, ankle in legs:
        draw_leg(hip, knee, ankle, 0.8 if sign < 0 else 1.0)

    # waist / skirt
    if a[5] == 2:
        y_sk = y_hip - 0.42 * leg_len
        pt.poly(
            [
                (-hw * 1.05, y_hip + 0.04),
                (hw * 1.05, y_hip + 0.04),
                (hw * 1.7, y_sk),
                (-hw * 1.7, y_sk),
            ],
            bottom,
        )
    else:
        pt.poly(
            [
                (-hw, y_hip + 0.04),
                (hw, y_hip + 0.04),
                (hw * 1.05, y_hip - 0.05),
                (-hw * 1.05, y_hip - 0.05),
            ],
            bottom,
        )

    # torso with pattern
    torso_pts = [(-sw, y_sh - 0.01), (sw, y_sh - 0.01), (hw, y_hip + 0.02), (-hw, y_hip + 0.02)]
    pt.poly(torso_pts, top)
    pt.ellipse((0.0, y_sh - 0.02), (sw, 0.035), 180, 360, top)
    if a[1]:
        tm = pt.mask()
        arr = np.array([pt.p(x, y) for x, y in torso_pts], np.int32)
        cv2.fillPoly(tm, [arr], 1, cv2.LINE_8, _SHIFT)
        r0, r1 = pt.px(y_sh + 0.015), pt.px(y_hip + 0.02)
        c0, c1 = pt.col(-sw), pt.col(sw)
        rows = np.arange(tm.shape[0])[:, None]
        cols = np.arange(tm.shape[1])[None, :]
        if a[1] == 1:  # horizontal stripes
            period = max(2.0, (r1 - r0) / 5.0)
            sel = (((rows - r0) / period).astype(np.int64) % 2 == 1) & (cols >= 0)
        elif a[1] == 2:  # two-tone: lower half
            sel = (rows >= (r0 + r1) // 2) & (cols >= 0)
        elif a[1] == 3:  # vertical split: back half
            sel = (cols < (c0 + c1) // 2) & (rows >= 0)
        else:  # chest logo
            cy = r0 + 0.35 * (r1 - r0)
            cx = c0 + 0.68 * (c1 - c0)
            rad = 0.42 * (c1 - c0) / 2
            sel = (rows - cy) ** 2 + (cols - cx) ** 2 <= rad**2
        pm = (tm > 0) & sel
        pt.rgb[pm] = _c(pat)

    # shoulder bag: strap across the chest, bag at the front hip
    if a[7] == 2:
        pt.line((-0.6 * sw, y_sh - 0.005), (0.8 * hw, y_hip + 0.06), 0.018, darker(bag, 0.85))
        pt.rect(0.3 * hw, y_hip + 0.07, hw + 0.075, y_hip - 0.05, bag)
    if a[7] == 1:  # backpack strap
        pt.line((0.25 * sw, y_sh - 0.005), (0.4 * sw, y_sh - 0.19), 0.02, darker(bag, 0.8))

    # neck, head, hair, cap
    hc = (0.012, y_top - head_r)
    pt.rect(-0.022, y_sh + 0.01, 0.03, hc[1] - head_r * 0.3, darker(skin, 0.9))
    pt.ellipse(hc, (head_r * 0.93, head_r), 0, 360, skin)
    pt.ellipse(
        (hc[0] - 0.12 * head_r, hc[1] + 0.08 * head_r),
        (head_r * 0.98, head_r * 0.98),
        125,
        350,
        hair,
    )
    if hat is not None:
        pt.ellipse((hc[0], hc[1] + 0.12 * head_r), (head_r * 1.04, head_r * 0.95), 180, 360, hat)
        pt.line(
            (hc[0], hc[1] + 0.1 * head_r), (hc[0] + 1.6 * head_r, hc[1] + 0.08 * head_r), 0.02, hat
        )

    # front arm over everything
    _, sh, elbow, hand = arms[1]
    draw_arm(sh, elbow, hand, 1.0)

    shade = (rng.uniform(0.85, 1.08), rng.uniform(-0.22, 0.22), rng.uniform(0.0, 0.2))
    return pt.finish(shade, flip=not facing_right)


# --------------------------------------------------------------------------------------------
# Objects (distractors and occluders), drawn in meters
# --------------------------------------------------------------------------------------------
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
_GREENS = np.array([(45, 110, 45), (70, 135, 55), (35, 85, 40), (95, 140, 60)], np.float32)

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
        wood = _jitter(
            rng,
            (
                np.array((130, 85, 45), np.float32)
                if rng.random() < 0.6
                else np.array((50, 95, 60), np.float32)
            ),
        )
        legc = np.array((45, 45, 48), np.float32)
        pt = _Painter(1.9, 0.95, m, ss)
        for x in (-0.8, 0.72):
            pt.rect(x, 0.0, x + 0.08, 0.88, legc)
        pt.rect(-0.92, 0.42, 0.92, 0.5, wood)
        pt.rect(-0.92, 0.6, 0.92, 0.68, wood)
        pt.rect(-0.92, 0.76, 0.92, 0.84, wood)
    elif kind == "car":
        body = _jitter(rng, _CAR_COLORS[rng.integers(len(_CAR_COLORS))])
        glass = np.array((60, 75, 90), np.float32)
        pt = _Painter(4.4, 1.55, m, ss)
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
        color = _jitter(
            rng,
            np.array([(60, 60, 65), (230, 230, 225), (40, 90, 60)][rng.integers(3)], np.float32),
        )
        pt = _Painter(length + 0.1, 1.05, m, ss)
        pt.rect(-length / 2, 0.95, length / 2, 1.02, color)
        pt.rect(-length / 2, 0.45, length / 2, 0.5, color)
        n = int(length / 0.14)
        for i in range(n + 1):
            x = -length / 2 + i * length / max(n, 1)
            wid = 0.06 if i % 7 == 0 else 0.022
            pt.rect(x - wid / 2, 0.0, x + wid / 2, 1.0, color)
    elif kind == "bush":
        w = rng.uniform(0.9, 1.8)
        pt = _Painter(w + 0.4, 1.2, m, ss)
        for _ in range(9):
            c = _GREENS[rng.integers(len(_GREENS))] * rng.uniform(0.85, 1.1)
            r = rng.uniform(0.22, 0.38)
            pt.circle(
                (rng.uniform(-w / 2 + r * 0.5, w / 2 - r * 0.5), rng.uniform(r, 0.95 - r * 0.3)),
                r,
                c,
            )
    elif kind == "bin":
        color = _jitter(
            rng,
            np.array(
                [(40, 100, 60), (90, 90, 95), (40, 70, 140), (150, 60, 30)][rng.integers(4)],
                np.float32,
            ),
        )
        pt = _Painter(0.6, 1.0, m, ss)
        pt.poly([(-0.24, 0.0), (0.24, 0.0), (0.27, 0.86), (-0.27, 0.86)], color)
        pt.rect(-0.3, 0.86, 0.3, 0.95, color * 0.7)
        pt.rect(-0.24, 0.5, 0.24, 0.56, color * 0.8)
    elif kind == "hydrant":
        color = np.array((200, 35, 30) if rng.random() < 0.7 else (230, 190, 30), np.float32)
        pt = _Painter(0.45, 0.8, m, ss)
        pt.rect(-0.11, 0.0, 0.11, 0.58, color)
        pt.ellipse((0.0, 0.58), (0.11, 0.11), 180, 360, color * 0.85)
        pt.rect(-0.19, 0.32, 0.19, 0.4, color * 0.9)
        pt.rect(-0.15, 0.0, 0.15, 0.06, color * 0.7)
    elif kind == "sign_pole":
        sign = np.array([(200, 30, 35), (35, 80, 190), (240, 200, 40)][rng.integers(3)], np.float32)
        h = rng.uniform(2.0, 2.7)
        pt = _Painter(0.7, h + 0.4, m, ss)
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
        pt = _Painter(1.0, 2.2, m, ss)
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
                _jitter(rng, PALETTE[rng.integers(len(PALETTE))]),
            )
        if rng.random() < 0.5:
            pt.circle(
                (rng.uniform(-0.15, 0.15), rng.uniform(1.5, 1.85)),
                0.14,
                SKIN_TONES[rng.integers(4)],
            )
    elif kind == "lamp_post":
        h = rng.uniform(3.5, 4.8)
        pt = _Painter(1.4, h + 0.4, m, ss)
        c = np.array((55, 58, 62), np.float32)
        pt.rect(-0.06, 0.0, 0.06, h, c)
        pt.rect(-0.11, 0.0, 0.11, 0.4, c)
        pt.line((0.0, h), (0.45, h + 0.12), 0.05, c)
        pt.ellipse((0.5, h + 0.06), (0.17, 0.07), 0, 360, (235, 230, 190))
    elif kind == "tree":
        h = rng.uniform(2.2, 3.2)
        r = rng.uniform(0.9, 1.4)
        pt = _Painter(2 * r + 0.8, h + 2 * r + 0.4, m, ss)
        pt.rect(-0.13, 0.0, 0.13, h + 0.4, (95, 65, 40))
        for _ in range(10):
            c = _GREENS[rng.integers(len(_GREENS))] * rng.uniform(0.8, 1.1)
            rr = rng.uniform(0.4, 0.7) * r
            pt.circle((rng.uniform(-r + rr, r - rr), h + r + rng.uniform(-0.6, 0.6) * r), rr, c)
    elif kind == "pillar":
        c = _jitter(
            rng,
            np.array(
                [(200, 195, 185), (150, 145, 140), (170, 120, 95)][rng.integers(3)], np.float32
            ),
        )
        h = rng.uniform(2.5, 4.0)
        pt = _Painter(0.8, h, m, ss)
        pt.rect(-0.3, 0.0, 0.3, h, c)
        pt.rect(-0.36, 0.0, 0.36, 0.15, c * 0.8)
    else:
        raise ValueError(f"Unknown object kind {kind!r}")
    return pt.finish((rng.uniform(0.85, 1.05), rng.uniform(-0.15, 0.15), 0.0), flip=flip)


# --------------------------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------------------------
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
    sky_top = _jitter(rng, sky_top, 0.08)
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
    g = _jitter(rng, ground_kinds[rng.integers(len(ground_kinds))], 0.1)
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
        kc = tuple(float(v) for v in _jitter(rng, np.array((185, 185, 180), np.float32)))
        cv2.rectangle(img, (0, y), (width, y + max(2, gh // 40)), kc, -1)
        below = _jitter(rng, ground_kinds[rng.integers(len(ground_kinds))], 0.1) - g
        img[y + max(2, gh // 40) :] += below * 0.6

    # skyline: buildings or a row of trees
    if rng.random() < 0.7:
        x = -int(rng.uniform(0, 60))
        while x < width:
            bw = int(rng.uniform(0.12, 0.4) * width)
            top = int(rng.uniform(-0.2, 0.85) * horizon)
            base = horizon + int(rng.uniform(0, 0.04) * height)
            facade = _jitter(
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
            win = _jitter(
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
            c = _GREENS[rng.integers(len(_GREENS))] * rng.uniform(0.7, 1.0)
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


# --------------------------------------------------------------------------------------------
# Scene
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# One image file, and the entry point of rendering subprocesses
# --------------------------------------------------------------------------------------------
# (image index, output path, master seed, labeled global pids, generator parameters, JPEG quality)
RenderTask = Tuple[int, str, int, List[int], Dict, int]
# (image index, (width, height), [(pid, (x, y, w, h), visibility), ...])
RenderResult = Tuple[int, Tuple[int, int], List[Tuple[int, Tuple[int, int, int, int], float]]]


def render_image_file(task: RenderTask, identities: np.ndarray) -> RenderResult:
    """Render image ``index`` from ``SeedSequence(seed, spawn_key=(1, index))`` and write the JPEG.

    Args:
        task: see :data:`RenderTask`.
        identities: (K, NUM_ATTRIBUTES) the identity table.

    Returns:
        See :data:`RenderResult` (plain tuples, picklable without this module).
    """
    index, path, seed, labeled, params, quality = task
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, index)))
    img, persons = render_scene(
        rng, [(pid, identities[pid]) for pid in labeled], identities, params
    )
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(path, bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError(f"Could not write {path!r}")
    people = [(p.pid, p.box, p.visibility) for p in persons]
    return index, (img.shape[1], img.shape[0]), people


def worker_main(job_dir: str, worker: int, num_workers: int) -> None:
    """Entry point of a rendering subprocess: renders tasks ``worker::num_workers`` of the job.

    The job is ``job_dir/job.pkl`` (``{"tasks": [RenderTask], "identities": array}``); prints
    ``done <index>`` per image (progress) and pickles the results to ``job_dir/result{worker}.pkl``.
    """
    cv2.setNumThreads(1)
    with open(os.path.join(job_dir, "job.pkl"), "rb") as fh:
        job = pickle.load(fh)
    results = []
    for task in job["tasks"][worker::num_workers]:
        results.append(render_image_file(task, job["identities"]))
        print(f"done {task[0]}", flush=True)
    with open(os.path.join(job_dir, f"result{worker}.pkl"), "wb") as fh:
        pickle.dump(results, fh, protocol=pickle.HIGHEST_PROTOCOL)
