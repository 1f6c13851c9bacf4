"""Bad configs and model inputs: unknown keys (yaml and command line), bad values, identities
that do not fit the OIM lookup table, empty training data, missing weights."""

import os

import pytest
import torch
from detectron2.modeling import build_model

from personsearch import get_person_search_cfg
from personsearch.checkpoint import PersonSearchCheckpointer
from personsearch.data.build import load_training_records
from personsearch.engine.trainer import PersonSearchTrainer
from tests.common import CONFIGS, TINY_MODEL_OPTS, load_tool, tiny_cfg
from tests.evaluation.toy import A, B, record

from .helpers import assert_names

BASE = os.path.join(CONFIGS, "Base-PersonSearch.yaml")


# --------------------------------------------------------------------------------------------
# Config keys and files
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["FOO.BAR", "MODEL.REID_HEAD.EMBED_DIMS", "MODEL.OIM.NUM_PID"])
def test_unknown_key_on_the_train_net_command_line(key, capsys):
    train_net = load_tool("train_net")
    with pytest.raises(AssertionError, match=f"Non-existent key: {key}$"):
        train_net.invoke_main(["--config-file", BASE, key, "1"])


def test_unknown_key_in_a_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(f"_BASE_: {BASE}\nMODEL:\n  REID_HEAD:\n    NAMEX: 'x'\n")
    with pytest.raises(KeyError, match="Non-existent config key: MODEL.REID_HEAD.NAMEX"):
        get_person_search_cfg(str(path))


def test_wrong_value_type_on_the_command_line():
    with pytest.raises(ValueError, match="Type mismatch .* for config key: MODEL.RESNETS.DEPTH"):
        get_person_search_cfg(BASE, ["MODEL.RESNETS.DEPTH", "fifty"])


def test_missing_config_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(AssertionError, match="does not exist") as e:
        get_person_search_cfg(path)
    assert_names(str(e.value), [path])


# --------------------------------------------------------------------------------------------
# Values: every one fails when the model is built, naming the key and the value
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "opts, error, message",
    [
        (["MODEL.REID_HEAD.NAME", "Nope"], ValueError,
         r"MODEL.REID_HEAD.NAME 'Nope' is not a registered re-ID head.*LinearEmbeddingHead"),
        (["MODEL.RESNETS.DEPTH", 20], ValueError,
         r"MODEL.RESNETS.DEPTH=20 is not supported; use one of \[10, 18, 34, 50, 101, 152\]"),
        (["MODEL.ROI_BOX_HEAD.GLOBAL_POOL", "median"], ValueError,
         "MODEL.ROI_BOX_HEAD.GLOBAL_POOL must be 'max' or 'avg', got 'median'"),
        (["MODEL.REID_HEAD.IN_FEATURES", ["res3"]], ValueError,
         r"MODEL.REID_HEAD.IN_FEATURES \['res3'\] are not produced"
         r".*\['res4', 'res4_map', 'res5', 'res5_map'\]"),
        (["MODEL.REID_HEAD.NORM", "GN"], ValueError, "MODEL.REID_HEAD.NORM must be one of"),
        (["MODEL.REID_HEAD.EMBED_DIM", 0], ValueError, "MODEL.REID_HEAD.EMBED_DIM must be >= 1"),
        (["MODEL.OIM.NUM_PIDS", 0], ValueError, "MODEL.OIM.NUM_PIDS must be >= 1"),
        (["MODEL.OIM.CQ_SIZE", -1], ValueError, "MODEL.OIM.CQ_SIZE must be >= 0, got -1"),
        (["MODEL.ROI_HEADS.IN_FEATURES", ["res7"]], ValueError,
         r"MODEL.ROI_HEADS.IN_FEATURES=\['res7'\]: the backbone outputs only \['res4'\]"),
        (["MODEL.ROI_HEADS.IN_FEATURES", ["res4", "res3"]], ValueError, "one feature map"),
        (["MODEL.RESNETS.OUT_FEATURES", ["res7"]], ValueError,
         r"MODEL.RESNETS.OUT_FEATURES=\['res7'\]: use names among"),
        (["MODEL.RESNETS.RES5_DILATION", 2], ValueError, "MODEL.RESNETS.RES5_DILATION must be 1"),
        (["MODEL.ROI_HEADS.NAME", "Res5ROIHeads"], TypeError,
         r"Res5ROIHeads cannot embed query boxes.*MODEL.ROI_HEADS.NAME"),
        (["MODEL.ROI_HEADS.NAME", "Nope"], KeyError, "No object named 'Nope' found in 'ROI_HEADS'"),
        (["MODEL.META_ARCHITECTURE", "Nope"], KeyError, "'Nope' found in 'META_ARCH' registry"),
    ],
)  # fmt: skip
def test_bad_model_value_names_key_and_value(opts, error, message):
    cfg = tiny_cfg(opts=opts)
    with pytest.raises(error, match=message):
        build_model(cfg)


# --------------------------------------------------------------------------------------------
# Training data against the model
# --------------------------------------------------------------------------------------------
def test_num_pids_smaller_than_the_identities_reports_both_numbers(catalog):
    a = catalog.register("rb_ids_a", [record(f"a{i}.jpg", [(A, i), (B, -1)]) for i in range(5)])
    b = catalog.register("rb_ids_b", [record("b.jpg", [(A, 0), (B, 2)])])
    with pytest.raises(ValueError) as e:
        load_training_records([a, b], 7)
    assert_names(
        str(e.value),
        ["MODEL.OIM.NUM_PIDS=7 is smaller", ", 8 (", "rb_ids_a: 5", "rb_ids_b: 3",
         "set MODEL.OIM.NUM_PIDS 8"],
    )  # fmt: skip


def test_empty_training_dataset_is_named(catalog):
    full = catalog.register("rb_full", [record("a.jpg", [(A, 0)])])
    empty = catalog.register("rb_empty", [])
    with pytest.raises(ValueError, match="Training dataset 'rb_empty' is empty"):
        load_training_records([full, empty], 10)


def test_training_images_without_people(catalog):
    name = catalog.register("rb_no_people", [record("a.jpg"), record("b.jpg")])
    cfg = tiny_cfg(opts=["DATASETS.TRAIN", (name,)])
    with pytest.raises(
        ValueError, match=r"No training images with annotations in \['rb_no_people'"
    ):
        PersonSearchTrainer.build_train_loader(cfg)


def test_unregistered_training_dataset():
    with pytest.raises(KeyError, match="Dataset 'rb_never_registered' is not registered"):
        load_training_records(["rb_never_registered"], 10)


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    return build_model(tiny_cfg())


def test_missing_weights_file_names_the_path_and_the_key(tiny_model, tmp_path):
    path = str(tmp_path / "no" / "model_final.pth")
    with pytest.raises(FileNotFoundError, match=r"Checkpoint file not found: .*\(MODEL.WEIGHTS\)"):
        # what --eval-only (and training without --resume) does with MODEL.WEIGHTS
        PersonSearchCheckpointer(tiny_model, save_dir=str(tmp_path)).resume_or_load(
            path, resume=False
        )


def test_weights_for_another_model_are_reported_not_silently_ignored(tiny_model, tmp_path, caplog):
    path = str(tmp_path / "other.pth")
    torch.save({"model": {"some.other.layer": torch.zeros(3)}}, path)
    PersonSearchCheckpointer(tiny_model).load(path)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Some model parameters or buffers are not found in the checkpoint" in logged
    assert "some.other.layer" in logged


def test_tiny_options_are_command_line_compatible():
    """The options used above are valid on the train_net command line too (strings)."""
    cfg = get_person_search_cfg(BASE, [str(v) for v in TINY_MODEL_OPTS])
    assert cfg.MODEL.RESNETS.DEPTH == 10 and cfg.INPUT.MIN_SIZE_TRAIN == (96,)


@pytest.mark.parametrize("damage", ["truncated", "random", "not_a_dict"])
def test_corrupt_weights_file_names_the_path(tiny_model, tmp_path, damage):
    path = str(tmp_path / "model.pth")
    if damage == "not_a_dict":
        torch.save([1, 2, 3], path)
    else:
        torch.save({"model": tiny_model.state_dict()}, path)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2] if damage == "truncated" else os.urandom(256))
    ckpt = PersonSearchCheckpointer(tiny_model)
    with pytest.raises((ValueError, OSError)) as e:
        ckpt.load(path)
    assert path in str(e.value)
    # the checkpointer stays usable after a failed load
    good = str(tmp_path / "good.pth")
    torch.save({"model": tiny_model.state_dict()}, good)
    ckpt.load(good)


def test_training_records_without_person_ids_name_the_record():
    from detectron2.data import DatasetCatalog

    from personsearch.data.build import load_training_records

    name = "no_person_ids_train"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(
        name, lambda: [{"image_id": "a.jpg", "annotations": [{"bbox": [0, 0, 1, 1]}]}]
    )
    with pytest.raises(KeyError, match=r"'no_person_ids_train', image 'a.jpg', annotation 0"):
        load_training_records([name], num_pids=5)
