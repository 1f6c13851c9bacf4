"""RoI-head parts from explicit arguments, for LazyConfig files (``configs/*.py``): what a head's
``from_config`` builds beyond calling a constructor."""

from detectron2.modeling.roi_heads import FastRCNNOutputLayers


def seqnet_stage1_predictor(**kwargs) -> FastRCNNOutputLayers:
    """SeqNet's stage-1 classifier and box regressor as ``SeqNetROIHeads.from_config`` builds it:
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
