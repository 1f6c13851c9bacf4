"""detectron2 model-zoo initialisations: the MSRA ImageNet input settings and COCO Faster R-CNN
R50-C4 detectors mapped onto SeqNet (backbone, RPN, both res5 stages; the predictor skipped).

Nothing is downloaded: the checkpoints are written by the tests in the model zoo's format
(``{"model": {full name: ndarray}, "__author__": ...}`` pickles) from detectron2's own
``GeneralizedRCNN`` built with its model-zoo config at a narrow width, so their keys are exactly
those of ``model_final_f97cb7.pkl``, FrozenBN statistics included.
"""

import os
import pickle

import detectron2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model

from personsearch import get_person_search_cfg
from personsearch.checkpoint import PersonSearchCheckpointer
from personsearch.checkpoint.model_zoo import map_detector_checkpoint
from tests.common import CONFIGS, tiny_cfg

D2_CONFIGS = os.path.join(os.path.dirname(detectron2.__file__), "model_zoo", "configs")

# a bottleneck R50 at 1/16 of the width: the model-zoo key layout, tiny tensors
NARROW_R50 = [
    "MODEL.RESNETS.DEPTH", 50,
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 8,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
    "MODEL.RESNETS.WIDTH_PER_GROUP", 4,
]  # fmt: skip


def detectron2_detector_file(path, zoo_config: str, opts=(), seed: int = 0):
    """Write a detectron2 model-zoo style pickle of detectron2's own detector (random values).

    Returns:
        ``(state, model)``: the written state dict (name -> ndarray) and the detectron2 model.
    """
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(D2_CONFIGS, zoo_config))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""] + NARROW_R50 + list(opts))
    model = build_model(cfg)
    rng = np.random.default_rng(seed)
    state = {}
    for k, v in model.state_dict().items():
        value = rng.standard_normal(tuple(v.shape)).astype(np.float32)
        if k.endswith("running_var"):
            value = np.abs(value) + 0.5
        state[k] = value
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f)
    return state, model


@pytest.fixture(scope="module")
def coco_c4(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoo") / "model_final_f97cb7.pkl"
    state, d2_model = detectron2_detector_file(path, "COCO-Detection/faster_rcnn_R_50_C4_3x.yaml")
    return str(path), state, d2_model


def seqnet_coco(opts=()):
    torch.manual_seed(0)
    return build_model(tiny_cfg("model_zoo/SeqNet_R50_COCO.yaml", NARROW_R50 + list(opts)))


@pytest.mark.parametrize("norm", ["BN", "FrozenBN"])
def test_coco_c4_detector_initialises_backbone_rpn_and_both_res5_stages(coco_c4, norm, caplog):
    path, state, _ = coco_c4
    model = seqnet_coco(["MODEL.RESNETS.NORM", norm])
    checkpointer = PersonSearchCheckpointer(model)
    checkpointer.load(path)
    ours = model.state_dict()
    for k, v in state.items():
        if k.startswith(("backbone.", "proposal_generator.")):
            np.testing.assert_array_equal(ours[k].numpy(), v, err_msg=k)
    res5 = {k: v for k, v in state.items() if k.startswith("roi_heads.res5.")}
    assert len(res5) == 50  # 3 bottleneck blocks, FrozenBN statistics included
    for head in ("box_feature_head", "feature_head"):  # SeqNet stage 1 and stage 2
        for k, v in res5.items():
            target = k.replace("roi_heads.", f"roi_heads.{head}.")
            np.testing.assert_array_equal(ours[target].numpy(), v, err_msg=target)
    a = model.roi_heads.box_feature_head.res5[0].conv1.weight
    b = model.roi_heads.feature_head.res5[0].conv1.weight
    assert a.data_ptr() != b.data_ptr()  # two copies, not one shared tensor

    report = checkpointer.detector_mapping
    predictor = [f"roi_heads.box_predictor.{n}.{p}" for n in ("bbox_pred", "cls_score")
                 for p in ("bias", "weight")]  # fmt: skip
    assert report.skipped == predictor  # the 81-class predictor, reported
    shapes = {k: (have, want) for k, _, have, want in report.shape_mismatch}
    assert shapes["roi_heads.box_predictor.cls_score.weight"] == ((81, 128), (2, 128))
    assert shapes["roi_heads.box_predictor.bbox_pred.weight"] == ((320, 128), (4, 128))
    assert set(report.matched) == set(state) - set(predictor)
    assert report.matched["roi_heads.res5.0.conv1.weight"] == [
        "roi_heads.feature_head.res5.0.conv1.weight",
        "roi_heads.box_feature_head.res5.0.conv1.weight",
    ]
    assert report.renamed == {
        "roi_heads.res5.* -> roi_heads.feature_head.res5.*, roi_heads.box_feature_head.res5.*": len(
            res5
        )
    }
    # new layers are reported as not initialised; nothing of the backbone, RPN or res5 is
    assert any(k.startswith("roi_heads.reid_head.") for k in report.not_initialised)
    assert "roi_heads.box_predictor.cls_score.weight" in report.not_initialised
    assert not any(
        k.startswith(("backbone.", "proposal_generator.", "roi_heads.feature_head.res5."))
        for k in report.not_initialised
    )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "detectron2 detector checkpoint:" in logged
    assert "skipped roi_heads.box_predictor.cls_score.weight: shape (81, 128)" in logged
    if norm == "FrozenBN":
        assert isinstance(model.roi_heads.feature_head.res5[0].conv1.norm, FrozenBatchNorm2d)


def test_loaded_body_computes_what_the_coco_detector_computes(coco_c4):
    # trainable BN initialised from FrozenBN statistics equals it in eval mode; the MSRA layout
    # (stride in the 1x1 conv, STRIDE_IN_1X1 True in the config) is the detector's
    path, state, d2_model = coco_c4
    d2_model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model = seqnet_coco()
    PersonSearchCheckpointer(model).load(path)
    model.eval()
    d2_model.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ours = model.backbone(x)["res4"]
        theirs = d2_model.backbone(x)["res4"]
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
        rois = torch.randn(5, 64, 14, 14)
        for head in (model.roi_heads.box_feature_head, model.roi_heads.feature_head):
            torch.testing.assert_close(
                head.res5(rois), d2_model.roi_heads.res5(rois), rtol=1e-4, atol=1e-4
            )


def test_shape_mismatches_are_reported_not_raised(coco_c4):
    path, state, _ = coco_c4
    model = seqnet_coco(["MODEL.RESNETS.RES2_OUT_CHANNELS", 32])  # twice the file's width
    checkpointer = PersonSearchCheckpointer(model)
    checkpointer.load(path)
    report = checkpointer.detector_mapping
    mismatched = {k for k, *_ in report.shape_mismatch}
    assert "backbone.res2.0.conv3.weight" in mismatched
    assert "roi_heads.res5.0.conv1.weight" in mismatched
    # the stem's width is unchanged: it still loads
    assert "backbone.stem.conv1.weight" in report.matched


def test_c4_detector_body_initialises_the_c4_fpn_backbone(coco_c4):
    path, state, _ = coco_c4
    opts = [
        "MODEL.BACKBONE.NAME", "build_person_search_resnet_c4_fpn_backbone",
        "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4"],
        "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4"],
        "MODEL.FPN.OUT_CHANNELS", 8,
    ]  # fmt: skip
    model = seqnet_coco(opts)
    checkpointer = PersonSearchCheckpointer(model)
    checkpointer.load(path)
    ours = model.state_dict()
    for k, v in state.items():
        if k.startswith("backbone."):
            target = k.replace("backbone.", "backbone.bottom_up.")
            np.testing.assert_array_equal(ours[target].numpy(), v, err_msg=target)
    assert "backbone.* -> backbone.bottom_up.*" in checkpointer.detector_mapping.renamed
    assert any(k.startswith("backbone.fpn.") for k in checkpointer.detector_mapping.not_initialised)


def test_other_checkpoints_are_not_mapped():
    model_state = {"backbone.res2.0.conv1.weight": torch.zeros(2), "roi_heads.x": torch.zeros(1)}
    same = {"backbone.res2.0.conv1.weight": torch.ones(2)}
    out, report = map_detector_checkpoint(model_state, same)
    assert report is None and out is same
    foreign = {"some.other.layer": torch.zeros(3)}
    assert map_detector_checkpoint(model_state, foreign) == (foreign, None)


def _differences(a, b, prefix=""):
    out = set()
    for k in set(a) | set(b):
        va, vb = a.get(k), b.get(k)
        if hasattr(va, "keys") and hasattr(vb, "keys"):
            out |= _differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.add(prefix + k)
    return out


def test_msra_and_coco_configs_change_exactly_the_input_keys():
    seqnet = get_person_search_cfg(os.path.join(CONFIGS, "SeqNet_R50.yaml"))
    msra = get_person_search_cfg(os.path.join(CONFIGS, "model_zoo", "SeqNet_R50_MSRA.yaml"))
    coco = get_person_search_cfg(os.path.join(CONFIGS, "model_zoo", "SeqNet_R50_COCO.yaml"))
    assert _differences(seqnet, msra) == {
        "MODEL.WEIGHTS", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD", "MODEL.RESNETS.STRIDE_IN_1X1",
        "INPUT.FORMAT", "OUTPUT_DIR",
    }  # fmt: skip
    assert msra.INPUT.FORMAT == "BGR" and msra.MODEL.PIXEL_STD == [1.0, 1.0, 1.0]
    assert msra.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    assert _differences(msra, coco) == {"MODEL.WEIGHTS", "OUTPUT_DIR"}
    assert "faster_rcnn_R_50_C4_3x/137849393/model_final_f97cb7.pkl" in coco.MODEL.WEIGHTS
    # the detector's RPN has 15 anchors per position, as the SeqNet config
    d2 = get_cfg()
    d2.merge_from_file(os.path.join(D2_CONFIGS, "COCO-Detection/faster_rcnn_R_50_C4_3x.yaml"))
    assert d2.MODEL.ANCHOR_GENERATOR.SIZES == coco.MODEL.ANCHOR_GENERATOR.SIZES
    assert d2.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS == coco.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS
    assert d2.MODEL.PIXEL_MEAN == coco.MODEL.PIXEL_MEAN and d2.INPUT.FORMAT == coco.INPUT.FORMAT
