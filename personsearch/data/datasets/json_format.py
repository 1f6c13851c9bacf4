"""Custom person-search datasets: a COCO-style JSON file with person ids and an optional query list.

The format is documented for users in ``docs/DATASET_FORMAT.md``. In short (boxes XYWH, pixels)::

    {"images":      [{"id": 1, "file_name": "cam1/000123.jpg", "height": 1080, "width": 1920,
                      "camera_id": 1}],                                        # camera_id optional
     "annotations": [{"id": 7, "image_id": 1, "bbox": [x, y, w, h], "person_id": 12,
                      "category_id": 1}],      # person_id -1 = unlabeled; category_id optional
     "queries":     [{"image_id": 1, "bbox": [x, y, w, h], "person_id": 12,
                      "gallery_image_ids": [2, 3]}],     # optional; gallery optional per query
     "categories":  [{"id": 1, "name": "person"}],       # optional
     "info":        {...}}                               # optional

:func:`load_person_search_json` turns such a file into records in the project convention (see
:mod:`personsearch.data.datasets.common`), :func:`register_person_search_json` registers it with
Detectron2; :func:`personsearch.data.datasets.json_writer.save_person_search_json` writes records
back to the format (used by ``tools/convert_to_json.py``).
"""

import json
import logging
import math
import os
from collections import defaultdict
from typing import Any, Dict, List, Tuple

import numpy as np
from detectron2.structures import BoxMode

from .common import (
    UNLABELED_PID,
    BoxSanitizer,
    DatasetFormatError,
    contiguous_id_map,
    log_loaded,
    read_image_size,
    read_image_sizes,
    register_person_search_dataset,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "load_person_search_json",
    "register_person_search_json",
]

logger = logging.getLogger(__name__)

FORMAT_NAME = "personsearch-json"
FORMAT_VERSION = 1
# the category written by json_writer.save_person_search_json; loading accepts any category ids
PERSON_CATEGORY = {"id": 1, "name": "person"}


# ----------------------------------------------------------------------------------------------
# validation helpers: every error names the JSON file and the record ("annotations[3] (id=7)")
# ----------------------------------------------------------------------------------------------
def _where(section: str, index: int, entry: Any) -> str:
    """``"annotations[3] (id=7)"``: the position of a record and its own id when it has one."""
    if isinstance(entry, dict) and "id" in entry:
        return f"{section}[{index}] (id={entry['id']!r})"
    return f"{section}[{index}]"


def _error(json_file: str, where: str, message: str) -> DatasetFormatError:
    return DatasetFormatError(f"{json_file}: {where}: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_image_key(value: Any) -> bool:
    """Image ids may be JSON integers or strings (COCO uses integers)."""
    return _is_int(value) or isinstance(value, str)


def _get_xywh(json_file: str, where: str, entry: Dict) -> List[float]:
    if "bbox" not in entry:
        raise _error(json_file, where, "missing key 'bbox' ([x, y, w, h] in pixels)")
    bbox = entry["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise _error(
            json_file, where, f"'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}"
        )
    return [float(v) for v in bbox]


def _get_person_id(json_file: str, where: str, entry: Dict) -> int:
    if "person_id" not in entry:
        raise _error(json_file, where, "missing key 'person_id' (use -1 for an unlabeled person)")
    pid = entry["person_id"]
    if not _is_int(pid):
        raise _error(json_file, where, f"'person_id' must be an integer, got {pid!r}")
    if pid < 0 and pid != UNLABELED_PID:
        raise _error(
            json_file,
            where,
            f"'person_id' must be >= 0 (an identity) or {UNLABELED_PID} (unlabeled), got {pid}",
        )
    return pid


def _get_image_ref(json_file: str, where: str, entry: Dict, images: Dict[Any, int]) -> int:
    """Index (into ``images``) of the image an annotation or query refers to."""
    if "image_id" not in entry:
        raise _error(json_file, where, "missing key 'image_id'")
    image_id = entry["image_id"]
    if not _is_image_key(image_id) or image_id not in images:
        raise _error(json_file, where, f"'image_id' {image_id!r} is not the id of any image")
    return images[image_id]


def _get_list(json_file: str, data: Dict, key: str, required: bool) -> List:
    if key not in data:
        if required:
            raise DatasetFormatError(f"{json_file}: missing top-level key {key!r} (a list)")
        return []
    value = data[key]
    if not isinstance(value, list):
        raise DatasetFormatError(
            f"{json_file}: top-level key {key!r} must be a list, got {type(value).__name__}"
        )
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise _error(json_file, f"{key}[{i}]", f"must be an object, got {entry!r}")
    return value


def _read_json(json_file: str) -> Dict:
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"Person-search JSON file not found: {json_file!r}")
    try:
        with open(json_file, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{json_file}: not a valid JSON file: {e}") from e
    if not isinstance(data, dict):
        raise DatasetFormatError(
            f"{json_file}: the top level must be an object with 'images' and 'annotations', "
            f"got {type(data).__name__}"
        )
    return data


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------
def _parse_images(json_file: str, entries: List[Dict]) -> Tuple[List[Dict], Dict[Any, int]]:
    """Validate the ``images`` list; returns parsed images and the map JSON id -> index."""
    images: List[Dict] = []
    index_of: Dict[Any, int] = {}
    names: Dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = _where("images", i, entry)
        if "id" not in entry:
            raise _error(json_file, where, "missing key 'id'")
        image_id = entry["id"]
        if not _is_image_key(image_id):
            raise _error(json_file, where, f"'id' must be an integer or a string, got {image_id!r}")
        if image_id in index_of:
            first = _where("images", index_of[image_id], entries[index_of[image_id]])
            raise _error(json_file, where, f"duplicate image id {image_id!r} (also {first})")
        name = entry.get("file_name")
        if not isinstance(name, str) or not name:
            raise _error(json_file, where, f"'file_name' must be a non-empty string, got {name!r}")
        if name in names:
            first = _where("images", names[name], entries[names[name]])
            raise _error(json_file, where, f"duplicate file_name {name!r} (also {first})")
        size = []
        for key in ("height", "width"):
            if key in entry:
                value = entry[key]
                if not _is_int(value) or value <= 0:
                    raise _error(
                        json_file, where, f"{key!r} must be a positive integer, got {value!r}"
                    )
            size.append(entry.get(key))
        image = {"file_name": name, "height": size[0], "width": size[1]}
        if "camera_id" in entry:
            if not _is_int(entry["camera_id"]):
                raise _error(
                    json_file, where, f"'camera_id' must be an integer, got {entry['camera_id']!r}"
                )
            image["camera_id"] = entry["camera_id"]
        index_of[image_id] = i
        names[name] = i
        images.append(image)
    return images, index_of


def _fill_image_sizes(
    json_file: str, entries: List[Dict], images: List[Dict], image_root: str
) -> None:
    """Read height/width from the image headers where the JSON does not give both."""
    todo = [i for i, im in enumerate(images) if im["height"] is None or im["width"] is None]
    if not todo:
        return
    paths = [os.path.join(image_root, images[i]["file_name"]) for i in todo]
    for i, path in zip(todo, paths):
        if not os.path.isfile(path):
            raise _error(
                json_file,
                _where("images", i, entries[i]),
                f"no 'height'/'width' given and the image file {path!r} does not exist to read "
                f"them from (image_root={image_root!r})",
            )
    logger.info("%s: reading the size of %d images from their headers", json_file, len(todo))
    try:
        sizes = read_image_sizes(paths, desc=f"image sizes of {os.path.basename(json_file)}")
    except (OSError, ValueError):
        # find the first failing image to name its record
        for i, path in zip(todo, paths):
            try:
                read_image_size(path)
            except (OSError, ValueError) as e:
                raise _error(json_file, _where("images", i, entries[i]), str(e)) from e
        raise
    for i, (height, width) in zip(todo, sizes):
        images[i]["height"], images[i]["width"] = height, width


def load_person_search_json(json_file: str, image_root: str) -> List[Dict]:
    """Load a person-search JSON file (``docs/DATASET_FORMAT.md``) as Detectron2 records.

    Args:
        json_file: path of the JSON file.
        image_root: folder that the images' ``file_name`` are relative to.

    Returns:
        One record per entry of ``images``, in file order, in the project convention
        (:mod:`personsearch.data.datasets.common`): ``image_id`` is the JSON ``file_name``,
        ``file_name`` is ``os.path.join(image_root, file_name)``, boxes are XYXY_ABS (clipped to the
        image; empty boxes dropped and counted in one log line), labeled person ids are remapped
        to 0..K-1 in sorted order of the raw ids (-1 stays unlabeled; ids that only queries use
        follow as K, K+1, ...). Images that hold queries carry ``queries: [{bbox, person_id,
        query_index, gallery_image_ids (if given, image_id strings)}]``, ``query_index`` being the
        query's position in the JSON ``queries`` list. ``camera_id`` is copied when present.

    Raises:
        FileNotFoundError: ``json_file`` does not exist.
        DatasetFormatError: the file is not valid JSON or breaks the format; the message names
            the file and the offending record, e.g. ``annotations[3] (id=7)``.
    """
    data = _read_json(json_file)
    image_entries = _get_list(json_file, data, "images", required=True)
    ann_entries = _get_list(json_file, data, "annotations", required=True)
    query_entries = _get_list(json_file, data, "queries", required=False)
    category_entries = _get_list(json_file, data, "categories", required=False)

    category_ids = set()
    for i, entry in enumerate(category_entries):
        if not _is_int(entry.get("id")):
            raise _error(
                json_file, f"categories[{i}]", f"'id' must be an integer, got {entry.get('id')!r}"
            )
        category_ids.add(entry["id"])

    images, index_of = _parse_images(json_file, image_entries)
    _fill_image_sizes(json_file, image_entries, images, image_root)

    # annotations, grouped per image
    per_image: Dict[int, List[Tuple[List[float], int]]] = defaultdict(list)
    for i, entry in enumerate(ann_entries):
        where = _where("annotations", i, entry)
        image_index = _get_image_ref(json_file, where, entry, index_of)
        xywh = _get_xywh(json_file, where, entry)
        pid = _get_person_id(json_file, where, entry)
        category = entry.get("category_id")
        # checked as an int first: an unhashable value must not crash the "in" test
        listed = _is_int(category) and category in category_ids
        if category_entries and "category_id" in entry and not listed:
            raise _error(
                json_file,
                where,
                f"'category_id' {entry['category_id']!r} is not listed in 'categories' "
                f"(ids {sorted(category_ids)})",
            )
        per_image[image_index].append((xywh, pid))

    # queries
    queries = []
    num_repeated_galleries = 0
    for i, entry in enumerate(query_entries):
        where = f"queries[{i}]"
        image_index = _get_image_ref(json_file, where, entry, index_of)
        xywh = _get_xywh(json_file, where, entry)
        pid = _get_person_id(json_file, where, entry)
        if pid == UNLABELED_PID:
            raise _error(json_file, where, "a query must be a labeled person (person_id >= 0)")
        gallery = None
        if "gallery_image_ids" in entry:
            gallery_ids = entry["gallery_image_ids"]
            if not isinstance(gallery_ids, list):
                raise _error(
                    json_file, where, f"'gallery_image_ids' must be a list, got {gallery_ids!r}"
                )
            gallery = []
            for j, gid in enumerate(gallery_ids):
                if not _is_image_key(gid) or gid not in index_of:
                    raise _error(
                        json_file,
                        where,
                        f"gallery_image_ids[{j}] = {gid!r} is not the id of any image",
                    )
                gallery.append(index_of[gid])
            if len(set(gallery)) != len(gallery):
                num_repeated_galleries += 1
        queries.append((image_index, xywh, pid, gallery))

    if num_repeated_galleries:
        # kept: the evaluator scores every listed entry, as CUHK-SYSU's TestG{N} lists require
        logger.warning(
            "%s: %d queries list an image more than once in 'gallery_image_ids'; every entry is "
            "kept and scored.",
            json_file,
            num_repeated_galleries,
        )

    # boxes: XYWH -> XYXY, clipped to the image, empty ones dropped (counted in one log line)
    source = os.path.basename(json_file)
    sanitizer = BoxSanitizer(f"{source} annotations")
    kept: List[Tuple[np.ndarray, List[int]]] = []
    for image_index, image in enumerate(images):
        anns = per_image.get(image_index, [])
        xyxy = np.array(
            [BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for xywh, _ in anns],
            dtype=np.float64,
        ).reshape(-1, 4)
        boxes, keep = sanitizer(xyxy, image["width"], image["height"])
        kept.append((boxes, [pid for (_, pid), k in zip(anns, keep) if k]))

    # person ids of the kept boxes first (contiguous 0..K-1), then ids that only queries use
    pid_map = contiguous_id_map(pid for _, pids in kept for pid in pids if pid != UNLABELED_PID)
    for pid in sorted({q[2] for q in queries} - set(pid_map)):
        pid_map[pid] = len(pid_map)

    records = []
    for image, (boxes, pids) in zip(images, kept):
        record = {
            "file_name": os.path.join(image_root, image["file_name"]),
            "image_id": image["file_name"],
            "height": image["height"],
            "width": image["width"],
            "annotations": [
                {
                    "bbox": box.tolist(),
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "category_id": 0,
                    "person_id": pid_map[pid] if pid != UNLABELED_PID else UNLABELED_PID,
                }
                for box, pid in zip(boxes, pids)
            ],
        }
        if "camera_id" in image:
            record["camera_id"] = image["camera_id"]
        records.append(record)
    sanitizer.log_summary()

    query_sanitizer = BoxSanitizer(f"{source} queries")
    for query_index, (image_index, xywh, pid, gallery) in enumerate(queries):
        record = records[image_index]
        xyxy = BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
        box, keep = query_sanitizer(np.array([xyxy]), record["width"], record["height"])
        if not keep[0]:
            raise _error(
                json_file,
                f"queries[{query_index}]",
                f"the box {xywh} is empty once clipped to the image ({record['width']}x"
                f"{record['height']}); a query needs a visible person",
            )
        query = {"bbox": box[0].tolist(), "person_id": pid_map[pid], "query_index": query_index}
        if gallery is not None:
            query["gallery_image_ids"] = [images[g]["file_name"] for g in gallery]
        record.setdefault("queries", []).append(query)
    query_sanitizer.log_summary()

    log_loaded(json_file, records, len(pid_map))
    return records


def register_person_search_json(name: str, json_file: str, image_root: str) -> None:
    """Register a person-search JSON file as a Detectron2 dataset.

    The records are loaded lazily (on ``DatasetCatalog.get(name)``). The metadata carries
    ``thing_classes=["person"]``, ``evaluator_type="person_search"``, ``protocol="json"`` (a query's
    gallery is its ``gallery_image_ids`` or else every other image), ``json_file`` and
    ``image_root``.

    Args:
        name: the dataset name, e.g. ``"my_train"``; use it in ``DATASETS.TRAIN``/``DATASETS.TEST``.
        json_file: path of the JSON file.
        image_root: folder that the images' ``file_name`` are relative to.

    Raises:
        ValueError: a dataset called ``name`` is already registered.
    """
    register_person_search_dataset(
        name,
        lambda f=json_file, root=image_root: load_person_search_json(f, root),
        protocol="json",
        json_file=json_file,
        image_root=image_root,
    )
