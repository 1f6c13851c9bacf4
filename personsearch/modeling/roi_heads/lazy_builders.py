"""RoI-head parts from explicit arguments, for LazyConfig files (``configs/*.py``) and the heads'
``from_config``: what is built beyond calling a constructor, in one place for both."""

from detectron2.modeling.roi_heads import FastRCNNOutputLayers


def seqnet_stage1_predictor(**kwargs) -> FastRCNNOutputLayers:
    """SeqNet's stage-1 classifier and box regressor (``SeqNetROIHeads.from_config`` uses it too):
    detectron2's ``FastRCNNOutputLayers(**kwargs)`` with PyTorch's default Linear initialisation
    (the reference's torchvision ``FastRCNNPredictor``) instead of detectron2's N(0, 0.01).

    Args:
        kwargs: ``FastRCNNOutputLayers`` arguments (``input_shape``, ``box2box_transform``,
            ``num_classes``, test thresholds, ``loss_weight``, ...).
    """
    predictor = FastRCNNOutputLayers(**kwargs)
    predictor.cls_score.reset_parameters()
    predictor.bbox_pred.reset_parameters()
    return predictor
