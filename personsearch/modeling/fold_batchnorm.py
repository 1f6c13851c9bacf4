"""BatchNorm folded into the convolution or linear layer before it (inference only).

In eval mode a BatchNorm layer is the per-channel affine map ``y = s * (x - mean) + beta`` with
``s = gamma / sqrt(var + eps)``. Applied to ``x = W z + b`` it gives ``y = (s W) z + s (b - mean) +
beta``: one layer with weight ``s W`` and bias ``s (b - mean) + beta`` computes the same function
without the BatchNorm pass over the activations (on the CPU a separate pass over every feature map
of the ResNet; on a GPU one kernel launch and one read/write of the map each). The folded weights
are computed in float64 and stored in the layer's dtype, so a folded model equals the original up to
float rounding (``tests/modeling/test_fold_batchnorm.py``).

What is folded (every pair whose BatchNorm is a ``torch.nn`` BatchNorm in eval mode, a
``SyncBatchNorm`` subclass of it, or detectron2's ``FrozenBatchNorm2d``):

* detectron2 ``Conv2d`` layers with a ``norm`` (the whole ResNet body and res5 heads, FPN levels
  with a norm): the norm is removed (``conv.norm = None``) and the conv gets a bias;
* consecutive ``(nn.Conv2d, BatchNorm2d)`` and ``(nn.Linear, BatchNorm1d)`` inside an
  ``nn.Sequential`` (NAE's and NAE+'s projectors, UGAS's SFM level heads and projection): the
  BatchNorm becomes ``nn.Identity``;
* pairs a module declares in a ``FOLDABLE_PAIRS`` class attribute, ``(("linear", "norm"),)``
  for ``forward = norm(linear(x))`` (the NAE box regressor, the OIM embedding projection).

A BatchNorm that acts on something other than a layer's output (NAE's norm rescaler) is left as it
is. Folding is for inference only: a folded model refuses to run in training mode (the BatchNorm
layers that training updates are gone).
"""

from typing import Optional, Tuple

import torch
from detectron2.layers import Conv2d as D2Conv2d
from detectron2.layers import FrozenBatchNorm2d
from torch import nn

__all__ = ["fold_batchnorm", "is_folded", "FOLDED_ATTR"]

# attribute set on a model whose BatchNorm layers were folded (its value: the number of pairs)
FOLDED_ATTR = "_personsearch_folded_batchnorm"


def _bn_affine(bn: nn.Module) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """``(scale, shift)`` in float64 with ``bn(x) == scale * x + shift`` per channel, or None for a
    layer that is not a foldable BatchNorm (training mode, no running statistics)."""
    if isinstance(bn, FrozenBatchNorm2d):
        weight, bias, eps = bn.weight, bn.bias, bn.eps
    elif isinstance(bn, nn.modules.batchnorm._BatchNorm):
        if bn.training or not bn.track_running_stats or bn.running_var is None:
            return None
        weight = bn.weight if bn.affine else torch.ones_like(bn.running_var)
        bias = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        eps = bn.eps
    else:
        return None
    scale = weight.double() / (bn.running_var.double() + eps).sqrt()
    shift = bias.double() - bn.running_mean.double() * scale
    return scale, shift


@torch.no_grad()
def _fold_into(layer: nn.Module, bn: nn.Module) -> bool:
    """Fold ``bn`` into ``layer`` (a Conv2d or Linear whose output it normalises); False (and
    nothing changed) if the pair cannot be folded."""
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        return False
    affine = _bn_affine(bn)
    if affine is None or affine[0].numel() != layer.weight.shape[0]:
        return False
    scale, shift = affine
    weight = layer.weight
    shape = (-1,) + (1,) * (weight.dim() - 1)
    new_weight = weight.double() * scale.reshape(shape)
    old_bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(scale)
    new_bias = old_bias * scale + shift
    layer.weight = nn.Parameter(
        new_weight.to(weight.dtype).contiguous(memory_format=_memory_format(weight)),
        requires_grad=weight.requires_grad,
    )
    layer.bias = nn.Parameter(new_bias.to(weight.dtype), requires_grad=weight.requires_grad)
    return True


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def is_folded(model: nn.Module) -> bool:
    """Whether :func:`fold_batchnorm` was applied to ``model``."""
    return bool(getattr(model, FOLDED_ATTR, 0))


def _refuse_training(module: nn.Module, inputs) -> None:
    if module.training:
        raise RuntimeError(
            f"{type(module).__name__}: its BatchNorm layers were folded for inference "
            "(fold_batchnorm / TEST.OPTIMIZE.FOLD_BATCHNORM); it cannot be trained. Build the "
            "model again to train it."
        )


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every foldable BatchNorm of ``model`` into the layer before it, in place.

    Args:
        model: a model in eval mode (BatchNorm layers in training mode are left unfolded).

    Returns:
        The number of folded pairs. ``model`` (the root) then refuses to run in training mode.

    Raises:
        RuntimeError: ``model`` is in training mode.
    """
    if model.training:
        raise RuntimeError(
            f"fold_batchnorm: {type(model).__name__} is in training mode; call model.eval() first "
            "(folding is for inference only)"
        )
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, D2Conv2d) and module.norm is not None:
            if _fold_into(module, module.norm):
                module.norm = None
                folded += 1
        if isinstance(module, nn.Sequential):
            children = list(module._modules.items())
            for (_, layer), (name, bn) in zip(children, children[1:]):
                if layer is None or bn is None:
                    continue
                if isinstance(layer, D2Conv2d) and (layer.norm is not None or layer.activation):
                    continue  # its own norm/activation come between the conv and ``bn``
                if _fold_into(layer, bn):
                    module._modules[name] = nn.Identity()
                    folded += 1
        for layer_name, norm_name in getattr(type(module), "FOLDABLE_PAIRS", ()):
            layer, bn = getattr(module, layer_name), getattr(module, norm_name)
            if not isinstance(bn, nn.Identity) and _fold_into(layer, bn):
                setattr(module, norm_name, nn.Identity())
                folded += 1
    if folded and not is_folded(model):
        model.register_forward_pre_hook(_refuse_training)
    setattr(model, FOLDED_ATTR, getattr(model, FOLDED_ATTR, 0) + folded)
    return folded
