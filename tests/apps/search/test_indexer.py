"""The indexer's handling of batches (personsearch.apps.search.indexer), with a stand-in predictor
whose output is a known function of the image, so that what is stored can be checked exactly."""

import logging

import cv2
import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from personsearch.apps.search import Indexer, SearchIndex
from tests.apps.search.common import MODEL


class Predictor:
    """One detection per image: box (0, 0, 5, 5), score 0.9, embedding = unit vector of the mean
    colour; ``batch`` fails on more than ``max_batch`` images, or on images whose mean is ``bad``.
    """

    embed_dim = 3

    def __init__(self, max_batch=100, bad=None):
        self.max_batch, self.bad, self.calls = max_batch, bad, []

    def batch(self, images):
        self.calls.append(len(images))
        if len(images) > self.max_batch:
            raise RuntimeError("CUDA out of memory (pretend)")
        out = []
        for image in images:
            mean = image.reshape(-1, 3).mean(0)
            if self.bad is not None and abs(mean[0] - self.bad) < 0.5:
                raise RuntimeError("the model fails on this image")
            inst = Instances(image.shape[:2])
            inst.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, 5.0, 5.0]]))
            inst.scores = torch.tensor([0.9])
            f = torch.tensor(mean, dtype=torch.float32) + 1
            inst.reid_feats = (f / f.norm())[None]
            out.append({"instances": inst})
        return out


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for i in range(7):
        cv2.imwrite(str(root / f"{i}.png"), np.full((8, 8, 3), 10 * i, np.uint8))
    return root


def _index(path, folder, predictor, **kw):
    paths = sorted(p.name for p in folder.iterdir())
    with SearchIndex.open_for_writing(str(path), MODEL, {"score_thresh": 0.5, "dim": 3}) as idx:
        Indexer(idx, predictor, 0.5, progress=False, **kw).index_images(
            str(folder), paths, {"kind": "images", "root": str(folder)}
        )
        return idx.load()


def test_a_failing_batch_is_run_one_by_one(tmp_path, folder, caplog):
    ref = _index(tmp_path / "ref", folder, Predictor())
    p = Predictor(max_batch=1)
    with caplog.at_level(logging.WARNING):
        got = _index(tmp_path / "got", folder, p, batch_size=4)
    assert any("a forward pass over 4 images failed" in m for m in caplog.messages)
    assert p.calls[:5] == [4, 1, 1, 1, 1]  # the batch, then its images one by one
    np.testing.assert_array_equal(got.feats, ref.feats)
    assert got.item_path.tolist() == ref.item_path.tolist()


def test_an_image_failing_alone_stops_after_committing(tmp_path, folder):
    p = Predictor(bad=40)  # image 4
    with pytest.raises(RuntimeError, match="the model fails on this image"):
        _index(tmp_path / "index", folder, p, batch_size=2, shard_size=2)
    with SearchIndex.open(str(tmp_path / "index")) as index:
        # images 0..3 committed (two commits of 2), image 5 never run
        assert sorted(index.load().item_path.tolist()) == ["0.png", "1.png", "2.png", "3.png"]
