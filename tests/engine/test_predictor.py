"""PersonSearchPredictor: same outputs as the evaluation path, batched form, inference
optimisations, bad input."""

import pickle

import cv2
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes

from personsearch.checkpoint import PersonSearchCheckpointer
from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from personsearch.data.datasets.cuhk_sysu import load_cuhk_sysu
from personsearch.engine import PersonSearchPredictor
from synthetic_generator import generate_synthetic_dataset
from tests.common import randomize_batchnorm, tiny_cfg

ATOL = 1e-5
# bfloat16 (TEST.AMP) against float32: the tolerance documented in MODEL_ZOO.md ("Speed") for unit
# embeddings, as max absolute difference and as 1 - cosine similarity
BF16_ATOL = 0.02
BF16_COSINE = 0.005


@pytest.fixture(scope="module")
def test_records(tmp_path_factory):
    """The test records (with queries) of a tiny synthetic set, in CUHK-SYSU format."""
    root = str(tmp_path_factory.mktemp("synthetic_predictor"))
    generate_synthetic_dataset(
        root,
        num_train_images=2,
        num_test_images=4,
        num_train_ids=2,
        num_test_ids=2,
        gallery_sizes=(2,),
        workers=1,
        progress=False,
    )
    records = load_cuhk_sysu(root, "test")
    assert any(r.get("queries") for r in records)
    return records


@pytest.fixture(scope="module", params=["RGB", "BGR"])
def setup(request, tmp_path_factory):
    """(cfg, predictor, evaluator model) sharing random weights saved to a checkpoint."""
    torch.manual_seed(0)
    opts = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "INPUT.FORMAT", request.param]
    cfg = tiny_cfg(opts=opts)
    weights = str(tmp_path_factory.mktemp("predictor_weights") / "random.pth")
    model = build_model(cfg)
    randomize_batchnorm(model)  # so that folding them (TEST.OPTIMIZE, on by default) is tested
    torch.save({"model": model.state_dict()}, weights)
    cfg.MODEL.WEIGHTS = weights
    predictor = PersonSearchPredictor(cfg)
    model = build_model(cfg)
    PersonSearchCheckpointer(model).load(weights)
    model.eval()
    return cfg, predictor, model


def _evaluator_outputs(cfg, model, record):
    """What the evaluator computes for one test record: mapper + model.inference, batch size 1."""
    inputs = PersonSearchDatasetMapper(cfg, False)(record)
    with torch.no_grad():
        return model.inference([inputs])[0]


def test_predictor_equals_the_evaluation_path(setup, test_records):
    cfg, predictor, model = setup
    checked = 0
    for record in test_records:
        expected = _evaluator_outputs(cfg, model, record)
        image = cv2.imread(record["file_name"])  # BGR, as a user would read it
        qboxes = [q["bbox"] for q in record.get("queries", [])]
        out = predictor(image, query_boxes=qboxes if qboxes else None)
        inst, ref = out["instances"], expected["instances"]
        assert len(ref) > 0, "random weights with SCORE_THRESH_TEST 0 should detect something"
        assert inst.image_size == (record["height"], record["width"])
        torch.testing.assert_close(inst.pred_boxes.tensor, ref.pred_boxes.tensor, atol=1e-4, rtol=0)
        torch.testing.assert_close(inst.scores, ref.scores, atol=ATOL, rtol=0)
        torch.testing.assert_close(inst.reid_feats, ref.reid_feats, atol=ATOL, rtol=0)
        norms = inst.reid_feats.norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-4, rtol=0)
        if qboxes:
            torch.testing.assert_close(
                out["query_feats"], expected["query_feats"], atol=ATOL, rtol=0
            )
            # the same embeddings from the box-only path (no detection)
            torch.testing.assert_close(
                predictor.embed(image, qboxes), out["query_feats"], atol=ATOL, rtol=0
            )
            checked += 1
        else:
            assert "query_feats" not in out
    assert checked > 0


def test_outputs_are_on_the_cpu_and_boxes_accept_several_types(setup, test_records):
    _, predictor, _ = setup
    record = next(r for r in test_records if r.get("queries"))
    image = cv2.imread(record["file_name"])
    box = record["queries"][0]["bbox"]
    ref = predictor.embed(image, [box])
    assert ref.shape == (1, predictor.embed_dim) and ref.device.type == "cpu"
    for boxes in (np.array([box]), torch.tensor([box]), Boxes(torch.tensor([box]))):
        torch.testing.assert_close(predictor.embed(image, boxes), ref, atol=ATOL, rtol=0)
    assert predictor.embed(image, np.zeros((0, 4))).shape == (0, predictor.embed_dim)
    out = predictor(image, query_boxes=np.zeros((0, 4)))
    assert out["query_feats"].shape == (0, predictor.embed_dim)


def test_batch_equals_single_calls(setup, test_records):
    _, predictor, _ = setup
    record = next(r for r in test_records if r.get("queries"))
    image = cv2.imread(record["file_name"])
    flipped = np.ascontiguousarray(image[:, ::-1])  # same size: no padding difference
    box = np.array([record["queries"][0]["bbox"]])
    w = image.shape[1]
    flipped_box = np.stack([w - box[:, 2], box[:, 1], w - box[:, 0], box[:, 3]], axis=1)
    batch = predictor.batch([image, flipped, image], query_boxes=[box, flipped_box, None])
    assert len(batch) == 3 and "query_feats" not in batch[2]
    for img, qb, res in zip([image, flipped, image], [box, flipped_box, None], batch):
        single = predictor(img, query_boxes=qb)
        for field in ("scores", "reid_feats"):
            torch.testing.assert_close(
                res["instances"].get(field), single["instances"].get(field), atol=ATOL, rtol=0
            )
        torch.testing.assert_close(
            res["instances"].pred_boxes.tensor,
            single["instances"].pred_boxes.tensor,
            atol=1e-4,
            rtol=0,
        )
        if qb is not None:
            torch.testing.assert_close(res["query_feats"], single["query_feats"], atol=ATOL, rtol=0)
    assert predictor.batch([]) == []


def test_optimisations_are_applied_and_the_model_cannot_train(setup):
    _, predictor, _ = setup
    assert predictor.optimizations["folded_batchnorm"] > 10
    assert predictor.optimizations["channels_last"]  # TEST.OPTIMIZE.CHANNELS_LAST auto, a CPU
    predictor.model.train()
    try:
        with pytest.raises(RuntimeError, match="folded for inference"):
            predictor.model([{"image": torch.zeros(3, 32, 32, dtype=torch.uint8)}])
    finally:
        predictor.model.eval()


def test_without_optimisations_the_outputs_are_exactly_the_evaluation_path(setup, test_records):
    cfg, _, model = setup
    cfg = cfg.clone()
    cfg.TEST.OPTIMIZE.FOLD_BATCHNORM = False
    cfg.TEST.OPTIMIZE.CHANNELS_LAST = "off"
    predictor = PersonSearchPredictor(cfg)
    assert predictor.optimizations["folded_batchnorm"] == 0
    record = next(r for r in test_records if r.get("queries"))
    expected = _evaluator_outputs(cfg, model, record)
    out = predictor(cv2.imread(record["file_name"]), [q["bbox"] for q in record["queries"]])
    for field in ("scores", "reid_feats"):
        assert torch.equal(out["instances"].get(field), expected["instances"].get(field))
    assert torch.equal(out["instances"].pred_boxes.tensor, expected["instances"].pred_boxes.tensor)
    assert torch.equal(out["query_feats"], expected["query_feats"])


def test_run_takes_the_outputs_of_a_pickled_preprocessor(setup, test_records):
    """DataLoader workers get a pickled copy of the preprocessor; run() takes what it returns."""
    _, predictor, _ = setup
    record = next(r for r in test_records if r.get("queries"))
    image = cv2.imread(record["file_name"])
    boxes = [q["bbox"] for q in record["queries"]]
    worker = pickle.loads(pickle.dumps(predictor.preprocessor))
    got = predictor.run([worker(image, boxes), worker(image)])
    expected = predictor.batch([image, image], query_boxes=[boxes, None])
    for g, e in zip(got, expected):
        assert torch.equal(g["instances"].reid_feats, e["instances"].reid_feats)
    assert torch.equal(got[0]["query_feats"], expected[0]["query_feats"])
    assert "query_feats" not in got[1]
    with pytest.raises(TypeError, match="image: expected dtype uint8"):
        worker(image.astype(np.float32))


IMAGE = np.zeros((40, 30, 3), dtype=np.uint8)  # H=40, W=30


@pytest.mark.parametrize(
    "image, boxes, error, message",
    [
        (IMAGE.astype(np.float32), None, TypeError, "image: expected dtype uint8"),
        (IMAGE.tolist(), None, TypeError, "image: expected a numpy array"),
        (IMAGE[:, :, 0], None, ValueError, r"image: expected shape \(H, W, 3\).*\(40, 30\)"),
        (np.zeros((40, 30, 4), np.uint8), None, ValueError, r"got \(40, 30, 4\)"),
        (np.zeros((0, 30, 3), np.uint8), None, ValueError, "image: the image is empty"),
        (IMAGE, [1, 2, 3, 4], ValueError, r"query_boxes: expected a \(Q, 4\).*got shape \(4,\)"),
        (IMAGE, [[1, 2, 3]], ValueError, r"query_boxes: expected a \(Q, 4\)"),
        (IMAGE, [["a", 2, 3, 4]], ValueError, r"query_boxes: expected a \(Q, 4\)"),
        (IMAGE, [[0, 0, 10, 10], [1, np.nan, 5, 9]], ValueError, r"query_boxes\[1\].*NaN"),
        (IMAGE, [[0, 0, np.inf, 10]], ValueError, r"query_boxes\[0\].*infinite"),
        (IMAGE, [[5, 5, 5, 20]], ValueError, r"query_boxes\[0\].*zero or negative size"),
        (IMAGE, [[5, 20, 9, 10]], ValueError, "zero or negative size"),
        (IMAGE, [[0, 0, 31.5, 40]], ValueError, r"outside the 30x40 \(WxH\) image"),
        (IMAGE, [[-2, 0, 10, 10]], ValueError, "outside"),
        (IMAGE, [[0, 0, 10, 41.5]], ValueError, "outside"),
    ],
)
def test_bad_input_names_the_argument(setup, image, boxes, error, message):
    _, predictor, _ = setup
    with pytest.raises(error, match=message):
        if boxes is None:
            predictor(image)
        else:
            predictor(image, query_boxes=boxes)
    if boxes is not None:
        with pytest.raises(error, match=message.replace("query_boxes", "^boxes")):
            predictor.embed(image, boxes)


def test_bad_batch_input_names_the_entry(setup):
    _, predictor, _ = setup
    with pytest.raises(TypeError, match=r"images\[1\]: expected dtype uint8"):
        predictor.batch([IMAGE, IMAGE.astype(np.int16)])
    with pytest.raises(ValueError, match=r"query_boxes\[0\]\[0\].*outside"):
        predictor.batch([IMAGE, IMAGE], query_boxes=[[[0, 0, 50, 10]], None])
    with pytest.raises(ValueError, match="one entry .* per image, got 1 for 2 images"):
        predictor.batch([IMAGE, IMAGE], query_boxes=[None])
    with pytest.raises(TypeError, match="images: expected a list"):
        predictor.batch(IMAGE)


def test_boxes_touching_the_border_are_accepted(setup):
    _, predictor, _ = setup
    feats = predictor.embed(IMAGE, [[0, 0, 30, 40], [-1, -1, 31, 41]])
    assert feats.shape == (2, predictor.embed_dim) and torch.isfinite(feats).all()


def test_gt_boxes_config_is_refused(setup):
    cfg = setup[0].clone()
    cfg.TEST.SEARCH.USE_GT_BOXES = True
    with pytest.raises(ValueError, match="USE_GT_BOXES"):
        PersonSearchPredictor(cfg)


def test_missing_weights_name_the_file(tmp_path):
    cfg = tiny_cfg(opts=["MODEL.WEIGHTS", str(tmp_path / "nope.pth")])
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        PersonSearchPredictor(cfg)


@pytest.mark.parametrize("fusion, dim", [("concat", 32), ("shallow", 16)])
def test_ugas_embedding_size_is_the_fused_size(tmp_path, fusion, dim):
    """UGAS's fused vector (deep 16 + shallow 16 under concat) is what the predictor reports and
    returns, also for an image without detections (the search index sizes its arrays from it)."""
    opts = ["MODEL.UGAS.SFM.CONV_DIM", 8, "MODEL.UGAS.SFM.EMBED_DIM", 16,
            "MODEL.UGAS.SFM.FUSION", fusion, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 1.01]  # fmt: skip
    cfg = tiny_cfg("synthetic/UGAS_R10.yaml", opts)
    torch.manual_seed(0)
    path = str(tmp_path / "ugas.pth")
    torch.save({"model": build_model(cfg).state_dict()}, path)
    cfg.MODEL.WEIGHTS = path
    predictor = PersonSearchPredictor(cfg)
    assert predictor.embed_dim == dim
    image = np.full((96, 128, 3), 127, np.uint8)
    out = predictor(image, query_boxes=[[10, 10, 40, 80]])
    assert len(out["instances"]) == 0  # nothing passes the threshold
    assert out["instances"].reid_feats.shape == (0, dim)
    assert out["query_feats"].shape == (1, dim)
    assert predictor.embed(image, np.zeros((0, 4))).shape == (0, dim)


def test_bfloat16_outputs_are_close_to_float32_and_batches_equal_single_calls(tmp_path):
    """TEST.AMP bfloat16 (with the optimisations): query embeddings within the documented
    tolerance of the float32 path (MODEL_ZOO.md, "Speed"), batched like single calls."""
    torch.manual_seed(0)
    cfg = tiny_cfg(opts=["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0])
    model = build_model(cfg)
    randomize_batchnorm(model)
    cfg.MODEL.WEIGHTS = str(tmp_path / "w.pth")
    torch.save({"model": model.state_dict()}, cfg.MODEL.WEIGHTS)
    fp32 = PersonSearchPredictor(cfg)
    cfg = cfg.clone()
    cfg.TEST.AMP.ENABLED = True
    cfg.TEST.AMP.DTYPE = "bfloat16"
    bf16 = PersonSearchPredictor(cfg)
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(2)]
    boxes = [[10, 10, 40, 90], [50, 5, 90, 80], [60, 20, 120, 95]]
    ref = fp32.embed(images[0], boxes)
    got = bf16.embed(images[0], boxes)
    assert got.dtype == torch.float32
    assert (ref - got).abs().max() < BF16_ATOL
    assert (ref * got).sum(dim=1).min() > 1 - BF16_COSINE
    single = [bf16(img, query_boxes=boxes) for img in images]
    batch = bf16.batch(images, query_boxes=[boxes, boxes])
    for s, b in zip(single, batch):
        torch.testing.assert_close(b["query_feats"], s["query_feats"], atol=BF16_ATOL, rtol=0)
        assert len(b["instances"]) == len(s["instances"]) > 0
