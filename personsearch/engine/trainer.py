"""PersonSearchTrainer: detectron2's DefaultTrainer wired to the person-search components."""

import logging
import os
import weakref
from typing import Optional

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data.build import filter_images_with_only_crowd_annotations
from detectron2.engine import DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model
from detectron2.engine import hooks as d2_hooks
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch import nn

from personsearch.checkpoint import PersonSearchCheckpointer, remove_stale_temporary_files
from personsearch.data.build import load_training_records
from personsearch.data.dataset_mapper import PersonSearchDatasetMapper
from personsearch.data.samplers import (
    ResumableTrainLoader,
    build_resumable_train_loader,
    derive_seed,
)
from personsearch.solver.build import build_optimizer
from personsearch.utils.comm import broadcast_buffers

from .hooks import OIMSyncCheckHook, StepSeedHook
from .train_loop import GuardedTrainLoop

__all__ = ["PersonSearchTrainer"]

# derive_seed stream of the PreciseBN loader (the training loader uses the run seed itself)
PRECISE_BN_STREAM = 2

logger = logging.getLogger(__name__)


class PersonSearchTrainer(DefaultTrainer):
    """``DefaultTrainer`` for person search.

    Differences from detectron2's trainer, all through its documented extension points (the
    ``build_*`` classmethods, ``build_hooks``, ``resume_or_load``, ``state_dict``, ``test``), plus
    :meth:`wrap_ddp_model`, :meth:`build_train_loop` and :meth:`build_checkpointer` for the three
    objects ``DefaultTrainer.__init__`` hard-codes:

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
        # DefaultTrainer.__init__ (detectron2 0.7.2 and upstream 02b5c4e2, 2026-06) builds the
        # model, optimizer, data loader and LR scheduler through the build_* classmethods we
        # override, but hard-codes three objects that have no such hook: the train loop
        # (SimpleTrainer / AMPTrainer), the checkpointer (DetectionCheckpointer) and the DDP
        # wrapper (create_ddp_model with device_ids=[local rank], which DDP refuses for a CPU
        # model). Calling it would build and wrap everything once for nothing, and fail outright
        # under multi-process CPU (gloo) training. So this is its construction, in its order, with
        # those three built by the overridable methods below.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        # one seed for the data stream and the per-iteration seeds, identical on every rank
        self.run_seed = int(cfg.SEED) if cfg.SEED >= 0 else int(comm.shared_random_seed())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = self.wrap_ddp_model(model)
        # DefaultTrainer's run_step, state_dict and model/data_loader/optimizer read this attribute
        self._trainer = self.build_train_loop(cfg, model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = self.build_checkpointer(cfg, model, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())
        self._configure_data_streams()

    @staticmethod
    def wrap_ddp_model(model: nn.Module) -> nn.Module:
        """detectron2's ``create_ddp_model`` (no wrapper in one process), with ``device_ids`` that
        DDP accepts for a CPU model too (None; detectron2 passes ``[local rank]``)."""
        on_gpu = next(model.parameters()).device.type == "cuda"
        device_ids = [comm.get_local_rank()] if on_gpu else None
        return create_ddp_model(model, broadcast_buffers=False, device_ids=device_ids)

    @classmethod
    def build_train_loop(cls, cfg, model, data_loader, optimizer) -> SimpleTrainer:
        """The object that runs one training step: :class:`GuardedTrainLoop` (non-finite guards,
        ``SOLVER.NONFINITE.MAX_SKIPS``, and ``SOLVER.AMP`` in bfloat16 or float16)."""
        return GuardedTrainLoop(
            model,
            data_loader,
            optimizer,
            max_skips=cfg.SOLVER.NONFINITE.MAX_SKIPS,
            amp_dtype=cfg.SOLVER.AMP.DTYPE if cfg.SOLVER.AMP.ENABLED else "",
        )

    @classmethod
    def build_checkpointer(cls, cfg, model, **checkpointables) -> PersonSearchCheckpointer:
        """The checkpointer of training: :class:`PersonSearchCheckpointer` into ``OUTPUT_DIR``."""
        return PersonSearchCheckpointer(model, cfg.OUTPUT_DIR, **checkpointables)

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
        if _data_loader_iterated(self._trainer):
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
            loader = _precise_bn_loader(h)
            if isinstance(loader, ResumableTrainLoader):
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


# ---- detectron2 internals ----
# The only reads of private detectron2 training state, both for exact resumption (checked against
# detectron2 0.7.2 = sal-detectron2 and upstream detectron2 02b5c4e2, 2026-06). detectron2 has no
# public way to position a data stream: DefaultTrainer restarts its loaders on resume.


def _data_loader_iterated(train_loop: SimpleTrainer) -> bool:
    """Whether the train loop already created its data-loader iterator (SimpleTrainer creates it
    lazily at the first step, in ``_data_loader_iter``; until then the loader can be positioned)."""
    return getattr(train_loop, "_data_loader_iter_obj", None) is not None


def _precise_bn_loader(hook) -> Optional[object]:
    """The training loader a ``PreciseBN`` hook of ``DefaultTrainer.build_hooks`` draws from
    (detectron2 keeps it in ``_data_loader``), else None."""
    if isinstance(hook, d2_hooks.PreciseBN):
        return getattr(hook, "_data_loader", None)
    return None
