"""ResNet body (stem..res4) for C4 person search, and the res5 stage used as the RoI head.

Detectron2's ``build_resnet_backbone`` is reused through its building blocks; this builder adds
what person search needs:

* ``MODEL.RESNETS.DEPTH: 10`` (one BasicBlock per stage) and basic-block networks of any width
  (detectron2 forces ``RES2_OUT_CHANNELS = 64`` for R18/R34), so that a narrow network trains on a
  CPU in minutes;
* the official NAE/SeqNet freezing: with ``FREEZE_AT: 1`` the stem's parameters are frozen while
  its BatchNorm keeps updating running statistics (``MODEL.RESNETS.STEM_NORM_TRACK_STATS``);
* :func:`build_res5_stage`, which builds res5 with exactly the same rules so that the RoI head
  continues the body and loads the same pretrained weights (module names ``res5.<block>.*``).
"""

from typing import Dict, List

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import (
    BasicBlock,
    BasicStem,
    BottleneckBlock,
    ResNet,
)
from torch import nn

# blocks per stage res2..res5
_NUM_BLOCKS = {
    10: [1, 1, 1, 1],
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}
_BASIC_DEPTHS = (10, 18, 34)
_OUT_FEATURES = ("stem", "res2", "res3", "res4", "res5")


def resnet_stage_kwargs(cfg, stage: int) -> Dict:
    """Arguments of ``ResNet.make_stage`` for one stage (2..5), from ``cfg.MODEL.RESNETS``.

    Channel widths double at every stage starting from ``RES2_OUT_CHANNELS`` (the stem output feeds
    res2). Bottleneck widths start at ``NUM_GROUPS * WIDTH_PER_GROUP``. The first block of
    res3..res5 has stride 2.
    """
    r = cfg.MODEL.RESNETS
    if r.DEPTH not in _NUM_BLOCKS:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH={r.DEPTH} is not supported; use one of {sorted(_NUM_BLOCKS)}"
        )
    if r.RES5_DILATION != 1:
        raise ValueError("MODEL.RESNETS.RES5_DILATION must be 1 for a C4 person-search model")
    idx = stage - 2
    scale = 2**idx
    num_blocks = _NUM_BLOCKS[r.DEPTH][idx]
    in_channels = r.STEM_OUT_CHANNELS if stage == 2 else r.RES2_OUT_CHANNELS * scale // 2
    kwargs = {
        "num_blocks": num_blocks,
        "stride_per_block": [1 if stage == 2 else 2] + [1] * (num_blocks - 1),
        "in_channels": in_channels,
        "out_channels": r.RES2_OUT_CHANNELS * scale,
        "norm": r.NORM,
    }
    if r.DEPTH in _BASIC_DEPTHS:
        if r.NUM_GROUPS != 1:
            raise ValueError("MODEL.RESNETS.NUM_GROUPS must be 1 for basic-block ResNets")
        kwargs["block_class"] = BasicBlock
    else:
        kwargs.update(
            block_class=BottleneckBlock,
            bottleneck_channels=r.NUM_GROUPS * r.WIDTH_PER_GROUP * scale,
            stride_in_1x1=r.STRIDE_IN_1X1,
            num_groups=r.NUM_GROUPS,
            dilation=1,
        )
    return kwargs


class PersonSearchResNet(ResNet):
    """detectron2's ``ResNet`` with a configurable ``size_divisibility``: the batch of images is
    zero-padded (after normalisation) to a multiple of it (``MODEL.BACKBONE.SIZE_DIVISIBILITY``;
    torchvision's detectors pad to 32, which the converted official models reproduce)."""

    def __init__(self, *args, size_divisibility: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self._size_divisibility = int(size_divisibility)

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility


def _freeze_stem(stem: nn.Module, keep_norm_stats: bool) -> None:
    for p in stem.parameters():
        p.requires_grad = False
    if not keep_norm_stats:
        FrozenBatchNorm2d.convert_frozen_batchnorm(stem)


@BACKBONE_REGISTRY.register()
def build_person_search_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """Stem + res2..res4 (or up to the deepest of ``MODEL.RESNETS.OUT_FEATURES``).

    Args:
        cfg: the config; reads ``MODEL.RESNETS.*`` and ``MODEL.BACKBONE.FREEZE_AT``.
        input_shape: the image input shape (3 channels).

    Returns:
        A detectron2 ``ResNet`` whose outputs are ``OUT_FEATURES`` (e.g. ``{"res4": (N, C, H/16,
        W/16)}``). Parameter names match detectron2's ResNet, so model-zoo pickles load directly.
    """
    r = cfg.MODEL.RESNETS
    unknown = [name for name in r.OUT_FEATURES if name not in _OUT_FEATURES]
    if unknown or not r.OUT_FEATURES:
        raise ValueError(
            f"MODEL.RESNETS.OUT_FEATURES={list(r.OUT_FEATURES)}: use names among {_OUT_FEATURES}"
        )
    stem = BasicStem(
        in_channels=input_shape.channels, out_channels=r.STEM_OUT_CHANNELS, norm=r.NORM
    )
    last_stage = max(_OUT_FEATURES.index(name) + 1 for name in r.OUT_FEATURES)
    stages: List[List[nn.Module]] = [
        ResNet.make_stage(**resnet_stage_kwargs(cfg, s)) for s in range(2, last_stage + 1)
    ]
    freeze_at = cfg.MODEL.BACKBONE.FREEZE_AT
    # ResNet.freeze(k) freezes the stem for k >= 1 (always converting it to FrozenBN) and res{k}
    # below; do the stem ourselves to be able to keep its BN statistics live.
    divisibility = cfg.MODEL.BACKBONE.SIZE_DIVISIBILITY
    if divisibility < 0:
        raise ValueError(f"MODEL.BACKBONE.SIZE_DIVISIBILITY must be >= 0, got {divisibility}")
    model = PersonSearchResNet(
        stem, stages, out_features=r.OUT_FEATURES, freeze_at=0, size_divisibility=divisibility
    )
    if freeze_at >= 1:
        _freeze_stem(model.stem, r.STEM_NORM_TRACK_STATS and "BN" in r.NORM)
    for idx, stage in enumerate(model.stages, start=2):
        if freeze_at >= idx:
            for block in stage.children():
                block.freeze()
    return model


def build_res5_stage(cfg) -> nn.Sequential:
    """The res5 stage that a C4 RoI head applies to every pooled RoI (stride 2, same rules as the
    body). Its parameters are named ``<index>.<layer>`` so that a parent attribute ``res5`` gives
    the model-zoo names ``res5.0.conv1.weight`` etc."""
    return nn.Sequential(*ResNet.make_stage(**resnet_stage_kwargs(cfg, 5)))


def res5_out_channels(cfg) -> int:
    """Channels of the res5 output (2048 for R50, 8 x RES2_OUT_CHANNELS for basic blocks)."""
    return cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * 8


def res4_out_channels(cfg) -> int:
    """Channels of the res4 output (1024 for R50)."""
    return cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * 4
