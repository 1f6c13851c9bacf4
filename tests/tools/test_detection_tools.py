"""Tests of tools/visualize_detections.py and tools/analyze_iou.py: end to end through their
``main(argv)`` on the tiny synthetic set with random-weight tiny NAE, NAE+ and SeqNet models, and
their command-line errors (the per-bin IoU statistics on hand-made boxes:
tests/evaluation/test_iou_analysis.py)."""

import json
import os
import types

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog

from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from personsearch.evaluation import iou_analysis
from personsearch.utils.model_tools import build_inference_model
from personsearch.visualization.attention import (
    ATTENTION_CMAP,
    has_attention,
    sfm_attention_maps,
)
from personsearch.visualization.detections import detect_image, draw_detections, score_colors
from tests.common import CONFIGS, load_tool, tiny_opts

MODELS = ["NAE_R10", "NAE+_R10", "SeqNet_R10"]


@pytest.fixture(scope="module")
def tools():
    return types.SimpleNamespace(
        vis=load_tool("visualize_detections"), iou=load_tool("analyze_iou")
    )


def config(name: str) -> str:
    return os.path.join(CONFIGS, "synthetic", name + ".yaml")


def opts(names, tmp_path, *extra) -> list:
    """The tiny random-weight model with every detection kept (scores > 0)."""
    return tiny_opts(names, tmp_path, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", *extra)


def readable_png(path: str) -> bool:
    image = cv2.imread(path)
    return image is not None and image.size > 0 and os.path.getsize(path) > 0


# ---------------------------------------------------------------------------------------------
# visualize_detections
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_visualize_detections(tools, tiny_synthetic, tmp_path, model, capsys):
    out = str(tmp_path / "vis")
    index = tools.vis.main(
        ["--config-file", config(model), "--num-images", "2", "--score-thresh", "0",
         "--show-gt", "--output", out, *opts(tiny_synthetic, tmp_path)]
    )  # fmt: skip
    assert index["dataset"] == tiny_synthetic["test"]  # the config's DATASETS.TEST
    assert index["attention"] == (model == "NAE+_R10")
    assert {"NAE_R10": "sigmoid", "NAE+_R10": "attention", "SeqNet_R10": "stage1"}[model] in (
        index["score"]
    )
    with open(os.path.join(out, "index.json")) as f:
        assert json.load(f) == json.loads(json.dumps(index))
    records = {r["image_id"]: r for r in DatasetCatalog.get(tiny_synthetic["test"])}
    printed = capsys.readouterr().out.splitlines()  # log lines too
    for path in [e["png"] for e in index["images"]] + [os.path.join(out, "index.json")]:
        assert path in printed
    assert len(index["images"]) == 2
    for entry in index["images"]:
        record = records[entry["image_id"]]
        assert readable_png(entry["png"])
        assert entry["num_people"] == len(record["annotations"])
        assert 0 < entry["num_drawn"] == len(entry["scores"]) <= entry["num_detections"]
        scores = np.array(entry["scores"])
        assert (scores > 0).all() and (scores <= 1).all() and (np.diff(scores) <= 0).all()
        boxes = np.array(entry["boxes"])
        assert boxes.shape == (entry["num_drawn"], 4)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= record["width"]).all()
        assert (boxes[:, 3] <= record["height"]).all() and (boxes[:, 2:] >= boxes[:, :2]).all()


def test_visualize_named_images_and_threshold(tools, tiny_synthetic, tmp_path):
    records = DatasetCatalog.get(tiny_synthetic["test"])
    ids = [records[3]["image_id"], records[0]["image_id"]]
    index = tools.vis.main(
        ["--config-file", config("NAE+_R10"), "--dataset", tiny_synthetic["test"], "--images",
         *ids, "--score-thresh", "0.9", "--output", str(tmp_path / "v"), "--",
         *opts(tiny_synthetic, tmp_path)]
    )  # fmt: skip
    assert [e["image_id"] for e in index["images"]] == ids
    for entry in index["images"]:  # NAE+ scores are normalised: the best detection scores 1
        assert entry["num_drawn"] >= 1 and min(entry["scores"]) > 0.9


def test_attention_is_computed_on_the_final_boxes(tools, tiny_synthetic, tmp_path):
    """detect_image's boxes are the model's own (original pixels) and each has its map."""
    args = tools.vis.parse_args(
        ["--config-file", config("NAE+_R10"), *opts(tiny_synthetic, tmp_path)]
    )
    model = build_inference_model(args.cfg)
    record = DatasetCatalog.get(tiny_synthetic["test"])[1]
    inputs = PersonSearchDatasetMapper(args.cfg, False)(record)
    dets = detect_image(model, inputs, attention=True)
    with torch.no_grad():
        ref = model.inference([inputs])[0]["instances"]
    order = torch.argsort(ref.scores, descending=True)
    np.testing.assert_allclose(dets["boxes"], ref.pred_boxes.tensor[order].numpy(), atol=1e-3)
    np.testing.assert_allclose(dets["scores"], ref.scores[order].numpy(), atol=1e-6)
    size = args.cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION // 2  # the res5 map
    assert dets["attention"].shape == (len(dets["boxes"]), size, size)
    assert ((dets["attention"] >= 0) & (dets["attention"] <= 1)).all()


def test_draw_detections_colours_and_attention_overlay():
    image = np.zeros((100, 120, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 20.0, 50.0, 90.0], [70.0, 20.0, 110.0, 90.0]])
    scores = np.array([1.0, 0.25])
    attention = np.ones((2, 4, 4))
    draw_detections(image, boxes, scores, attention, alpha=1.0)
    colors = score_colors(scores)
    assert tuple(image[55, 10]) == tuple(colors[0]) and tuple(image[55, 70]) == tuple(colors[1])
    assert tuple(colors[0]) != tuple(colors[1])
    heat = score_colors([1.0], ATTENTION_CMAP)[0]
    assert tuple(image[55, 30]) == tuple(heat) == tuple(image[55, 90])  # inside: the heatmap
    assert tuple(image[5, 60]) == (0, 0, 0)  # outside every box: untouched


# ---------------------------------------------------------------------------------------------
# analyze_iou
# ---------------------------------------------------------------------------------------------
def check_summary(summary, records, sets):
    num_gt = sum(len(r["annotations"]) for r in records)
    assert summary["num_images"] == len(records) and summary["num_gt"] == num_gt
    assert summary["num_gt_outside_bins"] == 0
    labels = summary["height_bins"]["labels"]
    assert labels == ["[0,60)", "[60,100)", "[100,200)", "[200,400)", ">=400"]
    assert list(summary["box_sets"]) == sets
    for s in summary["box_sets"].values():
        assert list(s["bins"]) == ["all"] + labels
        assert s["bins"]["all"]["num_gt"] == num_gt == sum(s["bins"][b]["num_gt"] for b in labels)
        matched = s["bins"]["all"]["num_matched_boxes"]
        assert matched == sum(s["bins"][b]["num_matched_boxes"] for b in labels) <= s["num_boxes"]
        for b in s["bins"].values():
            assert b["num_recalled"] <= b["num_gt"]
            if b["num_gt"]:
                assert 0 <= b["recall"] <= 1 and 0 <= b["mean_best_iou"] <= 1
                assert b["recall"] == pytest.approx(b["num_recalled"] / b["num_gt"])
            else:
                assert b["recall"] is None and b["mean_best_iou"] is None
            if b["num_matched_boxes"]:
                assert 0.5 <= b["mean_matched_iou"] <= 1
            else:
                assert b["mean_matched_iou"] is None
    # proposals are post-NMS RPN boxes; the tiny model keeps 50 per image
    assert 0 < summary["box_sets"]["proposals"]["num_boxes"] <= 50 * len(records)


@pytest.mark.parametrize("model", MODELS + ["OIM_R10"])
def test_analyze_iou(tools, tiny_synthetic, tmp_path, model, capsys):
    out = str(tmp_path / "iou")
    extra = []
    if model == "NAE_R10":  # weights from a file (those of a model built like the tool's)
        args = tools.iou.parse_args(
            ["--config-file", config(model), *opts(tiny_synthetic, tmp_path)]
        )
        weights = str(tmp_path / "w.pth")
        torch.save({"model": tools.iou.build_inference_model(args.cfg).state_dict()}, weights)
        extra = ["MODEL.WEIGHTS", weights]
    argv = ["--config-file", config(model), "--output", out, "--max-images", "3"]
    if model == "SeqNet_R10":  # the default edges given explicitly, then "--" before the opts
        argv += ["--height-bins", "0", "60", "100", "200", "400", "inf", "--"]
    summary = tools.iou.main(argv + opts(tiny_synthetic, tmp_path, *extra))
    records = DatasetCatalog.get(tiny_synthetic["test"])[:3]
    sets = ["proposals", "detections"]
    if model == "SeqNet_R10":  # the JSON has the stage-1 set
        sets.insert(1, "stage1")
    check_summary(summary, records, sets)
    with open(os.path.join(out, "iou_summary.json")) as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    assert summary["height_bins"]["edges"] == [0, 60, 100, 200, 400, "inf"]
    printed = capsys.readouterr().out
    assert "| box set | height | people | recall@0.5 |" in printed
    assert f"| detections | all | {summary['num_gt']} |" in printed
    for name in ("iou_histograms.png", "recall_by_height.png"):
        path = os.path.join(out, name)
        assert path in printed and readable_png(path)
    assert open(os.path.join(out, "iou_summary.md")).read().startswith("| box set |")


def test_box_sets_are_the_models_boxes_in_original_pixels(tools, tiny_synthetic, tmp_path):
    args = tools.iou.parse_args(
        ["--config-file", config("SeqNet_R10"), *opts(tiny_synthetic, tmp_path)]
    )
    model = tools.iou.build_inference_model(args.cfg)
    record = DatasetCatalog.get(tiny_synthetic["test"])[2]
    inputs = PersonSearchDatasetMapper(args.cfg, False)(record)
    sets = iou_analysis.image_box_sets(model, inputs)
    with torch.no_grad():
        ref = model.inference([inputs])[0]["instances"].pred_boxes.tensor
    torch.testing.assert_close(sets["detections"], ref, atol=1e-3, rtol=0)
    for boxes in sets.values():
        assert (boxes[:, 2] <= record["width"]).all() and (boxes[:, 3] <= record["height"]).all()
    # the stage-1 boxes are what stage 2 refines: as many (before the final NMS) as detections
    assert len(sets["stage1"]) >= len(sets["detections"])


# ---------------------------------------------------------------------------------------------
# command-line errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tool", ["vis", "iou"])
def test_command_line_errors(tools, tiny_synthetic, tmp_path, tool, capsys):
    main = getattr(tools, tool).main
    base = ["--config-file", config("NAE_R10"), "--output", str(tmp_path / "o")]
    tiny = opts(tiny_synthetic, tmp_path)

    def usage_error(argv, *fragments):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        for fragment in fragments:
            assert fragment in err, (fragment, err)

    usage_error(base + ["--dataset", "no_such_split_xyz"] + tiny, "no_such_split_xyz",
                "not registered", tiny_synthetic["test"])  # fmt: skip
    usage_error(
        base + tiny + ["DATASETS.TEST", "('nope_split',)"], "'nope_split' is not registered"
    )
    usage_error(["--config-file", "nope.yaml"], "config file not found: 'nope.yaml'")
    usage_error(base + tiny + ["--output", "x"], "flags must come before", "--output")
    usage_error(base + tiny[:-1], "KEY VALUE pairs")
    if tool == "iou":
        usage_error(base + ["--height-bins", "100", "50"], "--height-bins must be")
        usage_error(base + ["--max-images", "-1"], "--max-images must be >= 0")
    else:
        usage_error(base + ["--num-images", "0"], "--num-images must be >= 1")
        usage_error(base + ["--score-thresh", "1.5"], "--score-thresh must be in [0, 1)")
        with pytest.raises(SystemExit, match=r"image ids not in the dataset: \['zz.jpg'\]"):
            main(base + ["--images", "zz.jpg", "--"] + tiny)
    if not torch.cuda.is_available():
        usage_error(base + tiny + ["MODEL.DEVICE", "cuda"], "add 'MODEL.DEVICE cpu'")
    missing = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="Checkpoint file not found") as e:
        main(base + tiny + ["MODEL.WEIGHTS", missing])
    assert missing in str(e.value)


def test_ugas_attention_sfm_maps_are_drawn(tools, tiny_synthetic, tmp_path):
    """UGAS with the attention SFM: every detection gets its spatial attention map."""
    extra = [
        "MODEL.UGAS.SFM.NAME",
        "AttentionShallowFusionModule",
        "MODEL.UGAS.SFM.CONV_DIM",
        "8",
        "MODEL.UGAS.SFM.EMBED_DIM",
        "16",
        "MODEL.UGAS.SFM.POOLER_RESOLUTION",
        "7",
    ]
    args = tools.vis.parse_args(
        ["--config-file", config("UGAS_R10"), *opts(tiny_synthetic, tmp_path, *extra)]
    )  # fmt: skip
    model = build_inference_model(args.cfg)
    assert has_attention(model.roi_heads)
    torch.nn.init.normal_(model.roi_heads.ugas.sfm.spatial[0].weight)  # a non-uniform gate
    record = DatasetCatalog.get(tiny_synthetic["test"])[1]
    dets = detect_image(model, PersonSearchDatasetMapper(args.cfg, False)(record), True)
    maps = dets["attention"]
    assert maps.shape[0] == len(dets["boxes"]) > 0 and maps.shape[1:] == (7, 7)
    assert (maps >= 0).all() and (maps <= 1).all() and maps.std() > 0


def test_sfm_attention_maps_mix_the_levels_by_their_weights():
    gates = [torch.full((1, 1, 4, 4), 2.0), torch.zeros(1, 1, 2, 2)]
    maps = sfm_attention_maps(gates, torch.tensor([[1.5, 0.5]]))
    assert maps.shape == (1, 4, 4)
    torch.testing.assert_close(maps, torch.full((1, 4, 4), 0.75))  # (0.75 * 2 + 0.25 * 0) / 2
