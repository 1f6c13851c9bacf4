"""Decoding in DataLoader workers (personsearch.apps.search.loading) and truncated-JPEG
detection."""

import cv2
import numpy as np
import pytest

from personsearch.apps.search.loading import VideoFrames, split_blocks
from personsearch.apps.search.sources import decode_image, jpeg_is_complete


def test_split_blocks():
    assert split_blocks(list(range(7)), 3) == [[0, 1], [2, 3, 4], [5, 6]]
    assert split_blocks([1, 2], 4) == [[], [1], [2], []]


def test_video_blocks_cover_every_planned_frame_once():
    frames = [0, 2, 4, 8, 10, 12, 14]  # 6 was done already
    for workers in (1, 2, 3, 5, 9):
        for tail in (None, 16):
            ds = VideoFrames("v.avi", "s", 2, frames, tail, {6})
            ranges = [r for w in range(workers) for r in ds.ranges(w, workers)]
            covered = []
            for start, stop in ranges:
                stop = 20 if stop is None else stop
                covered += [f for f in range(start, stop) if f % 2 == 0 and f != 6]
            expected = frames + ([16, 18] if tail is not None else [])
            assert sorted(covered) == expected, (workers, tail, ranges)
            assert sum(stop is None for _, stop in ranges) == (tail is not None)
    # nothing planned (all done, or an unknown frame count): one open range, from tail_start
    assert VideoFrames("v.avi", "s", 1, [], 0, set()).ranges(0, 2) == [(0, None)]
    assert VideoFrames("v.avi", "s", 1, [], 0, set()).ranges(1, 2) == []


def test_truncated_jpeg_is_detected():
    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    assert jpeg_is_complete(data) and jpeg_is_complete(data + b"trailing metadata")
    decode_image(data + b"\0" * 10, "ok.jpg")
    for cut in (len(data) // 3, len(data) - 2):
        assert not jpeg_is_complete(data[:cut])
        with pytest.raises(ValueError, match="'cut.jpg': truncated JPEG"):
            decode_image(data[:cut], "cut.jpg")
