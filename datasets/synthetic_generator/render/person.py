"""One person as a sprite, from an identity's attribute vector, a height in pixels and a random
pose, lighting and blur."""

import math

import cv2
import numpy as np

from .attributes import (
    HAIR_TONES,
    PALETTE,
    SHOE_TONES,
    SKIN_TONES,
)
from .painter import (
    SHIFT,
    Painter,
    Sprite,
    clip_color,
    jitter,
    supersampling,
)


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
    skin = jitter(rng, SKIN_TONES[a[13]], 0.04)
    hair = jitter(rng, HAIR_TONES[a[14]], 0.04)
    top = jitter(rng, PALETTE[a[0]])
    pat = jitter(rng, PALETTE[a[2]]) if a[1] else top
    bottom = jitter(rng, PALETTE[a[4]])
    shoes = jitter(rng, SHOE_TONES[a[9]], 0.04)
    hat = jitter(rng, PALETTE[a[6]]) if a[6] >= 0 else None
    bag = jitter(rng, PALETTE[a[8]]) if a[7] else None
    broad = a[10] == 1

    ss = supersampling(height_px)
    pt = Painter(0.85, 1.04, height_px, ss, pad=2)

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
        cv2.fillPoly(tm, [arr], 1, cv2.LINE_8, SHIFT)
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
        pt.rgb[pm] = clip_color(pat)

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
