"""Checkpointing that survives crashes and loads outside checkpoints as safely as possible."""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer

from personsearch.utils.serialization import (
    FileReadError,
    UntrustedFileError,
    check_saved_types,
    load_pickle_file,
    load_torch_file,
)

# Where the modules of detectron2's standard detectors (a model-zoo ``model_final_*.pkl`` holds
# their full state-dict names) live in personsearch models, for the checkpoint keys the model
# does not have under the same name: prefix in the file -> prefixes in the model, in order of
# preference; a key goes to every one of them that exists (SeqNet has two res5 stages).
DETECTOR_KEY_RENAMES: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    # Res5ROIHeads (R50-C4): the res5 stage of every C4 head (SeqNet: stage 1 and stage 2)
    ("roi_heads.res5.", ("roi_heads.feature_head.res5.", "roi_heads.box_feature_head.res5.")),
    # StandardROIHeads (R50-FPN): the FastRCNNConvFCHead inside the FPN heads' feature head
    ("roi_heads.box_head.", ("roi_heads.feature_head.box_head.",)),
    # a C4 body (backbone.res2...) into the body of an FPN-style backbone (backbone.bottom_up.*)
    ("backbone.", ("backbone.bottom_up.",)),
)


class PersonSearchCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with these changes:

    * **atomic writes**: a checkpoint is written to ``<name>.pth.tmp``, flushed to disk and renamed,
      and ``last_checkpoint`` is replaced the same way, so a crash while saving never leaves a
      truncated checkpoint or a ``last_checkpoint`` naming one; ``--resume`` then continues from
      the previous complete checkpoint;
    * **weights-only loading** (:mod:`personsearch.utils.serialization`): ``.pth``/``.pyth``
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
      its keys and mapped with :data:`DETECTOR_KEY_RENAMES` (:func:`map_detector_checkpoint`), so
      the backbone, the RPN and every res5 stage (or the FPN box head) are initialised from it;
      the matched and skipped keys (e.g. the 81-class predictor) are logged and kept in
      :attr:`detector_mapping`.
    """

    #: the :class:`DetectorKeyMapping` of the last load of a detectron2 detector file, else None
    detector_mapping: Optional["DetectorKeyMapping"] = None

    def _load_model(self, checkpoint: Dict[str, Any]):
        self.detector_mapping = None
        if checkpoint.get("matching_heuristics", False):
            self._convert_ndarray_to_tensor(checkpoint["model"])
            checkpoint["model"] = expand_shared_keys(
                list(self.model.state_dict().keys()), checkpoint["model"], self.logger
            )
        else:
            self._convert_ndarray_to_tensor(checkpoint["model"])
            checkpoint["model"], mapping = map_detector_checkpoint(
                self.model.state_dict(), checkpoint["model"]
            )
            if mapping is not None:
                self.detector_mapping = mapping
                mapping.log(self.logger)
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
        check_saved_types(data, f"checkpoint {save_file!r}")
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
        try:
            if filename.endswith(".pkl"):
                loaded = _model_zoo_checkpoint(load_pickle_file(filename, "checkpoint"), filename)
                self.logger.info(f"Reading a file from {loaded['__author__']!r}")
            elif filename.endswith(".pyth"):
                loaded = _pycls_checkpoint(load_torch_file(filename, "checkpoint"), filename)
            else:  # detectron2's handling of .pth (URL queries), reading with _torch_load
                loaded = super()._load_file(filename)
        except (UntrustedFileError, FileReadError, FileNotFoundError):
            raise  # these name the file already
        except Exception as e:  # torch/pickle raise many types for damaged files
            raise ValueError(f"Cannot load checkpoint {filename!r}: {type(e).__name__}: {e}") from e
        if not isinstance(loaded.get("model"), dict):
            raise ValueError(
                f"Checkpoint {filename!r} holds no model state dict (found "
                f"{type(loaded.get('model')).__name__} under 'model')"
            )
        return loaded

    def _torch_load(self, f: str) -> Dict[str, Any]:
        loaded = load_torch_file(f, "checkpoint")
        if not isinstance(loaded, dict):
            raise FileReadError(f"Checkpoint {f!r} holds a {type(loaded).__name__}, not a dict")
        return loaded


def _model_zoo_checkpoint(data: Any, filename: str) -> Dict[str, Any]:
    """The checkpoint dict of a detectron2 model-zoo pickle: ``{"model", "__author__", ...}`` as
    it is; a Caffe2/Detectron1 file (its weights at the top level, or under ``"blobs"`` for
    detectors) becomes ``{"model": weights without the "_momentum" entries}``, loaded with
    detectron2's name-matching heuristics."""
    if not isinstance(data, dict):
        raise FileReadError(
            f"{filename!r}: a model-zoo pickle holds a dict, not a {type(data).__name__}"
        )
    if "model" in data and "__author__" in data:
        return data
    blobs = data.get("blobs", data)
    weights = {k: v for k, v in blobs.items() if not str(k).endswith("_momentum")}
    return {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}


def _pycls_checkpoint(data: Any, filename: str) -> Dict[str, Any]:
    """The checkpoint dict of a pycls ``.pyth`` file (its weights under ``"model_state"``)."""
    if not isinstance(data, dict) or "model_state" not in data:
        raise FileReadError(f"{filename!r}: a pycls .pyth checkpoint holds a 'model_state' dict")
    state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
    return {"model": state, "__author__": "pycls", "matching_heuristics": True}


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


@dataclass
class DetectorKeyMapping:
    """How the keys of a detectron2 detector checkpoint were given to a model.

    Attributes:
        matched: checkpoint key -> the model keys it initialises (one, or several copies).
        renamed: the :data:`DETECTOR_KEY_RENAMES` rules used, ``"file prefix -> model prefix"``
            -> number of checkpoint keys.
        shape_mismatch: ``(checkpoint key, model key, checkpoint shape, model shape)`` of the keys
            skipped because the shapes differ (e.g. an 81-class predictor for a 1-class head).
        unused: checkpoint keys with no counterpart in the model, skipped.
        not_initialised: model keys that received nothing (new layers: re-ID head, OIM memories,
            ...; ``num_batches_tracked`` counters left out).
    """

    matched: Dict[str, List[str]] = field(default_factory=dict)
    renamed: Dict[str, int] = field(default_factory=dict)
    shape_mismatch: List[Tuple[str, str, Tuple[int, ...], Tuple[int, ...]]] = field(
        default_factory=list
    )
    unused: List[str] = field(default_factory=list)
    not_initialised: List[str] = field(default_factory=list)

    @property
    def skipped(self) -> List[str]:
        """Every checkpoint key that was not loaded (shape mismatch or unused), sorted."""
        return sorted({k for k, *_ in self.shape_mismatch} | set(self.unused))

    def summary(self) -> str:
        """A readable report: counts, the renaming rules used and every skipped key."""
        copies = sum(len(v) for v in self.matched.values())
        lines = [
            f"detectron2 detector checkpoint: {len(self.matched)} keys matched, loaded into "
            f"{copies} model tensors; {len(self.skipped)} keys skipped; "
            f"{len(self.not_initialised)} model tensors not in the checkpoint (new layers)."
        ]
        lines += [f"  renamed {rule} ({n} keys)" for rule, n in sorted(self.renamed.items())]
        lines += [
            f"  skipped {k}: shape {tuple(a)} in the checkpoint, {tuple(b)} for {m} in the model"
            for k, m, a, b in self.shape_mismatch
        ]
        lines += [f"  skipped {k}: no such parameter or buffer in the model" for k in self.unused]
        return "\n".join(lines)

    def log(self, logger) -> None:
        (logger.warning if self.skipped else logger.info)(self.summary())


def _rename_targets(key: str, model_keys, renames) -> Tuple[List[str], Optional[str]]:
    """The model keys a checkpoint key goes to, and the rule used (None: same name)."""
    if key in model_keys:
        return [key], None
    for prefix, targets in renames:
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            found = [t + rest for t in targets if t + rest in model_keys]
            if found:
                return found, f"{prefix}* -> {', '.join(t + '*' for t in targets)}"
    return [], None


def map_detector_checkpoint(
    model_state: Dict[str, Any],
    ckpt: Dict[str, Any],
    renames: Sequence[Tuple[str, Sequence[str]]] = DETECTOR_KEY_RENAMES,
) -> Tuple[Dict[str, Any], Optional[DetectorKeyMapping]]:
    """Map a detectron2 detector's state dict (full names such as ``roi_heads.res5.0.conv1.weight``)
    onto a person-search model.

    Applied when at least one checkpoint key is absent from the model but a ``renames`` rule maps
    it to existing model keys (a detectron2 ``Res5ROIHeads``/``StandardROIHeads`` checkpoint into
    a person-search head); other checkpoints are returned unchanged. Keys present in the model
    under their own name load as they are; renamed keys load into every existing target (each its
    own copy); keys whose shape differs from the model's, and keys with no counterpart, are left
    out and reported instead of failing the load.

    Args:
        model_state: the model's state dict (only names and shapes are read).
        ckpt: the checkpoint's state dict (tensors).
        renames: ``(checkpoint prefix, model prefixes)`` rules, first matching rule wins.

    Returns:
        ``(state dict to load, mapping report)``, or ``(ckpt, None)`` if no rule applies.
    """
    model_keys = set(model_state)
    if not any(k not in model_keys and _rename_targets(k, model_keys, renames)[0] for k in ckpt):
        return ckpt, None
    report = DetectorKeyMapping()
    out: Dict[str, Any] = {}
    for key, value in ckpt.items():
        targets, rule = _rename_targets(key, model_keys, renames)
        if not targets:
            report.unused.append(key)
            continue
        loaded = []
        for t in targets:
            want = tuple(model_state[t].shape) if hasattr(model_state[t], "shape") else None
            have = tuple(value.shape) if hasattr(value, "shape") else None
            if want != have:
                report.shape_mismatch.append((key, t, have, want))
                continue
            out[t] = value.clone() if loaded and hasattr(value, "clone") else value
            loaded.append(t)
        if loaded:
            report.matched[key] = loaded
            if rule is not None:
                report.renamed[rule] = report.renamed.get(rule, 0) + 1
    report.not_initialised = sorted(
        k for k in model_keys if k not in out and not k.endswith("num_batches_tracked")
    )
    return out, report


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
