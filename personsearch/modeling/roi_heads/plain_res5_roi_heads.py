"""A plain Faster R-CNN C4 box head (detectron2's ``Res5ROIHeads``) whose res5 continues
personsearch's ResNet body: the baseline detector that person-search overhead is measured against
(``tools/benchmark.py compare``)."""

from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads

from personsearch.layers import build_roi_pooler

from ..backbone.resnet import build_res5_stage, res5_out_channels


@ROI_HEADS_REGISTRY.register()
class PlainRes5ROIHeads(Res5ROIHeads):
    """detectron2's ``Res5ROIHeads`` (RoIAlign on res4, res5 per RoI, average pooling,
    ``FastRCNNOutputLayers``) with two changes, so that it matches a person-search model of the
    same config except for the person-search parts:

    * res5 is :func:`~personsearch.modeling.backbone.resnet.build_res5_stage` (the person-search
      heads' res5): detectron2 builds three bottleneck blocks from ``MODEL.RESNETS`` whatever the
      depth, which is not the res5 of the narrow basic-block ResNet-10 configs;
    * RoIAlign is personsearch's pooler with ``MODEL.ROI_BOX_HEAD.ROI_ALIGN_CPU`` (the values of
      detectron2's up to float rounding; on CUDA the same torchvision kernel), so that a ratio of
      times measures the heads, not two RoIAlign implementations. ``ROI_ALIGN_CPU torchvision``
      gives detectron2's kernel exactly.
    """

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        box = cfg.MODEL.ROI_BOX_HEAD
        stride = input_shape[ret["in_features"][0]].stride
        ret["pooler"] = build_roi_pooler(
            box.POOLER_RESOLUTION,
            (1.0 / stride,),
            box.POOLER_SAMPLING_RATIO,
            box.POOLER_TYPE,
            box.ROI_ALIGN_CPU,
        )
        return ret

    @classmethod
    def _build_res5_block(cls, cfg):
        return build_res5_stage(cfg), res5_out_channels(cfg)
