"""Parameters of the synthetic dataset: defaults and their validation, the generator version, file
names."""

import json
import os
from typing import Dict

# Bump whenever the output for the same parameters changes (renderer, layout, file contents).
GENERATOR_VERSION = 1
INFO_FILE = "synthetic_info.json"
IMAGE_DIR = os.path.join("Image", "SSM")

SYNTHETIC_DEFAULTS: Dict[str, object] = {
    "seed": 0,
    "num_train_images": 300,
    "num_test_images": 200,
    "num_train_ids": 140,
    "num_test_ids": 100,
    # appearances (images) per identity, inclusive range; test identities need >= 2
    "train_appearances": (4, 8),
    "test_appearances": (3, 6),
    # labeled people per image, inclusive range (a target: identity counts take precedence)
    "labeled_per_image": (2, 6),
    # unlabeled passers-by per image, inclusive range (fewer when they do not fit)
    "unlabeled_per_image": (0, 4),
    # TestG{N} files; only sizes < num_test_images are written
    "gallery_sizes": (25, 50, 100),
    "image_width": (400, 512),
    "image_height": (300, 384),
    # person height range in pixels (labeled people are at least 6 px taller than the minimum)
    "person_height": (30, 250),
    # probability that an occluder is put right in front of a person
    "occlusion_prob": 0.2,
    # a person whose visible fraction is below this is "occluded" (Occlusion.mat, statistics)
    "occlusion_threshold": 0.85,
    # fraction of the queries, the smallest ones, in Resolution.mat
    "resolution_fraction": 0.1,
    "person_blur_prob": 0.12,
    "image_blur_prob": 0.15,
    "jpeg_quality": 90,
}
_RANGE_KEYS = (
    "train_appearances",
    "test_appearances",
    "labeled_per_image",
    "unlabeled_per_image",
    "image_width",
    "image_height",
    "person_height",
)
MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: personsearch synthetic generator"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def normalize_params(params: Dict) -> Dict:
    """Merge with the defaults, validate, and return JSON-compatible values (tuples -> lists)."""
    unknown = sorted(set(params) - set(SYNTHETIC_DEFAULTS))
    if unknown:
        raise TypeError(
            f"Unknown synthetic dataset parameter(s) {unknown}; "
            f"valid: {sorted(SYNTHETIC_DEFAULTS)}."
        )
    p = dict(SYNTHETIC_DEFAULTS)
    p.update(params)
    out = json.loads(json.dumps(p))  # tuples -> lists, numpy scalars rejected early
    for key in ("seed", "num_train_images", "num_test_images", "num_train_ids", "num_test_ids"):
        if not isinstance(out[key], (int, float)) or int(out[key]) != out[key] or out[key] < 0:
            raise ValueError(
                f"synthetic parameter {key} must be a non-negative int, got {out[key]!r}"
            )
        out[key] = int(out[key])
    for key in _RANGE_KEYS:
        value = out[key]
        pair = isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))
        if not pair or not (0 <= value[0] <= value[1]):
            raise ValueError(
                f"synthetic parameter {key} must be a range (lo, hi) with 0 <= lo <= hi, "
                f"got {value!r}"
            )
    if out["num_test_images"] < 3 or out["num_train_images"] < 1:
        raise ValueError("the synthetic dataset needs >= 1 train image and >= 3 test images")
    if out["num_train_ids"] < 1 or out["num_test_ids"] < 1:
        raise ValueError("the synthetic dataset needs >= 1 train and >= 1 test identity")
    if out["person_height"][0] < 12 or out["image_height"][0] < 64 or out["image_width"][0] < 64:
        raise ValueError("synthetic images must be >= 64 px and people >= 12 px tall")
    if not isinstance(out["gallery_sizes"], list) or not all(map(_is_number, out["gallery_sizes"])):
        raise ValueError(f"gallery_sizes must be a list of sizes, got {out['gallery_sizes']!r}")
    sizes = sorted(set(int(n) for n in out["gallery_sizes"]))
    if not sizes or sizes[0] < 2:
        raise ValueError(f"gallery_sizes must hold sizes >= 2, got {out['gallery_sizes']!r}")
    if not [n for n in sizes if n < out["num_test_images"]]:
        raise ValueError(
            f"no gallery size in {sizes} is smaller than num_test_images={out['num_test_images']}"
        )
    out["gallery_sizes"] = sizes
    return out
