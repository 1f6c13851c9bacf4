"""The checkpointer of personsearch: detectron2's ``DetectionCheckpointer`` with atomic saves,
weights-only loading and the model-zoo mappings.

This is the only file that overrides private methods of detectron2's / fvcore's checkpointer
(checked against detectron2 0.7.2 = sal-detectron2, upstream detectron2 at 02b5c4e2 (2026-06),
whose ``detectron2/checkpoint/detection_checkpoint.py`` is identical, and fvcore
0.1.5.post20221221). Each override says why it is needed. What they call lives elsewhere: the
file readers in :mod:`personsearch.checkpoint.loading`, the key mapping in
:mod:`personsearch.checkpoint.model_zoo`, the atomic write in :mod:`personsearch.utils.file_io`.
"""

import glob
import logging
import os
from typing import Any, Dict, List, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer

from personsearch.utils.file_io import atomic_write, temporary_path
from personsearch.utils.serialization import check_saved_types

from .loading import (
    check_model_state,
    checkpoint_read_errors,
    read_model_zoo_pickle,
    read_pycls_checkpoint,
    read_torch_checkpoint,
)
from .model_zoo import DetectorKeyMapping, prepare_model_state

__all__ = ["PersonSearchCheckpointer", "remove_stale_temporary_files"]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"  # fvcore's name of the file naming the newest checkpoint


class PersonSearchCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with these changes:

    * **atomic writes** (:func:`personsearch.utils.file_io.atomic_write`): a checkpoint is written
      to ``<name>.pth.tmp``, flushed to disk and renamed,
      and ``last_checkpoint`` is replaced the same way, so a crash while saving never leaves a
      truncated checkpoint or a ``last_checkpoint`` naming one; ``--resume`` then continues from
      the previous complete checkpoint;
    * **weights-only loading** (:mod:`personsearch.checkpoint.loading`, under the policy of
      :mod:`personsearch.utils.serialization`): ``.pth``/``.pyth``
      files are read with ``torch.load(weights_only=True)``, detectron2 model-zoo ``.pkl`` files
      with an unpickler that rebuilds numpy arrays and nothing else; a file that needs arbitrary
      unpickling is refused with :class:`~personsearch.utils.serialization.UntrustedFileError`
      (which says how to allow a trusted file). Saved checkpoints hold only tensors and plain
      Python values (checked before writing), so they always load weights-only;
    * **clear errors**: a ``MODEL.WEIGHTS`` that is missing or cannot be fetched names the path;
    * **one pretrained weight, several copies**: with detectron2's name-matching heuristics (model
      zoo ``.pkl`` files), a checkpoint key that is the best match of several model parameters
      initialises all of them (SeqNet's two res5 stages both start from ImageNet res5; detectron2
      would stop with "Cannot match one checkpoint key to multiple keys"); each such key is logged;
    * **Linear -> 1x1 conv**: a 2-D weight (O, I) in the checkpoint whose model parameter is a 1x1
      convolution (O, I, 1, 1) is reshaped into it (logged). This is how NAE+ starts from a
      trained NAE, as the reference does: ``MODEL.WEIGHTS`` = the NAE checkpoint, every other
      weight has the same shape;
    * **detectron2 detectors** (model-zoo Faster R-CNN R50-C4 / R50-FPN ``model_final_*.pkl``, or
      any checkpoint of a ``GeneralizedRCNN`` with detectron2's standard heads): recognised from
      its keys and mapped with :data:`~.model_zoo.DETECTOR_KEY_RENAMES`
      (:func:`~.model_zoo.map_detector_checkpoint`), so the backbone, the RPN and every res5
      stage (or the FPN box head) are initialised from it; the matched and skipped keys (e.g.
      the 81-class predictor) are logged and kept in :attr:`detector_mapping`.
    """

    #: the :class:`~personsearch.checkpoint.model_zoo.DetectorKeyMapping` of the last load of a
    #: detectron2 detector file, else None
    detector_mapping: Optional[DetectorKeyMapping] = None

    # ---- public API overrides ----

    def save(self, name: str, **kwargs: Any) -> None:
        # fvcore's save, written through atomic_write and checked to load weights-only
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        check_saved_types(data, f"checkpoint {save_file!r}")
        self.logger.info(f"Saving checkpoint to {save_file}")
        with atomic_write(save_file, "wb") as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with atomic_write(os.path.join(self.save_dir, LAST_CHECKPOINT), "w") as f:
            f.write(last_filename_basename)

    def load(self, path: str, *args, **kwargs) -> Dict[str, Any]:
        if path and not os.path.isfile(path):
            try:
                local = self.path_manager.get_local_path(path)
            except Exception as e:  # download failures come in many types
                raise FileNotFoundError(
                    f"Cannot fetch checkpoint {path!r} ({type(e).__name__}: {e}). Without internet "
                    "access, copy the file here and point MODEL.WEIGHTS to it, or set "
                    "MODEL.WEIGHTS '' to train from scratch."
                ) from e
            if not os.path.isfile(local):
                raise FileNotFoundError(f"Checkpoint file not found: {path!r} (MODEL.WEIGHTS)")
        try:
            return super().load(path, *args, **kwargs)
        finally:
            # Private attribute: DetectionCheckpointer.load sets it, asserts it is None on entry
            # and resets it only when loading succeeds, so after one failed load (e.g. a refused
            # file) every later load of this checkpointer would fail its assertion.
            self._parsed_url_during_load = None

    # ---- private overrides (the extension points fvcore and detectron2 document in comments) ----

    def _load_file(self, filename: str) -> Dict[str, Any]:
        # Private, and fvcore's documented way to read other formats: detectron2's version reads
        # .pkl and .pyth files with full unpickling (pickle.load / torch.load), which can run code
        # stored in the file. .pth files still go through detectron2's version, for its URL
        # queries (?matching_heuristics=True), which reads them with _torch_load below.
        with checkpoint_read_errors(filename):
            if filename.endswith(".pkl"):
                loaded = read_model_zoo_pickle(filename)
                self.logger.info(f"Reading a file from {loaded['__author__']!r}")
            elif filename.endswith(".pyth"):
                loaded = read_pycls_checkpoint(filename)
            else:
                loaded = super()._load_file(filename)
        return check_model_state(loaded, filename)

    def _torch_load(self, f: str) -> Dict[str, Any]:
        # Private: detectron2's hook for reading .pth files; fvcore's torch.load has no
        # weights_only argument (full unpickling on torch < 2.6, refusals with torch's own
        # messages on torch >= 2.6).
        return read_torch_checkpoint(f)

    def _load_model(self, checkpoint: Dict[str, Any]):
        # Private, and the step fvcore and detectron2 both override to change how a state dict is
        # matched to the model: here the model-zoo mappings run first, then detectron2's loading
        # (its name-matching heuristics when the file asks for them) unchanged.
        checkpoint["model"], self.detector_mapping = prepare_model_state(
            self.model.state_dict(), checkpoint, self.logger
        )
        return super()._load_model(checkpoint)


def remove_stale_temporary_files(output_dir: str) -> List[str]:
    """Delete the ``*.pth.tmp`` and ``last_checkpoint.tmp`` files a killed checkpoint save leaves
    in ``output_dir`` (saves write a temporary file and rename it, so these are never complete
    checkpoints and ``last_checkpoint`` never names them).

    Args:
        output_dir: the checkpoint folder (``OUTPUT_DIR``); may not exist.

    Returns:
        The removed paths (each one is also logged).
    """
    stale = sorted(glob.glob(temporary_path(os.path.join(glob.escape(output_dir), "*.pth"))))
    tag = temporary_path(os.path.join(output_dir, LAST_CHECKPOINT))
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
