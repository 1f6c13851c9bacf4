"""Writing records as a person-search JSON file (``docs/DATASET_FORMAT.md``), the inverse of
:func:`personsearch.data.datasets.json_format.load_person_search_json`."""

import json
import logging
import os
from typing import Dict, Optional, Sequence

from detectron2.structures import BoxMode

from personsearch.utils.file_io import atomic_write

from .common import UNLABELED_PID
from .json_format import FORMAT_NAME, FORMAT_VERSION, PERSON_CATEGORY

__all__ = ["save_person_search_json"]

logger = logging.getLogger(__name__)


def _record_where(index: int, record: Dict) -> str:
    return f"record {index} (image_id={record.get('image_id')!r})"


def save_person_search_json(
    records: Sequence[Dict],
    json_file: str,
    image_root: Optional[str] = None,
    info: Optional[Dict] = None,
) -> None:
    """Write records (project convention) as a person-search JSON file; the inverse of loading.

    Images get ids 1..N in record order, annotations 1..M; boxes are written XYWH. Person ids
    are written as they are (loading remaps them to 0..K-1 in sorted order, which leaves
    already-contiguous ids unchanged). Queries are written sorted by ``query_index`` (loading
    numbers them by position, so indices 0..Q-1 survive the round trip).

    Args:
        records: dataset dicts as returned by any personsearch loader.
        json_file: output path; its folder is created.
        image_root: if given, ``file_name`` is stored relative to it (and the file is then loaded
            with the same ``image_root``); otherwise the records' ``file_name`` is stored as is.
        info: extra entries for the file's ``info`` object (e.g. the source dataset name).

    Raises:
        ValueError: the records are inconsistent (duplicate images or query indices, a gallery
            image that is not among the records, a negative person id other than -1).
    """
    images, annotations, queries = [], [], []
    id_of: Dict[str, int] = {}
    stored_names = set()
    for index, record in enumerate(records):
        where = _record_where(index, record)
        image_id = record["image_id"]
        if image_id in id_of:
            raise ValueError(f"Cannot save {json_file}: {where}: duplicate image_id")
        name = record["file_name"]
        if image_root is not None:
            name = os.path.relpath(name, image_root)
        if name in stored_names:
            raise ValueError(f"Cannot save {json_file}: {where}: duplicate file_name {name!r}")
        stored_names.add(name)
        id_of[image_id] = len(images) + 1
        image = {
            "id": id_of[image_id],
            "file_name": name,
            "height": int(record["height"]),
            "width": int(record["width"]),
        }
        if record.get("camera_id") is not None:
            image["camera_id"] = int(record["camera_id"])
        images.append(image)
        for ann in record.get("annotations", []):
            pid = int(ann["person_id"])
            if pid < 0 and pid != UNLABELED_PID:
                raise ValueError(f"Cannot save {json_file}: {where}: person_id {pid} is negative")
            mode = ann.get("bbox_mode", BoxMode.XYXY_ABS)
            xywh = BoxMode.convert(list(ann["bbox"]), mode, BoxMode.XYWH_ABS)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": id_of[image_id],
                    "bbox": [float(v) for v in xywh],
                    "person_id": pid,
                    "category_id": PERSON_CATEGORY["id"],
                }
            )
        for query in record.get("queries", []):
            queries.append((int(query["query_index"]), image_id, query, where))

    queries.sort(key=lambda q: q[0])
    indices = [q[0] for q in queries]
    if len(set(indices)) != len(indices):
        raise ValueError(f"Cannot save {json_file}: two queries share a query_index")
    if indices != list(range(len(indices))):
        logger.warning(
            "%s: the query indices are not 0..%d; they are written in order and become their "
            "positions when loaded.",
            json_file,
            len(indices) - 1,
        )
    query_entries = []
    for query_index, image_id, query, where in queries:
        entry = {
            "image_id": id_of[image_id],
            "bbox": [
                float(v)
                for v in BoxMode.convert(list(query["bbox"]), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
            ],
            "person_id": int(query["person_id"]),
        }
        if query.get("gallery_image_ids") is not None:
            unknown = [g for g in query["gallery_image_ids"] if g not in id_of]
            if unknown:
                raise ValueError(
                    f"Cannot save {json_file}: {where}: query {query_index} lists gallery images "
                    f"that are not among the records: {unknown[:5]}"
                )
            entry["gallery_image_ids"] = [id_of[g] for g in query["gallery_image_ids"]]
        query_entries.append(entry)

    data = {
        "info": {"format": FORMAT_NAME, "version": FORMAT_VERSION, **(info or {})},
        "categories": [dict(PERSON_CATEGORY)],
        "images": images,
        "annotations": annotations,
    }
    if query_entries:
        data["queries"] = query_entries
    folder = os.path.dirname(os.path.abspath(json_file))
    os.makedirs(folder, exist_ok=True)
    with atomic_write(json_file, "w", encoding="utf-8") as f:
        json.dump(data, f)
    logger.info(
        "Wrote %d images, %d boxes and %d queries to %s",
        len(images),
        len(annotations),
        len(query_entries),
        json_file,
    )
