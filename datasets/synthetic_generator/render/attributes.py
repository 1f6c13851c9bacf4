"""Identity attributes of synthetic people: the colour palettes, the attribute vector, sampling of
distinct identities and of unlabeled passers-by, readable descriptions."""

from typing import Dict, Sequence

import numpy as np

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
