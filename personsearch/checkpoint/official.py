"""Conversion of the official SeqNet and NAE/NAE+ checkpoints into personsearch checkpoints.

Official containers (as saved by the official code): SeqNet's
``train.py`` saves ``{"model", "optimizer", "lr_scheduler", "epoch"}`` (released as
``epoch_19.pth`` / ``epoch_17.pth``), NAE4PS saves the same keys as ``checkpoint.pth``. Both are
torch 1.2 files; only ``"model"`` is used. The file is read with a restricted unpickler that only
rebuilds tensors and a few containers (SeqNet's scheduler state holds a ``collections.Counter``,
which ``torch.load(weights_only=True)`` refuses in torch 2.3), so no code stored in the file runs;
a file that needs more is refused, unless listed in ``PERSONSEARCH_TRUSTED_FILES``
(:mod:`personsearch.utils.serialization`, the project's one loading policy).

Key mapping (official -> personsearch), every official key accounted for:

* torchvision ResNet-50 body ``backbone.{conv1,bn1,layer1..3}`` -> ``backbone.{stem,res2..res4}``
  (``bnK`` -> ``convK.norm``, ``downsample.0/1`` -> ``shortcut``/``shortcut.norm``);
* RPN head ``rpn.head.{conv, cls_logits, bbox_pred}`` (torchvision 0.4 ``conv.*``, newer
  ``conv.0.0.*``) -> ``proposal_generator.rpn_head.{conv, objectness_logits, anchor_deltas}``,
  the anchor channels permuted from torchvision's ratio-major order (a = r * S + s) to
  detectron2's size-major order (a = s * R + r);
* the first res5 ``roi_heads.box_head.layer4`` -> ``roi_heads.feature_head.res5`` (NAE, NAE+) or
  ``roi_heads.box_feature_head.res5`` (SeqNet stage 1); SeqNet's ``roi_heads.reid_head.layer4``
  -> ``roi_heads.feature_head.res5`` (stage 2);
* SeqNet's ``roi_heads.faster_rcnn_predictor``: ``cls_score`` rows (background, person) ->
  detectron2's (person, background); ``bbox_pred`` person rows 4:8 -> ``box_predictor.bbox_pred``;
* ``roi_heads.box_predictor.bbox_pred.{0,1}`` (Linear(2048, 8) + BN1d(8)) person rows 4:8 ->
  ``roi_heads.box_regressor.{linear,norm}`` (BatchNorm is per channel: same function);
* ``roi_heads.embedding_head.projectors.feat_res{4,5}.{0,1}`` -> ``roi_heads.reid_head.
  projectors.res{4,5}.{0,1}``, ``rescaler`` -> ``reid_head.rescaler``;
* OIM ``roi_heads.reid_loss.{lut, cq}`` -> ``roi_heads.reid_loss.{lut, queue}`` when the sizes fit
  the target config (CUHK-SYSU); PRW's 482-row tables use the raw-id rows of the official codes and
  are remapped to our 483 contiguous ids when the raw ids are known (``raw_person_ids``), otherwise
  left out (they are only needed to continue training). ``queue_head`` (a Python int there) is 0.

Deliberately not converted, and reported: the background rows of the class-specific regressors
(never used by the official models, in training or test) and NAE's ``box_predictor.cls_score``
(built, never called).
"""

import collections
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from personsearch.utils.serialization import load_torch_file, unsafe_globals

SOURCES = ("seqnet", "nae", "nae+")
NUM_ANCHOR_SIZES, NUM_ANCHOR_RATIOS = 5, 3


class ConversionError(ValueError):
    """An official checkpoint that cannot be converted (the message names the keys)."""


# ---- reading the file without running stored code ----

# what the official files reference: tensors, storages and a few plain containers
_ALLOWED = (
    ("collections", "OrderedDict"),
    ("collections", "Counter"),
    ("collections", "defaultdict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "FloatStorage"),
    ("torch", "DoubleStorage"),
    ("torch", "HalfStorage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "ByteStorage"),
    ("torch", "BoolStorage"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch", "float32"),
    ("torch", "int64"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("_codecs", "encode"),
    ("torch.storage", "_load_from_bytes"),
)
_ALLOWED_GLOBALS = frozenset(f"{module}.{name}" for module, name in _ALLOWED)


def load_official_state_dict(path: str) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """The ``"model"`` state dict of an official checkpoint.

    Args:
        path: an official ``epoch_*.pth`` / ``checkpoint.pth`` (or a bare state dict).

    Returns:
        ``(state_dict, notes)``: the tensors and what was done to read the file.

    Raises:
        ConversionError: unreadable, not a checkpoint, or it needs classes outside the allow-list.
    """
    notes = []
    try:
        ckpt = load_torch_file(path, "official checkpoint", allowed_globals=_ALLOWED_GLOBALS)
    except Exception as e:  # refused (UntrustedFileError), damaged, missing: say which file
        raise ConversionError(f"Cannot read {path!r} as a checkpoint: {e}") from e
    if unsafe_globals(path, _ALLOWED_GLOBALS):
        notes.append("fully unpickled (listed in PERSONSEARCH_TRUSTED_FILES)")
    else:
        notes.append(
            "read with a restricted unpickler (tensors and plain containers such as the "
            "scheduler's collections.Counter; no other code can run)"
        )
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        skipped = sorted(k for k in ckpt if k != "model")
        if skipped:
            notes.append(f"used 'model'; not needed for conversion: {skipped}")
        state = ckpt["model"]
    elif (
        isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values())
    ):
        notes.append("the file is a bare state dict")
        state = ckpt
    else:
        what = type(ckpt).__name__
        if isinstance(ckpt, dict):
            what += f" with keys {sorted(map(str, ckpt))[:8]}"
        raise ConversionError(
            f"{path!r} is not an official SeqNet/NAE checkpoint (a dict with a 'model' state "
            f"dict); it holds a {what}"
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"{path!r}: 'model' entries that are not tensors: {bad[:10]}")
    # DataParallel / DDP checkpoints prefix every key with "module."
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
        notes.append("removed the 'module.' prefix of a (Distributed)DataParallel checkpoint")
    return dict(state), notes


# ---- key mapping ----


def _resnet_block_key(rest: str) -> str:
    """``0.bn1.weight`` -> ``0.conv1.norm.weight``, ``0.downsample.1.x`` -> ``0.shortcut.norm.x``
    (torchvision block names to detectron2's)."""
    m = re.fullmatch(r"(\d+)\.(conv\d|bn\d|downsample\.[01])\.(\w+)", rest)
    if not m:
        raise KeyError(rest)
    block, layer, param = m.groups()
    if layer.startswith("conv"):
        return f"{block}.{layer}.{param}"
    if layer.startswith("bn"):
        return f"{block}.conv{layer[2:]}.norm.{param}"
    return f"{block}.shortcut.{param}" if layer.endswith("0") else f"{block}.shortcut.norm.{param}"


def _anchor_permutation(values_per_anchor: int) -> torch.Tensor:
    """Indices that reorder torchvision's anchor channels (ratio-major) into detectron2's
    (size-major): detectron2 channel block d = s * R + r takes torchvision block r * S + s."""
    order = [
        r * NUM_ANCHOR_SIZES + s for s in range(NUM_ANCHOR_SIZES) for r in range(NUM_ANCHOR_RATIOS)
    ]
    idx = torch.tensor(order)
    return (idx[:, None] * values_per_anchor + torch.arange(values_per_anchor)[None]).reshape(-1)


@dataclass
class ConversionReport:
    """What went where (one line per group of keys), what was left out and why."""

    mapped: List[Tuple[str, str, str]] = field(default_factory=list)  # (official, ours, note)
    unused: List[Tuple[str, str]] = field(default_factory=list)  # (official key, reason)
    defaults: List[Tuple[str, str]] = field(default_factory=list)  # (our key, reason)
    notes: List[str] = field(default_factory=list)

    def lines(self) -> List[str]:
        """Human-readable report: keys grouped by module prefix."""
        out = list(self.notes)
        groups: Dict[Tuple[str, str, str], int] = collections.OrderedDict()
        for src, dst, note in self.mapped:
            key = (_prefix(src), _prefix(dst), note)
            groups[key] = groups.get(key, 0) + 1
        out.append(f"converted {len(self.mapped)} tensors:")
        out += [
            f"  {s}* -> {d}*  ({n} tensors{'; ' + note if note else ''})"
            for (s, d, note), n in groups.items()
        ]
        if self.unused:
            out.append(f"not converted ({len(self.unused)}), deliberately:")
            out += [f"  {k}: {why}" for k, why in self.unused]
        if self.defaults:
            out.append(f"left at their initial values ({len(self.defaults)}):")
            out += [f"  {k}: {why}" for k, why in self.defaults]
        return out


def _summary(keys: List[str]) -> str:
    """Keys grouped by module: ``'a.b.* (12 keys), c.d (1 key)'``, every key accounted for."""
    groups: Dict[str, int] = collections.OrderedDict()
    for k in keys:
        groups[_prefix(k)] = groups.get(_prefix(k), 0) + 1
    return ", ".join(f"{p}* ({n} key{'s' * (n > 1)})" for p, n in groups.items())


def _prefix(key: str) -> str:
    parts = key.split(".")
    # group by module: drop the parameter name and block indices of res stages
    keep = []
    for p in parts[:-1]:
        keep.append(p)
        if p in ("layer1", "layer2", "layer3", "layer4", "res2", "res3", "res4", "res5"):
            break
    return ".".join(keep) + "."


def convert_official_state_dict(
    state: Dict[str, torch.Tensor],
    source: str,
    target_keys: Dict[str, Tuple[int, ...]],
    raw_person_ids: Optional[Sequence[int]] = None,
) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """Map an official state dict onto a personsearch model.

    Args:
        state: the official ``"model"`` state dict.
        source: "seqnet", "nae" or "nae+".
        target_keys: ``{key: shape}`` of the target model's state dict (the converted config).
        raw_person_ids: for PRW, the raw PRW id of each of our training person ids
            (``prw_raw_person_ids(root, "train")``), used to remap the 482-row official lookup
            table; None leaves it out when its size does not fit.

    Returns:
        ``(converted state dict, report)``.

    Raises:
        ConversionError: naming every official key that maps nowhere, every target key left
            without a value (other than the reported ones) and every shape that differs.
    """
    if source not in SOURCES:
        raise ConversionError(f"--from must be one of {SOURCES}, got {source!r}")
    report = ConversionReport()
    out: Dict[str, torch.Tensor] = {}
    unmapped: List[str] = []
    first_res5 = (
        "roi_heads.box_feature_head.res5" if source == "seqnet" else "roi_heads.feature_head.res5"
    )
    person_rows = slice(4, 8)

    def put(src: str, dst: str, value: torch.Tensor, note: str = "") -> None:
        out[dst] = value.clone()
        report.mapped.append((src, dst, note))

    oim_tables = {}
    for k, v in state.items():
        try:
            if k.startswith("backbone."):
                rest = k[len("backbone.") :]
                if rest.startswith("conv1."):
                    put(k, "backbone.stem.conv1." + rest[len("conv1.") :], v)
                elif rest.startswith("bn1."):
                    put(k, "backbone.stem.conv1.norm." + rest[len("bn1.") :], v)
                else:
                    m = re.fullmatch(r"layer([123])\.(.*)", rest)
                    if not m:
                        raise KeyError(k)
                    stage = int(m.group(1)) + 1
                    put(k, f"backbone.res{stage}." + _resnet_block_key(m.group(2)), v)
            elif k.startswith("rpn.head."):
                rest = k[len("rpn.head.") :]
                m = re.fullmatch(r"conv(?:\.0\.0)?\.(weight|bias)", rest)
                if m:
                    put(k, f"proposal_generator.rpn_head.conv.{m.group(1)}", v)
                elif rest.startswith("cls_logits."):
                    param = rest.split(".")[-1]
                    put(k, f"proposal_generator.rpn_head.objectness_logits.{param}",
                        v[_anchor_permutation(1)], "anchors reordered size-major")  # fmt: skip
                elif rest.startswith("bbox_pred."):
                    param = rest.split(".")[-1]
                    put(k, f"proposal_generator.rpn_head.anchor_deltas.{param}",
                        v[_anchor_permutation(4)], "anchors reordered size-major")  # fmt: skip
                else:
                    raise KeyError(k)
            elif k.startswith("roi_heads.box_head.layer4."):
                put(
                    k,
                    f"{first_res5}." + _resnet_block_key(k[len("roi_heads.box_head.layer4.") :]),
                    v,
                )
            elif k.startswith("roi_heads.reid_head.layer4.") and source == "seqnet":
                rest = k[len("roi_heads.reid_head.layer4.") :]
                put(k, "roi_heads.feature_head.res5." + _resnet_block_key(rest), v)
            elif k.startswith("roi_heads.faster_rcnn_predictor.") and source == "seqnet":
                rest = k[len("roi_heads.faster_rcnn_predictor.") :]
                if rest.startswith("cls_score."):
                    put(k, "roi_heads.box_predictor." + rest, v[[1, 0]],
                        "classes reordered (person, background)")  # fmt: skip
                elif rest.startswith("bbox_pred."):
                    put(k, "roi_heads.box_predictor." + rest, v[person_rows], "person rows 4:8")
                    report.unused.append((k + "[0:4]", "background rows, unused by SeqNet"))
                else:
                    raise KeyError(k)
            elif k.startswith("roi_heads.box_predictor.bbox_pred."):
                rest = k[len("roi_heads.box_predictor.bbox_pred.") :]
                layer, param = rest.split(".", 1)
                dst = "roi_heads.box_regressor." + ("linear." if layer == "0" else "norm.") + param
                if v.dim() == 0:
                    put(k, dst, v)
                else:
                    put(k, dst, v[person_rows], "person rows 4:8")
                    report.unused.append((k + "[0:4]", "background rows, never used"))
            elif k.startswith("roi_heads.box_predictor.cls_score.") and source != "seqnet":
                report.unused.append((k, "NAE's CoordRegressor.cls_score: built, never called"))
            elif k.startswith("roi_heads.embedding_head."):
                rest = k[len("roi_heads.embedding_head.") :]
                m = re.fullmatch(r"projectors\.feat_(res[45])\.([01])\.(\w+)", rest)
                if m:
                    put(
                        k,
                        f"roi_heads.reid_head.projectors.{m.group(1)}.{m.group(2)}.{m.group(3)}",
                        v,
                    )
                elif rest.startswith("rescaler."):
                    put(k, "roi_heads.reid_head." + rest, v)
                else:
                    raise KeyError(k)
            elif k in ("roi_heads.reid_loss.lut", "roi_heads.reid_loss.cq"):
                oim_tables[k.split(".")[-1]] = v
            else:
                raise KeyError(k)
        except KeyError:
            unmapped.append(k)
    if unmapped:
        raise ConversionError(
            f"{len(unmapped)} official keys have no place in a personsearch {source} model "
            f"(is --from right?): {_summary(unmapped)}"
        )
    _convert_oim(oim_tables, target_keys, raw_person_ids, source, out, report)

    missing = sorted(k for k in target_keys if k not in out)
    allowed_missing = {"roi_heads.reid_loss.queue_head"} | {k for k, _ in report.defaults}
    not_filled = [k for k in missing if k not in allowed_missing]
    if not_filled:
        raise ConversionError(
            f"{len(not_filled)} keys of the target model get no official value (wrong --from or "
            f"--config-file?): {_summary(not_filled)}"
        )
    if "roi_heads.reid_loss.queue_head" in target_keys:
        report.defaults.append(("roi_heads.reid_loss.queue_head", "not saved by the official code"))
    extra = sorted(k for k in out if k not in target_keys)
    if extra:
        raise ConversionError(
            f"{len(extra)} converted keys do not exist in the target model (wrong --from or "
            f"--config-file?): {extra[:20]}"
        )
    wrong = [
        f"{k}: official {tuple(out[k].shape)} vs model {tuple(target_keys[k])}"
        for k in out
        if tuple(out[k].shape) != tuple(target_keys[k])
        and not (len(target_keys[k]) == 4 and tuple(out[k].shape) == tuple(target_keys[k][:2]))
    ]
    if wrong:
        raise ConversionError(f"{len(wrong)} shapes differ: {wrong[:20]}")
    for k in list(out):  # NAE+ stores 1x1 convs; NAE Linear layers into them would be reshaped
        if out[k].dim() == 2 and len(target_keys[k]) == 4:
            out[k] = out[k].reshape(target_keys[k])
    return out, report


def _convert_oim(tables, target_keys, raw_person_ids, source, out, report) -> None:
    lut, cq = tables.get("lut"), tables.get("cq")
    if lut is None or cq is None:
        for key in ("roi_heads.reid_loss.lut", "roi_heads.reid_loss.queue"):
            report.defaults.append((key, "not in the official file"))
        return
    want_lut = target_keys.get("roi_heads.reid_loss.lut")
    want_cq = target_keys.get("roi_heads.reid_loss.queue")
    if want_lut is not None and tuple(lut.shape) == tuple(want_lut):
        out["roi_heads.reid_loss.lut"] = lut.clone()
        report.mapped.append(("roi_heads.reid_loss.lut", "roi_heads.reid_loss.lut", ""))
    elif want_lut is not None and raw_person_ids is not None and len(raw_person_ids) == want_lut[0]:
        # the official label of raw PRW id p: SeqNet p - 1 (raw ids kept), NAE p (raw + 1, - 1)
        new = torch.zeros(want_lut, dtype=lut.dtype)
        filled = 0
        for ours, raw in enumerate(raw_person_ids):
            row = raw - 1 if source == "seqnet" else raw
            if 0 <= row < lut.shape[0]:
                new[ours] = lut[row]
                filled += 1
        out["roi_heads.reid_loss.lut"] = new
        report.mapped.append(
            ("roi_heads.reid_loss.lut", "roi_heads.reid_loss.lut",
             f"rows from raw PRW ids, {filled} of {len(raw_person_ids)} filled")  # fmt: skip
        )
    else:
        report.defaults.append(
            ("roi_heads.reid_loss.lut",
             f"official table {tuple(lut.shape)} does not fit the config's {want_lut} (for PRW "
             "pass --prw-root to remap it); only needed to continue training")  # fmt: skip
        )
    if want_cq is not None and tuple(cq.shape) == tuple(want_cq):
        out["roi_heads.reid_loss.queue"] = cq.clone()
        report.mapped.append(("roi_heads.reid_loss.cq", "roi_heads.reid_loss.queue", ""))
    else:
        report.defaults.append(
            ("roi_heads.reid_loss.queue",
             f"official queue {tuple(cq.shape)} does not fit the config's {want_cq}")  # fmt: skip
        )
