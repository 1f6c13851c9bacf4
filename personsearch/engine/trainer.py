"""PersonSearchTrainer: detectron2's DefaultTrainer wired to the person-search components."""

import logging
import os
import weakref
from typing import Dict, List

from detectron2.data import (
    DatasetCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data.build import filter_images_with_only_crowd_annotations
from detectron2.engine import DefaultTrainer, TrainerBase, create_ddp_model
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from personsearch.solver.build import build_optimizer

from .checkpointer import PersonSearchCheckpointer
from .train_loop import GuardedTrainLoop

logger = logging.getLogger(__name__)


class PersonSearchTrainer(DefaultTrainer):
    """``DefaultTrainer`` for person search.

    Differences from detectron2's trainer, all through its documented extension points:

    * data: :class:`PersonSearchDatasetMapper` for training and test loaders; several training
      datasets get disjoint person-id ranges; ``MODEL.OIM.NUM_PIDS`` is checked against the data
      before training;
    * evaluation: :class:`personsearch.evaluation.PersonSearchEvaluator` for every test split (works
      with ``TEST.EVAL_PERIOD`` and ``--eval-only`` unchanged);
    * optimisation: full-model gradient clipping (``SOLVER.CLIP_GRADIENTS.CLIP_TYPE full_model``)
      and a training step that stops on (or, with ``SOLVER.NONFINITE.MAX_SKIPS``, skips) NaN/Inf
      losses and gradients, naming them;
    * checkpoints: written atomically, outside checkpoints loaded weights-only where possible
      (:class:`PersonSearchCheckpointer`).
    """

    def __init__(self, cfg):
        # The construction order of DefaultTrainer.__init__, with our train loop and checkpointer.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = GuardedTrainLoop(
            model, data_loader, optimizer, max_skips=cfg.SOLVER.NONFINITE.MAX_SKIPS
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = PersonSearchCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        dicts = load_training_records(cfg.DATASETS.TRAIN, cfg.MODEL.OIM.NUM_PIDS)
        if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
            dicts = filter_images_with_only_crowd_annotations(dicts)
        if not dicts:
            raise ValueError(f"No training images with annotations in {list(cfg.DATASETS.TRAIN)}")
        return build_detection_train_loader(
            cfg, mapper=PersonSearchDatasetMapper(cfg, True), dataset=dicts
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=PersonSearchDatasetMapper(cfg, False)
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        from personsearch.evaluation import PersonSearchEvaluator

        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return PersonSearchEvaluator(dataset_name, cfg, output_dir=output_folder)


def load_training_records(dataset_names: List[str], num_pids: int) -> List[Dict]:
    """Load and concatenate training splits, giving each split its own person-id range.

    Args:
        dataset_names: registered training splits (``DATASETS.TRAIN``).
        num_pids: ``MODEL.OIM.NUM_PIDS``, the OIM lookup-table size.

    Returns:
        The records; person ids of the k-th split are shifted by the identity count of the splits
        before it (unlabeled people stay -1).

    Raises:
        ValueError: if the identities do not fit ``num_pids`` (both numbers in the message).
    """
    if isinstance(dataset_names, str):
        dataset_names = [dataset_names]
    records, offset, counts = [], 0, []
    for name in dataset_names:
        dicts = DatasetCatalog.get(name)
        if not dicts:
            raise ValueError(f"Training dataset {name!r} is empty")
        pids = [a["person_id"] for d in dicts for a in d.get("annotations", [])]
        n = max([p for p in pids if p >= 0], default=-1) + 1
        if offset:
            for d in dicts:
                for a in d.get("annotations", []):
                    if a["person_id"] >= 0:
                        a["person_id"] += offset
        counts.append(f"{name}: {n}")
        records.extend(dicts)
        offset += n
    if offset > num_pids:
        raise ValueError(
            f"MODEL.OIM.NUM_PIDS={num_pids} is smaller than the number of labeled identities in "
            f"the training data, {offset} ({', '.join(counts)}); set MODEL.OIM.NUM_PIDS {offset}"
        )
    if offset < num_pids:
        logger.warning(
            f"MODEL.OIM.NUM_PIDS={num_pids} but the training data has {offset} identities "
            f"({', '.join(counts)}); the unused lookup-table rows stay zero."
        )
    else:
        logger.info(f"Training identities: {offset} ({', '.join(counts)})")
    return records
