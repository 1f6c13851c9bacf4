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
    * **clear errors**: a ``MODEL.WEIGHTS`` that is missing or cannot be fetched names the path;
    * **one pretrained weight, several copies**: with detectron2's name-matching heuristics (model
      zoo ``.pkl`` files), a checkpoint key that is the best match of several model parameters
      initialises all of them (SeqNet's two res5 stages both start from ImageNet res5; detectron2
      would stop with "Cannot match one checkpoint key to multiple keys"); each such key is logged;
    * **Linear -> 1x1 conv**: a 2-D weight (O, I) in the checkpoint whose model parameter is a 1x1
      convolution (O, I, 1, 1) is reshaped into it (logged). This is how NAE+ starts from a
      trained NAE, as the reference does: ``MODEL.WEIGHTS`` = the NAE checkpoint, every other
      weight has the same shape.
    """

    def _load_model(self, checkpoint: Dict[str, Any]):
        if checkpoint.get("matching_heuristics", False):
            self._convert_ndarray_to_tensor(checkpoint["model"])
            checkpoint["model"] = expand_shared_keys(
                list(self.model.state_dict().keys()), checkpoint["model"], self.logger
            )
        checkpoint["model"] = reshape_linear_to_conv1x1(
            self.model.state_dict(), checkpoint["model"], self.logger
        )
        return super()._load_model(checkpoint)

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


def expand_shared_keys(model_keys, ckpt: Dict[str, Any], logger=None) -> Dict[str, Any]:
    """Give every model parameter whose best name match (detectron2's rule: the longest checkpoint
    key that is a complete dotted suffix of the model key) is shared with other parameters its own
    copy of that checkpoint entry, under the model key's full name.

    Args:
        model_keys: the model's state-dict keys.
        ckpt: checkpoint state dict (possibly with short names such as ``res5.0.conv1.weight``).
        logger: where the expansions are reported.

    Returns:
        A new dict; checkpoint keys matched by a single parameter (or none) are unchanged.
    """
    by_suffix: Dict[str, list] = {}
    for m in model_keys:
        parts = m.split(".")
        best = None
        for i in range(len(parts)):  # longest suffix first
            suffix = ".".join(parts[i:])
            if suffix in ckpt:
                best = suffix
                break
        if best is not None:
            by_suffix.setdefault(best, []).append(m)
    out = dict(ckpt)
    shared = {k: v for k, v in by_suffix.items() if len(v) > 1}
    for key, targets in shared.items():
        value = out.pop(key)
        for t in targets:
            out[t] = value.clone() if hasattr(value, "clone") else value
    if shared and logger is not None:
        prefixes = sorted({t[: -len(k)] for k, ts in shared.items() for t in ts})
        logger.info(
            f"{len(shared)} checkpoint weights each initialise several model copies "
            f"(under {', '.join(p.rstrip('.') or '<root>' for p in prefixes)})"
        )
    return out


def reshape_linear_to_conv1x1(model_state: Dict[str, Any], ckpt: Dict[str, Any], logger=None):
    """Reshape checkpoint weights (O, I) whose model counterpart is a 1x1 conv weight (O, I, 1, 1).

    Args:
        model_state: the model's state dict (only shapes are read).
        ckpt: the checkpoint's state dict (tensors, or arrays of detectron2 pickles).

    Returns:
        A new dict with the reshaped entries; everything else unchanged.
    """
    out = dict(ckpt)
    changed = []
    for k, v in ckpt.items():
        target = model_state.get(k)
        if target is None or not hasattr(v, "shape") or len(v.shape) != 2:
            continue
        if tuple(target.shape) == tuple(v.shape) + (1, 1):
            out[k] = torch.as_tensor(v).reshape(target.shape)
            changed.append(k)
    if changed and logger is not None:
        logger.info(
            f"Loaded {len(changed)} linear weights into 1x1 convolutions: {', '.join(changed)}"
        )
    return out


def _atomic_write(path: str, write, binary: bool) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb" if binary else "w") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
