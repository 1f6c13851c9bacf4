"""Initialising a person-search model from other detectron2 checkpoints: model-zoo key mapping.

What :class:`~personsearch.checkpoint.PersonSearchCheckpointer` does to a checkpoint's state dict
before detectron2 loads it, as pure functions of (model state dict, checkpoint state dict):

* :func:`expand_shared_keys`: with detectron2's name-matching heuristics (model-zoo ``.pkl`` and
  pycls files), one checkpoint key that is the best match of several model parameters initialises
  all of them (SeqNet's two res5 stages from one ImageNet res5);
* :func:`map_detector_checkpoint`: a detectron2 detector (model-zoo Faster R-CNN R50-C4 / R50-FPN,
  or any ``GeneralizedRCNN`` checkpoint with detectron2's standard heads) mapped with
  :data:`DETECTOR_KEY_RENAMES`, reported in a :class:`DetectorKeyMapping`;
* :func:`reshape_linear_to_conv1x1`: Linear weights into 1x1 convolutions (NAE+ from NAE);
* :func:`prepare_model_state`: the three in the order the checkpointer applies them.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

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


def _arrays_to_tensors(state: Dict[str, Any]) -> Dict[str, Any]:
    """numpy arrays (detectron2 model-zoo pickles) as tensors sharing their memory, before any
    mapping; any other value is refused with fvcore's message (fvcore's loader would refuse it
    too, but only after the mapping had silently dropped it as a shape mismatch)."""
    out = dict(state)
    for k, v in state.items():
        if not isinstance(v, (np.ndarray, torch.Tensor)):
            raise ValueError(f"Unsupported type found in checkpoint! {k}: {type(v)}")
        if isinstance(v, np.ndarray):
            out[k] = torch.from_numpy(v)
    return out


def prepare_model_state(
    model_state: Dict[str, Any], checkpoint: Dict[str, Any], logger=None
) -> Tuple[Dict[str, Any], Optional[DetectorKeyMapping]]:
    """The state dict detectron2 should load for ``checkpoint`` into a model.

    With ``checkpoint["matching_heuristics"]`` (model-zoo ``.pkl``, pycls ``.pyth``, or a ``.pth``
    loaded with ``?matching_heuristics=True``) the shared best matches are expanded
    (:func:`expand_shared_keys`; detectron2's heuristics then do the rest), otherwise a detectron2
    detector checkpoint is mapped (:func:`map_detector_checkpoint`); in both cases 2-D weights of
    1x1 convolutions are reshaped (:func:`reshape_linear_to_conv1x1`).

    Args:
        model_state: the model's state dict (only names and shapes are read).
        checkpoint: the loaded checkpoint dict (``"model"`` and optionally
            ``"matching_heuristics"``); not modified.
        logger: where renamings and reshapes are reported.

    Returns:
        ``(state dict, detector mapping report or None)``.
    """
    state = _arrays_to_tensors(checkpoint["model"])
    mapping = None
    if checkpoint.get("matching_heuristics", False):
        state = expand_shared_keys(list(model_state.keys()), state, logger)
    else:
        state, mapping = map_detector_checkpoint(model_state, state)
        if mapping is not None and logger is not None:
            mapping.log(logger)
    return reshape_linear_to_conv1x1(model_state, state, logger), mapping
