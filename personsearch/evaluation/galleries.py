"""Per-query gallery specifications of each protocol (numpy only).

Every builder returns a sequence of
:class:`~personsearch.evaluation.search_protocol.GallerySpec`, one per query, for
:func:`~personsearch.evaluation.search_protocol.evaluate_search`. Image indices refer to the
dataset's record order (the order of
:class:`~personsearch.evaluation.search_protocol.PackedDetections`).
"""

from collections.abc import Sequence as SequenceABC
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .search_protocol import GallerySpec

BOX_ATOL = 1e-3  # protocol boxes and dataset boxes are integers stored as floats


def person_index(records: Sequence[Mapping]) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """Where each labeled person appears in the dataset.

    Protocol rule (PRW GT): in a gallery image the query person's box is the box of the query's
    person_id there; if the id appears twice in one image, the FIRST box counts.

    Args:
        records: dataset records (``annotations`` with ``bbox`` XYXY and ``person_id``).

    Returns:
        ``{person_id: (image indices (K,) ascending, boxes (K, 4))}`` for every ``person_id >= 0``.
    """
    found: Dict[int, Tuple[List[int], List[List[float]]]] = {}
    for i, r in enumerate(records):
        seen = set()
        for a in r.get("annotations", ()):
            pid = int(a.get("person_id", -1))
            if pid < 0 or pid in seen:
                continue
            seen.add(pid)
            imgs, boxes = found.setdefault(pid, ([], []))
            imgs.append(i)
            boxes.append([float(v) for v in a["bbox"]])
    return {
        pid: (np.array(imgs, np.int64), np.array(boxes, np.float64).reshape(-1, 4))
        for pid, (imgs, boxes) in found.items()
    }


class AllButQueryGalleries(SequenceABC):
    """PRW-style galleries, built lazily (a full list would hold Q x I indices).

    Protocol rule (PRW, SeqNet/NAE ``eval_search_prw`` with ``ignore_cam_id=True``, the standard):
    the gallery of a query is every test image except the query's own image, in dataset order,
    same-camera frames included. ``cross_camera=True`` also drops every frame of the query's camera
    (the cross-camera protocol of the original PRW Matlab code). The query person's box in a
    gallery image comes from :func:`person_index`; an unlabeled query (person_id < 0) has none.

    Args:
        num_images: number of images of the split.
        query_images: (Q,) image index of each query.
        query_pids: (Q,) person id of each query.
        persons: the output of :func:`person_index`.
        camera_ids: (I,) camera of each image; needed for ``cross_camera``.
        cross_camera: drop the query camera's frames.
    """

    def __init__(
        self,
        num_images: int,
        query_images: Sequence[int],
        query_pids: Sequence[int],
        persons: Mapping[int, Tuple[np.ndarray, np.ndarray]],
        camera_ids: Optional[Sequence[int]] = None,
        cross_camera: bool = False,
    ):
        self.num_images = int(num_images)
        self.query_images = np.asarray(query_images, dtype=np.int64)
        self.query_pids = np.asarray(query_pids, dtype=np.int64)
        self.persons = persons
        self.cross_camera = bool(cross_camera)
        if self.cross_camera:
            if camera_ids is None or any(c is None for c in camera_ids):
                raise ValueError(
                    "Cross-camera galleries need a 'camera_id' in every record of the dataset."
                )
            self.camera_ids = np.asarray(camera_ids, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.query_images)

    def __getitem__(self, i: int) -> GallerySpec:
        q_img = int(self.query_images[i])
        mask = np.ones(self.num_images, dtype=bool)
        mask[q_img] = False
        if self.cross_camera:
            mask &= self.camera_ids != self.camera_ids[q_img]
        images = np.flatnonzero(mask)
        pid = int(self.query_pids[i])
        if pid in self.persons:
            p_imgs, p_boxes = self.persons[pid]
            sel = mask[p_imgs]
            gt_entries = np.searchsorted(images, p_imgs[sel])
            return GallerySpec(images, gt_entries, p_boxes[sel])
        return GallerySpec(images)


def explicit_gallery(
    gallery_image_ids: Sequence[str],
    pid: int,
    image_index: Mapping[str, int],
    persons: Mapping[int, Tuple[np.ndarray, np.ndarray]],
    where: str = "query",
) -> GallerySpec:
    """A gallery given as a list of image ids (custom/JSON datasets).

    Protocol rule (JSON datasets): the entries are the listed images, in the listed order
    (repeats kept); the query person's box in an entry is the first box with the query's
    person_id in that image's annotations (none for an unlabeled query).

    Args:
        gallery_image_ids: the listed image ids.
        pid: the query's person id.
        image_index: ``{image_id: index}`` of the dataset.
        persons: the output of :func:`person_index`.
        where: names the query in error messages.

    Raises:
        ValueError: a listed image is not in the dataset.
    """
    images = []
    for image_id in gallery_image_ids:
        if str(image_id) not in image_index:
            raise ValueError(f"{where}: gallery image {image_id!r} is not an image of the dataset.")
        images.append(image_index[str(image_id)])
    images = np.array(images, dtype=np.int64)
    if pid in persons:
        box_of = dict(zip(persons[pid][0].tolist(), persons[pid][1]))
        gt_entries = [pos for pos, img in enumerate(images.tolist()) if img in box_of]
        gt_boxes = [box_of[int(images[pos])] for pos in gt_entries]
        return GallerySpec(images, gt_entries, gt_boxes)
    return GallerySpec(images)


class JsonGalleries(SequenceABC):
    """Custom-dataset galleries: a query's own ``gallery_image_ids`` list when it has one
    (:func:`explicit_gallery`), else PRW-style all-but-query (:class:`AllButQueryGalleries`)."""

    def __init__(
        self,
        explicit: Sequence[Optional[Sequence[str]]],
        fallback: AllButQueryGalleries,
        image_index: Mapping[str, int],
        query_indices: Sequence[int],
    ):
        self.explicit = list(explicit)
        self.fallback = fallback
        self.image_index = image_index
        self.query_indices = list(query_indices)

    def __len__(self) -> int:
        return len(self.explicit)

    def __getitem__(self, i: int) -> GallerySpec:
        ids = self.explicit[i]
        if ids is None:
            return self.fallback[i]
        return explicit_gallery(
            ids,
            int(self.fallback.query_pids[i]),
            self.image_index,
            self.fallback.persons,
            where=f"query_index {self.query_indices[i]}",
        )


class SubsetView(SequenceABC):
    """The elements ``positions`` of a sequence, without building them."""

    def __init__(self, base: Sequence, positions: Sequence[int]):
        self.base = base
        self.positions = [int(p) for p in positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        return self.base[self.positions[i]]


def map_protocol_queries(
    protocol_queries: Sequence[Mapping],
    query_image_ids: Sequence[str],
    query_boxes: np.ndarray,
    source: str = "protocol",
    image_sizes: Optional[Mapping[str, Tuple[float, float]]] = None,
) -> np.ndarray:
    """Find each protocol query among the dataset's queries.

    Protocol rule (CUHK-SYSU protocol files, incl. the Resolution/Occlusion subsets): a protocol
    query is the dataset query on the same image with the same box (equal within 1e-3 px). The
    dataset loader clips query boxes to the image, so a protocol box that sticks out of its image
    is compared after the same clipping.

    Args:
        protocol_queries: ``[{"image_id", "bbox" XYXY}, ...]``.
        query_image_ids: (Q,) image id of each dataset query.
        query_boxes: (Q, 4) XYXY box of each dataset query.
        source: names the protocol in error messages.
        image_sizes: ``{image_id: (height, width)}`` for the clipping; no clipping if None.

    Returns:
        (P,) position of each protocol query in the dataset's query list.

    Raises:
        ValueError: a protocol query has no match (the message names it).
    """
    by_image: Dict[str, List[int]] = {}
    for pos, image_id in enumerate(query_image_ids):
        by_image.setdefault(str(image_id), []).append(pos)
    query_boxes = np.asarray(query_boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros(len(protocol_queries), dtype=np.int64)
    for n, pq in enumerate(protocol_queries):
        image_id = str(pq["image_id"])
        box = np.asarray(pq["bbox"], dtype=np.float64).reshape(4)
        candidates = [box]
        if image_sizes is not None and image_id in image_sizes:
            height, width = image_sizes[image_id]
            candidates.append(np.clip(box, 0, [width, height, width, height]))
        match = [
            p
            for cand in candidates
            for p in by_image.get(image_id, ())
            if np.all(np.abs(query_boxes[p] - cand) <= BOX_ATOL)
        ]
        if not match:
            raise ValueError(
                f"{source}: query #{n} (image {image_id!r}, box {box.tolist()}) matches no query "
                "of the dataset; the protocol file and the dataset disagree."
            )
        out[n] = match[0]
    return out


def cuhk_sysu_galleries(
    protocol: Sequence[Mapping],
    image_index: Mapping[str, int],
    full_set: bool = False,
    source: str = "CUHK-SYSU protocol",
) -> List[GallerySpec]:
    """Galleries of CUHK-SYSU's protocol files (TestG{N}.mat, Resolution.mat, Occlusion.mat).

    Protocol rule (OIM/NAE ``evaluate_search``): the gallery of protocol query i is its list of
    entries, in file order, each entry an image plus the query person's box or none; repeated
    entries are kept and processed each time. ``full_set`` (gallery size -1, used with the TestG50
    lists): after the entries, every other test image in dataset order that is neither one of the
    entries nor the query image is searched as a pure negative. (SeqNet's version also re-adds the
    entry images as negatives because it fills its "tested" set too late; not replicated.)

    Args:
        protocol: ``[{"query": {"image_id", "bbox"}, "gallery": [{"image_id", "bbox" XYXY or
            None}]}]`` as returned by ``load_cuhk_sysu_protocol``.
        image_index: ``{image_id: index}`` of the test split.
        full_set: add the negatives.
        source: names the protocol in error messages.

    Raises:
        ValueError: an entry's image is not a test image.
    """
    num_images = len(image_index)
    specs = []
    for n, item in enumerate(protocol):
        entries = []
        for g in item["gallery"]:
            image_id = str(g["image_id"])
            if image_id not in image_index:
                raise ValueError(
                    f"{source}: gallery image {image_id!r} of query #{n} is not a test image of "
                    "the dataset."
                )
            box = g.get("bbox")
            entries.append((image_index[image_id], None if box is None else list(box)))
        negatives = ()
        if full_set:
            mask = np.ones(num_images, dtype=bool)
            mask[[img for img, _ in entries]] = False
            q_img = image_index.get(str(item["query"]["image_id"]))
            if q_img is not None:
                mask[q_img] = False
            negatives = np.flatnonzero(mask)
        specs.append(GallerySpec.from_entries(entries, negatives))
    return specs


def lowres_subset(
    query_boxes: np.ndarray, query_indices: Sequence[int], fraction: float
) -> Tuple[np.ndarray, float]:
    """The low-resolution query subset ("lowres", any dataset).

    Protocol rule (ours; matches CUHK-SYSU's 290 of 2900): the ``round(fraction * Q)`` queries
    (rounding half up) with the smallest query-box height ``y2 - y1``, ties broken by query_index.

    Args:
        query_boxes: (Q, 4) XYXY query boxes.
        query_indices: (Q,) their query indices.
        fraction: share of queries to keep, in (0, 1].

    Returns:
        ``(positions, height_threshold)``: the selected positions in ascending order and the
        largest query height among them (every selected query is at most this tall).

    Raises:
        ValueError: ``fraction`` out of range or the subset would be empty.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"lowres fraction must be in (0, 1], got {fraction}.")
    boxes = np.asarray(query_boxes, dtype=np.float64).reshape(-1, 4)
    heights = boxes[:, 3] - boxes[:, 1]
    count = int(np.floor(fraction * len(boxes) + 0.5))
    if count == 0:
        raise ValueError(
            f"lowres subset of {len(boxes)} queries with fraction {fraction} is empty."
        )
    order = np.lexsort((np.asarray(query_indices), heights))[:count]
    return np.sort(order), float(heights[order].max())
