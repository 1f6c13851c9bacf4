"""Command-line helpers shared by the tools: registering a user's JSON datasets from flags and
telling the user which person-search splits exist when a name is wrong."""

import argparse
from typing import List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from personsearch.data.datasets.json_format import register_person_search_json


def person_search_datasets() -> List[str]:
    """Names of the registered splits whose metadata says ``evaluator_type="person_search"``,
    sorted (the COCO/LVIS/... splits detectron2 registers are left out)."""
    return sorted(
        name
        for name in DatasetCatalog.list()
        if MetadataCatalog.get(name).get("evaluator_type") == "person_search"
    )


def add_register_json_argument(parser: argparse.ArgumentParser) -> None:
    """Adds the repeatable ``--register-json NAME JSON IMAGE_ROOT`` flag (stored as
    ``args.register_json``, a list of 3-lists)."""
    parser.add_argument(
        "--register-json",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a person-search JSON file (docs/DATASET_FORMAT.md) under NAME first "
        "(repeatable)",
    )


def register_json_datasets(specs: Sequence[Sequence[str]]) -> None:
    """Registers every ``(name, json_file, image_root)`` of ``--register-json``; the files are
    read when the split is first used, and a name that is already registered is an error."""
    for name, json_file, image_root in specs:
        register_person_search_json(name, json_file, image_root)


def unregistered_datasets_message(names: Sequence[str]) -> Optional[str]:
    """None when every name in ``names`` is registered, else a message naming the missing ones
    and listing the registered person-search splits."""
    registered = set(DatasetCatalog.list())
    missing = [name for name in names if name not in registered]
    if not missing:
        return None
    quoted = ", ".join(repr(name) for name in missing)
    what = f"Dataset {quoted} is" if len(missing) == 1 else f"Datasets {quoted} are"
    return (
        f"{what} not registered; registered person-search splits: "
        f"{', '.join(person_search_datasets()) or 'none'} (built-in splits live under "
        "$DETECTRON2_DATASETS; add your own with --register-json NAME JSON IMAGE_ROOT)."
    )
