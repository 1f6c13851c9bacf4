"""Which records of a split a picture tool draws, and the file names of its pictures."""

import os
import random
from typing import Dict, List, Optional, Sequence

__all__ = ["output_name", "select_records"]


def select_records(
    records: Sequence[Dict],
    num_images: int,
    image_ids: Optional[Sequence[str]] = None,
    seed: int = 0,
    queries_only: bool = False,
) -> List[Dict]:
    """The records of ``image_ids`` (in that order), or a seeded random sample of ``num_images``
    (among the images with queries when ``queries_only``) in split order.

    Args:
        records: dataset dicts in the project convention.
        num_images: size of the random sample (all records when there are fewer).
        image_ids: ``image_id`` values to pick instead of sampling, or None / empty.
        seed: seed of the sample.
        queries_only: sample only images that hold at least one query.

    Raises:
        KeyError: an image id is not in the split.
        ValueError: the split has no images (or, with ``queries_only``, none with a query).
    """
    if image_ids:
        by_id = {r["image_id"]: r for r in records}
        missing = [i for i in image_ids if i not in by_id]
        if missing:
            raise KeyError(f"image ids not in the dataset: {missing}")
        return [by_id[i] for i in image_ids]
    pool = [r for r in records if r.get("queries")] if queries_only else list(records)
    if not pool:
        raise ValueError(
            "no image of the dataset holds a query" if queries_only else "the dataset has no images"
        )
    chosen = sorted(random.Random(seed).sample(range(len(pool)), min(num_images, len(pool))))
    return [pool[i] for i in chosen]


def output_name(image_id: str) -> str:
    """A flat PNG file name for an image id that may contain folders (``a/b.jpg`` ->
    ``a__b.png``)."""
    stem = os.path.splitext(image_id)[0]
    return stem.replace("/", "__").replace("\\", "__") + ".png"
