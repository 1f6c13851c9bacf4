"""PersonSearchTrainer: detectron2's DefaultTrainer wired to the person-search components."""

import glob
import logging
import os
import weakref
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
from detectron2.data import (
    DatasetCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data.build import filter_images_with_only_crowd_annotations
from detectron2.engine import DefaultTrainer, TrainerBase, create_ddp_model
from detectron2.engine import hooks as d2_hooks
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch import nn

from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from personsearch.data.samplers import (
    ResumableTrainLoader,
    build_resumable_train_loader,
    derive_seed,
)
from personsearch.solver.build import build_optimizer

from .checkpointer import PersonSearchCheckpointer
from .hooks import OIMSyncCheckHook, StepSeedHook, unwrap_model
from .train_loop import GuardedTrainLoop

# derive_seed stream of the PreciseBN loader (the training loader uses the run seed itself)
PRECISE_BN_STREAM = 2

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
      (:class:`PersonSearchCheckpointer`); ``*.tmp`` files left by a save that was killed are
      removed on resume;
    * exact resumption: the training loader (:mod:`personsearch.data.samplers`) is a stream of
      batches that can start at any iteration, with per-sample augmentation seeds, and every
      iteration reseeds the global RNGs from ``(run seed, iteration, rank)``
      (:class:`~personsearch.engine.hooks.StepSeedHook`). The run seed is ``SEED`` (or a random
      one when ``SEED`` < 0) and is saved in checkpoints, so ``--resume`` continues with the
      batches and random choices an uninterrupted run would have made;
    * distributed debugging: ``MODEL.OIM.SYNC_CHECK_PERIOD`` > 0 checks that the OIM memories are
      identical on all ranks (:class:`~personsearch.engine.hooks.OIMSyncCheckHook`).
    """

    def __init__(self, cfg):
        # The construction order of DefaultTrainer.__init__, with our train loop and checkpointer.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        # one seed for the data stream and the per-iteration seeds, identical on every rank
        self.run_seed = int(cfg.SEED) if cfg.SEED >= 0 else int(comm.shared_random_seed())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        # detectron2's create_ddp_model passes device_ids=[local rank], which DDP rejects for a
        # CPU model; CPU processes (gloo) need device_ids=None.
        on_gpu = next(model.parameters()).device.type == "cuda"
        device_ids = [comm.get_local_rank()] if on_gpu else None
        model = create_ddp_model(model, broadcast_buffers=False, device_ids=device_ids)
        self._trainer = GuardedTrainLoop(
            model,
            data_loader,
            optimizer,
            max_skips=cfg.SOLVER.NONFINITE.MAX_SKIPS,
            amp_dtype=cfg.SOLVER.AMP.DTYPE if cfg.SOLVER.AMP.ENABLED else "",
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = PersonSearchCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())
        self._configure_data_streams()

    def build_hooks(self):
        """detectron2's hooks, plus :class:`StepSeedHook` (first) and, with
        ``MODEL.OIM.SYNC_CHECK_PERIOD`` > 0, :class:`OIMSyncCheckHook` (before PreciseBN, the
        checkpointer and evaluation, so that diverged memories are never saved)."""
        ret = [StepSeedHook()] + [h for h in super().build_hooks() if h is not None]
        period = self.cfg.MODEL.OIM.SYNC_CHECK_PERIOD
        if period > 0:
            later = (d2_hooks.PreciseBN, d2_hooks.PeriodicCheckpointer, d2_hooks.EvalHook)
            pos = next((i for i, h in enumerate(ret) if isinstance(h, later)), len(ret))
            ret.insert(pos, OIMSyncCheckHook(period))
        return ret

    def resume_or_load(self, resume: bool = True) -> None:
        """Load ``MODEL.WEIGHTS``, or with ``resume`` the last checkpoint of ``OUTPUT_DIR`` with
        the whole training state (model incl. OIM memories, optimizer, scheduler, iteration,
        non-finite skip count, run seed); then position the training data stream at the
        iteration training continues from. Must be called before :meth:`train`.
        """
        # the loader's iterator is created at the first training step, so it can still be moved
        if self._trainer._data_loader_iter_obj is not None:
            raise RuntimeError(
                "resume_or_load() was called after the training data loader was iterated; the "
                "data stream can no longer be positioned. Call it before train()."
            )
        if resume and comm.is_main_process():
            remove_stale_temporary_files(self.cfg.OUTPUT_DIR)
        super().resume_or_load(resume=resume)
        self._configure_data_streams()
        if self.start_iter > 0 and not isinstance(self.data_loader, ResumableTrainLoader):
            logger.warning(
                f"DATALOADER.SAMPLER_TRAIN={self.cfg.DATALOADER.SAMPLER_TRAIN}: the training data "
                "stream restarts from its beginning, so the resumed run sees other batches than "
                "an uninterrupted run would (only TrainingSampler resumes exactly)."
            )

    def _configure_data_streams(self) -> None:
        """Give the resumable loaders the run seed and their position at ``start_iter``."""
        if isinstance(self.data_loader, ResumableTrainLoader):
            self.data_loader.set_seed(self.run_seed)
            self.data_loader.set_start_iter(self.start_iter)
            if self.start_iter:
                logger.info(
                    f"Training data stream positioned at iteration {self.start_iter} "
                    f"(run seed {self.run_seed})."
                )
        for h in self._hooks:
            loader = getattr(h, "_data_loader", None)
            if isinstance(h, d2_hooks.PreciseBN) and isinstance(loader, ResumableTrainLoader):
                # PreciseBN took NUM_ITER batches at every EVAL_PERIOD-th iteration before
                period, n = self.cfg.TEST.EVAL_PERIOD, self.cfg.TEST.PRECISE_BN.NUM_ITER
                loader.set_seed(derive_seed(self.run_seed, PRECISE_BN_STREAM))
                loader.set_start_iter((self.start_iter // period) * n if period > 0 else 0)

    def state_dict(self):
        ret = super().state_dict()
        ret["run_seed"] = self.run_seed
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        seed: Optional[int] = state_dict.get("run_seed")
        if seed is None:
            logger.warning(
                "The checkpoint holds no run seed (written by an older version): the resumed run "
                f"uses run seed {self.run_seed}, so its batches and random choices differ from "
                "those of an uninterrupted run."
            )
            return
        if self.cfg.SEED >= 0 and int(seed) != self.cfg.SEED:
            logger.warning(
                f"SEED={self.cfg.SEED} but the checkpoint was trained with run seed {seed}; "
                "resuming continues with the checkpoint's seed."
            )
        self.run_seed = int(seed)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's evaluation, after giving every rank rank 0's buffers.

        With several processes each rank updates its own BatchNorm running statistics during
        training (buffers are not broadcast), and checkpoints hold rank 0's. Evaluating with rank
        0's buffers on every rank makes the numbers independent of how the test images are split
        over the ranks, and equal to those of ``--eval-only`` on the checkpoint. Training is not
        affected: BatchNorm uses batch statistics in training mode, and the OIM memories are
        already identical.
        """
        if comm.get_world_size() > 1:
            broadcast_buffers(model, src=0)
        return super().test(cfg, model, evaluators=evaluators)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        """The training loader: with ``DATALOADER.SAMPLER_TRAIN`` "TrainingSampler" (the
        default) a :class:`ResumableTrainLoader` seeded with ``SEED`` (the trainer then sets its
        run seed and start iteration), otherwise detectron2's loader."""
        dicts = load_training_records(cfg.DATASETS.TRAIN, cfg.MODEL.OIM.NUM_PIDS)
        if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
            dicts = filter_images_with_only_crowd_annotations(dicts)
        if not dicts:
            raise ValueError(f"No training images with annotations in {list(cfg.DATASETS.TRAIN)}")
        mapper = PersonSearchDatasetMapper(cfg, True)
        if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
            return build_detection_train_loader(cfg, mapper=mapper, dataset=dicts)
        return build_resumable_train_loader(
            dicts,
            mapper,
            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
            seed=cfg.SEED if cfg.SEED >= 0 else None,
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


def broadcast_buffers(model: nn.Module, src: int = 0) -> None:
    """Copy every buffer of rank ``src``'s ``model`` to the same buffer on the other ranks
    (a collective call; a no-op in one process)."""
    if comm.get_world_size() == 1:
        return
    with torch.no_grad():
        for buf in unwrap_model(model).buffers():
            dist.broadcast(buf.data, src=src)


def remove_stale_temporary_files(output_dir: str) -> List[str]:
    """Delete the ``*.pth.tmp`` and ``last_checkpoint.tmp`` files a killed checkpoint save leaves
    in ``output_dir`` (saves write a temporary file and rename it, so these are never complete
    checkpoints and ``last_checkpoint`` never names them).

    Args:
        output_dir: the checkpoint folder (``OUTPUT_DIR``); may not exist.

    Returns:
        The removed paths (each one is also logged).
    """
    stale = sorted(glob.glob(os.path.join(glob.escape(output_dir), "*.pth.tmp")))
    tag = os.path.join(output_dir, "last_checkpoint.tmp")
    if os.path.isfile(tag):
        stale.append(tag)
    removed = []
    for path in stale:
        try:
            os.remove(path)
        except OSError as e:
            logger.warning(f"Cannot remove the incomplete checkpoint file {path}: {e}")
            continue
        logger.warning(f"Removed {path}, an incomplete file of a checkpoint save that was killed.")
        removed.append(path)
    return removed


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
        pids = []
        for d in dicts:
            for k, a in enumerate(d.get("annotations", [])):
                if "person_id" not in a:
                    image = d.get("image_id", d.get("file_name"))
                    raise KeyError(
                        f"Training dataset {name!r}, image {image!r}, annotation {k} has no "
                        "'person_id': person-search datasets label every box with a person id "
                        "(-1 for unlabeled people)"
                    )
                pids.append(a["person_id"])
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
