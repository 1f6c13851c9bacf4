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
    # additional training images, named after all the others (s{N+1}.jpg, ...) and drawn from
    # their own seed streams: the default images, identities and protocol files stay unchanged
    "extra_train_images": 0,
    # additional training identities (named after all the others), appearing only in the extra
    # images; >= 1 when extra_train_images > 0, and 0 when it is 0
    "extra_train_ids": 0,
}
# Keys added after GENERATOR_VERSION 1 was published. They are recorded in synthetic_info.json only
# when they are not 0, so a set made with them at 0 is byte-identical to one made before they
# existed, and a cached set recorded without them counts as having them at 0 (see
# :func:`recorded_params` and :func:`params_from_record`).
EXTRA_TRAIN_KEYS = ("extra_train_images", "extra_train_ids")
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
    """Merge with the defaults, validate, and return JSON-compatible values (tuples -> lists).

    Args:
        params: any keys of :data:`SYNTHETIC_DEFAULTS`.

    Returns:
        Every key of :data:`SYNTHETIC_DEFAULTS`, validated.

    Raises:
        TypeError: unknown key. ValueError: a bad value (the message names the parameter).
    """
    unknown = sorted(set(params) - set(SYNTHETIC_DEFAULTS))
    if unknown:
        raise TypeError(
            f"Unknown synthetic dataset parameter(s) {unknown}; "
            f"valid: {sorted(SYNTHETIC_DEFAULTS)}."
        )
    p = dict(SYNTHETIC_DEFAULTS)
    p.update(params)
    out = json.loads(json.dumps(p))  # tuples -> lists, numpy scalars rejected early
    int_keys = ("seed", "num_train_images", "num_test_images", "num_train_ids", "num_test_ids")
    for key in int_keys + EXTRA_TRAIN_KEYS:
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
    _check_extra_train(out)
    return out


def _check_extra_train(p: Dict) -> None:
    """Consistency of ``extra_train_images`` and ``extra_train_ids`` (already non-negative ints).

    Raises:
        ValueError: extra images without extra identities or the other way round, or more extra
            identities than the extra images can hold (``labeled_per_image`` upper bound each).
    """
    n_img, n_ids = p["extra_train_images"], p["extra_train_ids"]
    if n_img > 0 and n_ids < 1:
        raise ValueError(
            f"synthetic parameter extra_train_ids must be >= 1 when extra_train_images > 0 "
            f"(the extra images show extra identities only), got extra_train_ids={n_ids} with "
            f"extra_train_images={n_img}"
        )
    if n_ids > 0 and n_img < 1:
        raise ValueError(
            f"synthetic parameter extra_train_ids={n_ids} needs extra_train_images >= 1 (extra "
            f"identities appear only in the extra images), got extra_train_images={n_img}"
        )
    most = n_img * int(p["labeled_per_image"][1])
    if n_ids > most:
        raise ValueError(
            f"synthetic parameter extra_train_ids={n_ids} is too large for "
            f"extra_train_images={n_img}: every identity needs an image and an image holds at "
            f"most labeled_per_image[1]={p['labeled_per_image'][1]} labeled people (<= {most} "
            f"identities)"
        )


def recorded_params(p: Dict) -> Dict:
    """The parameters as written to ``synthetic_info.json``: ``p`` without the
    :data:`EXTRA_TRAIN_KEYS` that are 0.

    Args:
        p: normalized parameters (see :func:`normalize_params`).
    """
    return {k: v for k, v in p.items() if not (k in EXTRA_TRAIN_KEYS and v == 0)}


def params_from_record(recorded: Dict) -> Dict:
    """Inverse of :func:`recorded_params`: the :data:`EXTRA_TRAIN_KEYS` missing from a recorded
    parameter dict (sets written without them, or before they existed) are 0.

    Args:
        recorded: the ``params`` of a ``synthetic_info.json``.
    """
    out = {k: SYNTHETIC_DEFAULTS[k] for k in EXTRA_TRAIN_KEYS}
    out.update(recorded)
    return out
