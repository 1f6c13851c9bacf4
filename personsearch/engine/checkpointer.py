"""Checkpointing that survives crashes and loads outside checkpoints as safely as possible."""

import os
import pickle
from typing import Any, Dict

import torch
from detectron2.checkpoint import DetectionCheckpointer


class PersonSearchCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with three changes:

    * **atomic writes**: a checkpoint is written to ``<name>.pth.tmp``, flushed to disk and renamed,
      and ``last_checkpoint`` is replaced the same way, so a crash while saving never leaves a
      truncated checkpoint or a ``last_checkpoint`` naming one; ``--resume`` then continues from
      the previous complete checkpoint;
    * **weights-only loading**: ``.pth`` files are read with ``torch.load(weights_only=True)``;
      a file that needs arbitrary unpickling is loaded fully only after a warning that says so
      (detectron2 model-zoo ``.pkl`` files are plain pickles and are always unpickled, which is
      logged);
    * **clear errors**: a ``MODEL.WEIGHTS`` that is missing or cannot be fetched names the path.
    """

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        _atomic_write(save_file, lambda f: torch.save(data, f), binary=True)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, "last_checkpoint")
        _atomic_write(path, lambda f: f.write(last_filename_basename), binary=False)

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
            # detectron2 leaves this set when loading raises, which breaks every later load
            self._parsed_url_during_load = None

    def _load_file(self, filename: str) -> Dict[str, Any]:
        if filename.endswith(".pkl"):
            self.logger.info(
                f"{filename} is a pickle file (detectron2 model-zoo format); it is unpickled, "
                "which cannot be restricted to weights: load only files you trust."
            )
        try:
            loaded = super()._load_file(filename)
        except Exception as e:  # torch/pickle raise many types for damaged files
            raise ValueError(f"Cannot load checkpoint {filename!r}: {type(e).__name__}: {e}") from e
        if not isinstance(loaded.get("model"), dict):
            raise ValueError(
                f"Checkpoint {filename!r} holds no model state dict (found "
                f"{type(loaded.get('model')).__name__} under 'model')"
            )
        return loaded

    def _torch_load(self, f: str) -> Dict[str, Any]:
        try:
            return torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            self.logger.warning(
                f"{f} cannot be loaded with torch.load(weights_only=True) ({e}); loading it with "
                "full unpickling, which can run code stored in the file: load only files you trust."
            )
            return torch.load(f, map_location="cpu", weights_only=False)


def _atomic_write(path: str, write, binary: bool) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb" if binary else "w") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
