"""Where gallery images come from: folders of image files and video files (OpenCV).

Images are returned as (H, W, 3) uint8 **BGR** arrays (what ``cv2.imread`` gives and
:class:`~personsearch.engine.PersonSearchPredictor` takes). Every file is identified by the SHA-1
of its bytes, so an index can tell new, changed and unchanged files apart.
"""

import hashlib
import logging
import os
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoReader",
    "check_image_file",
    "decode_image",
    "jpeg_is_complete",
    "file_sha1",
    "folder_image_source",
    "read_image_file",
    "records_image_source",
    "scan_image_folder",
]

logger = logging.getLogger(__name__)

# File types indexed from a folder (lower-case; other files are counted, logged and skipped).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# File types accepted by --video (what OpenCV's FFmpeg backend usually reads).
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def file_sha1(path: str, chunk_size: int = 1 << 20) -> str:
    """SHA-1 hex digest of a file's bytes, read in chunks (videos and checkpoints can be large)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def scan_image_folder(root: str, exclude: Sequence[str] = ()) -> Tuple[List[str], List[str]]:
    """The image files under ``root``, recursively.

    Args:
        root: the folder.
        exclude: folders not to descend into (e.g. the index itself when it lies inside ``root``).

    Returns:
        ``(images, skipped)``: sorted paths relative to ``root`` (``/``-separated) of the files with
        an extension in :data:`IMAGE_EXTENSIONS`, and of the other files.

    Raises:
        FileNotFoundError: ``root`` does not exist. NotADirectoryError: it is a file.
    """
    if not os.path.exists(root):
        raise FileNotFoundError(f"Image folder not found: {root!r} (--images)")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"--images must be a folder, {root!r} is a file")
    excluded = {os.path.realpath(p) for p in exclude}
    images, skipped = [], []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d for d in dirs if os.path.realpath(os.path.join(folder, d)) not in excluded
        )
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            is_image = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
            (images if is_image else skipped).append(rel)
    return sorted(images), sorted(skipped)


def folder_image_source(
    folder: str, camera: str = "", exclude: Sequence[str] = ()
) -> Tuple[str, List[str], List[str], Dict, Dict[str, str]]:
    """What :meth:`~.indexer.Indexer.index_images` needs to index the images under a folder.

    Args:
        folder: the folder, searched recursively (:func:`scan_image_folder`).
        camera: camera name stored with every image ("" for none).
        exclude: folders not to descend into (e.g. the index itself).

    Returns:
        ``(root, images, skipped, source, cameras)``: the absolute folder, the image paths relative
        to it, the other files, the source record and (empty) per-image camera names.
    """
    root = os.path.abspath(folder)
    images, skipped = scan_image_folder(root, exclude=exclude)
    source = {"kind": "images", "root": root}
    if camera:
        source["camera"] = source["label"] = camera
    return root, images, skipped, source, {}


def records_image_source(
    records: Sequence[Dict], dataset: str, camera: str = ""
) -> Tuple[str, List[str], List[str], Dict, Dict[str, str]]:
    """What :meth:`~.indexer.Indexer.index_images` needs to index the images of a registered split.

    Args:
        records: the split's records (``file_name``, optional ``camera_id``).
        dataset: the split's name (stored in the source record).
        camera: camera name of the whole source ("" for none).

    Returns:
        ``(root, images, skipped, source, cameras)``: the common folder of the images, their paths
        relative to it (sorted), no skipped files, the source record and, for the records that
        carry a ``camera_id``, relative path -> camera name.

    Raises:
        ValueError: the split has no images.
    """
    files = [os.path.abspath(r["file_name"]) for r in records]
    if not files:
        raise ValueError(f"dataset {dataset!r} has no images")
    root = os.path.commonpath([os.path.dirname(f) for f in files])
    rel_of = {f: os.path.relpath(f, root).replace(os.sep, "/") for f in files}
    cameras = {
        rel_of[f]: str(r["camera_id"])
        for f, r in zip(files, records)
        if r.get("camera_id") is not None
    }
    source = {"kind": "images", "root": root, "dataset": dataset}
    if camera:
        source["camera"] = source["label"] = camera
    return root, sorted(rel_of.values()), [], source, cameras


def check_image_file(path: str, what: str = "image") -> None:
    """Raise a clear error if ``path`` is missing or not of a supported image type.

    Args:
        path: the file.
        what: how the message calls it (e.g. ``"--image"``).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: image file not found: {path!r}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(
            f"{what}: {path!r} is not a supported image type ({ext or 'no extension'}); "
            f"supported: {' '.join(IMAGE_EXTENSIONS)}"
        )


def jpeg_is_complete(data: bytes) -> bool:
    """Whether JPEG bytes end their last scan with the end-of-image marker.

    What OpenCV makes of a truncated JPEG depends on its build (libjpeg's default is a warning and
    a grey rest of the image; the opencv-python 4.x wheel used here returns None), so it is
    detected here, the same way everywhere: in entropy-coded data ``FF`` is always followed by
    ``00`` or a restart marker, so the markers SOS (``FFDA``, start of a scan) and EOI (``FFD9``)
    are unambiguous; a complete file has an EOI after its last SOS (an EXIF thumbnail's own EOI
    comes before the main image's scans). Bytes after the EOI (e.g. appended metadata) are allowed.
    """
    return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda")


def decode_image(data: bytes, path: str) -> np.ndarray:
    """Decode encoded image bytes to (H, W, 3) uint8 BGR (grey images are converted).

    Raises:
        ValueError: the bytes are not a decodable image, or a JPEG is truncated; the message
        names ``path``.
    """
    if data[:3] == b"\xff\xd8\xff" and not jpeg_is_complete(data):
        raise ValueError(
            f"Cannot decode image {path!r}: truncated JPEG (no end-of-image marker after its last "
            "scan)"
        )
    image = None
    if data:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ValueError(f"Cannot decode image {path!r} (empty, truncated or not an image)")
    return image


def read_image_file(path: str) -> Tuple[np.ndarray, str]:
    """Read and decode an image file, hashing the bytes read.

    Returns:
        ``(image, sha1)``: (H, W, 3) uint8 BGR and the SHA-1 of exactly the bytes decoded.

    Raises:
        FileNotFoundError / OSError: the file cannot be read. ValueError: it cannot be decoded.
    """
    with open(path, "rb") as f:
        data = f.read()
    return decode_image(data, path), hashlib.sha1(data).hexdigest()


class VideoReader:
    """Frames of a video file through ``cv2.VideoCapture``.

    Attributes:
        path: the file.
        fps: frames per second from the container (0 when unknown).
        frame_count: frame count from the container (an estimate; 0 when unknown).
        frames_read: frames the last :meth:`frames` iteration went through.
        unreadable: frames that :meth:`frames` could not decode (yielded as None).
    """

    def __init__(self, path: str):
        """
        Raises:
            FileNotFoundError: the file is missing. ValueError: the extension is not in
            :data:`VIDEO_EXTENSIONS`, or OpenCV cannot open it.
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--video: video file not found: {path!r}")
        ext = os.path.splitext(path)[1].lower()
        if ext not in VIDEO_EXTENSIONS:
            raise ValueError(
                f"--video: {path!r} is not a supported video type ({ext or 'no extension'}); "
                f"supported: {' '.join(VIDEO_EXTENSIONS)}"
            )
        self.path = path
        cap = self._open()
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        cap.release()
        self.frames_read = 0
        self.unreadable = 0

    def _open(self):
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            cap.release()
            raise ValueError(
                f"--video: OpenCV cannot open {self.path!r} (corrupt or unknown codec)"
            )
        return cap

    def time_of(self, frame: int, pos_msec: float = float("nan")) -> float:
        """Timestamp of a frame in seconds: ``frame / fps``, or the decoder's position when the
        container gives no frame rate."""
        if self.fps > 0:
            return frame / self.fps
        return pos_msec / 1000.0

    def frames(
        self,
        every: int = 1,
        skip: Optional[Set[int]] = None,
        start: int = 0,
        stop: Optional[int] = None,
    ) -> Iterator[Tuple[int, float, Optional[np.ndarray]]]:
        """Every ``every``-th frame (0, every, 2*every, ...), decoding only those.

        Args:
            every: keep one frame in ``every`` (frame indices multiple of ``every``).
            skip: frame indices not to decode (already indexed).
            start, stop: only frames ``start <= index < stop`` (``stop`` None: to the end). The
                reader seeks to ``start``; if the backend lands elsewhere (inexact seeking), it
                reads from the beginning instead.

        Yields:
            ``(frame_index, time_s, image)``; ``image`` is None for a frame that cannot be decoded
            (counted in :attr:`unreadable` and logged).
        """
        if every < 1:
            raise ValueError(f"--every must be >= 1, got {every}")
        skip = skip or set()
        cap = self._open()
        self.frames_read = self.unreadable = 0
        index = 0
        if start > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            if int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) == start:
                index = start
            else:  # inexact seek: read up to start
                cap.release()
                cap = self._open()
                while index < start and cap.grab():
                    index += 1
        try:
            while (stop is None or index < stop) and cap.grab():
                if index % every == 0 and index not in skip:
                    ok, image = cap.retrieve()
                    t = self.time_of(index, cap.get(cv2.CAP_PROP_POS_MSEC))
                    if not ok or image is None or image.size == 0:
                        self.unreadable += 1
                        logger.warning(f"{self.path}: frame {index} cannot be decoded; skipped")
                        image = None
                    yield index, t, image
                index += 1
        finally:
            cap.release()
            self.frames_read = index
        if stop is None and self.frame_count and index < self.frame_count:
            logger.warning(
                f"{self.path}: read {index} frames, the file says {self.frame_count}; the rest "
                "could not be decoded (truncated file?)"
            )

    def read_frame(self, frame: int) -> np.ndarray:
        """One frame (seeking), as (H, W, 3) uint8 BGR.

        Raises:
            ValueError: the frame cannot be read.
        """
        cap = self._open()
        try:
            cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
            ok, image = cap.read()
        finally:
            cap.release()
        if not ok or image is None:
            raise ValueError(f"{self.path}: cannot read frame {frame}")
        return image
