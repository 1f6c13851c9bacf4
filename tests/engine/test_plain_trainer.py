"""personsearch inside someone else's detectron2 code: a plain ``DefaultTrainer`` subclass (not
PersonSearchTrainer) trains and evaluates a person-search model with only the config keys, the
dataset mapper and the evaluator (README, "Using personsearch in your own detectron2 code")."""

import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer

import personsearch  # noqa: F401  (registers the datasets' loaders and the model components)
from personsearch import PersonSearchEvaluator, add_personsearch_config
from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from personsearch.engine import PersonSearchTrainer
from tests.common import CONFIGS, tiny_opts, tiny_synthetic_splits


class PlainTrainer(DefaultTrainer):
    """The recipe: detectron2's trainer with personsearch's mapper and evaluator."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=PersonSearchDatasetMapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=PersonSearchDatasetMapper(cfg, False)
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return PersonSearchEvaluator(dataset_name, cfg, output_dir=output_folder)


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic_plain"))
    return tiny_synthetic_splits(root, "tiny_synthetic_plain")


def test_plain_default_trainer_trains_and_evaluates_a_person_search_model(tiny_split, tmp_path):
    cfg = get_cfg()
    add_personsearch_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, "synthetic", "NAE_R10.yaml"))
    cfg.merge_from_list(tiny_opts(tiny_split, tmp_path / "out"))
    # detectron2's build_optimizer knows the clip types "value" and "norm" ("full_model" is
    # personsearch's, see personsearch.solver.build_optimizer)
    cfg.merge_from_list(["SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "norm", "SOLVER.MAX_ITER", "3",
                         "SOLVER.STEPS", "(2,)", "SOLVER.CHECKPOINT_PERIOD", "100"])  # fmt: skip
    torch.manual_seed(0)
    trainer = PlainTrainer(cfg)
    assert not isinstance(trainer, PersonSearchTrainer)
    trainer.resume_or_load(resume=False)
    lut = trainer.model.roi_heads.reid_loss.lut
    assert lut.abs().sum() == 0
    # 3 iterations, then detectron2's EvalHook: DefaultTrainer.test = build_test_loader +
    # build_evaluator + inference_on_dataset
    trainer.train()
    assert trainer.iter == 3
    assert lut.abs().sum() > 0  # OIM memories were trained
    metrics = {k: v for k, (v, _) in trainer.storage.latest().items() if "/" in k}
    names = {"search/mAP", "search/top1", "search/top5", "search/top10", "detection/AP",
             "detection/recall"}  # fmt: skip
    assert names <= set(metrics)
    assert all(0.0 <= metrics[k] <= 100.0 for k in names)
    saved = tmp_path / "out" / "inference" / tiny_split["test"] / "search_results.pth"
    assert saved.is_file()  # PersonSearchEvaluator's raw results, for offline re-scoring
