"""The shared parts of the FPN person-search heads: multi-level RoI pooling + detectron2's box
head in place of the C4 res5 head."""

from typing import Dict

from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROIHeads, build_box_head

from personsearch.layers import build_roi_pooler

from .fpn_feature_head import FPNFeatureHead
from .person_search_roi_heads import PersonSearchROIHeads


class FPNPersonSearchROIHeads(PersonSearchROIHeads):
    """:class:`PersonSearchROIHeads` on an FPN: the box path of detectron2's ``StandardROIHeads``.

    Only construction differs from the C4 base: RoIs are pooled from the FPN levels
    ``MODEL.ROI_HEADS.IN_FEATURES`` (e.g. p2..p5; detectron2's ``ROIPooler`` picks each RoI's level
    from its size, canonical 224 px on p4), and the feature head is an :class:`FPNFeatureHead`
    (detectron2's ``FastRCNNConvFCHead``, ``MODEL.ROI_BOX_HEAD.NAME``/``NUM_FC``/``FC_DIM``, whose
    output is the detector's RoI feature) instead of res5. Everything else (re-ID head, UGAS, OIM,
    :meth:`roi_features`, :meth:`embed_boxes`, :meth:`inference_with_queries`) is the base's,
    working on the feature head's outputs ``box_head``, ``fpn`` and ``fpn_map``.

    Method heads combine with it by multiple inheritance, method first:
    ``class FPNNAEROIHeads(NAEROIHeads, FPNPersonSearchROIHeads)``. In that order the method's
    ``from_config`` extends this class's (not the C4 one) and its ``forward`` runs unchanged;
    the subclass then only resizes what reads the box feature (see :mod:`.fpn_nae_roi_heads`,
    :mod:`.fpn_oim_roi_heads`).
    """

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        # ROIHeads' sampling arguments; PersonSearchROIHeads.from_config builds the C4 parts
        ret = ROIHeads.from_config(cfg)
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        missing = [f for f in in_features if f not in input_shape]
        if not in_features or missing:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES={in_features}: {missing or 'empty'} not among the "
                f"backbone outputs {sorted(input_shape)} (an FPN head pools FPN levels, e.g. "
                "['p2', 'p3', 'p4', 'p5'])"
            )
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES={in_features} have different channel counts "
                f"{sorted(channels)}; an FPN head pools levels of one width"
            )
        (channels,) = channels
        box_cfg = cfg.MODEL.ROI_BOX_HEAD
        if not box_cfg.NAME:
            raise ValueError(
                "MODEL.ROI_BOX_HEAD.NAME is empty; the FPN person-search heads need a registered "
                "box head, e.g. 'FastRCNNConvFCHead' with MODEL.ROI_BOX_HEAD.NUM_FC 2"
            )
        if box_cfg.NAME == "FastRCNNConvFCHead" and box_cfg.NUM_FC < 1:
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.NUM_FC={box_cfg.NUM_FC}: the FPN person-search heads read the "
                "box head's output vector; set MODEL.ROI_BOX_HEAD.NUM_FC to at least 1 (2 in "
                "detectron2's R50-FPN)"
            )
        res = box_cfg.POOLER_RESOLUTION
        box_head = build_box_head(cfg, ShapeSpec(channels=channels, height=res, width=res))
        feature_head = FPNFeatureHead(box_head, channels, box_cfg.GLOBAL_POOL)
        ret.update(
            in_features=in_features,
            pooler=build_roi_pooler(
                res,
                tuple(1.0 / input_shape[f].stride for f in in_features),
                box_cfg.POOLER_SAMPLING_RATIO,
                box_cfg.POOLER_TYPE,
                box_cfg.ROI_ALIGN_CPU,
            ),
            **cls.embedding_path(cfg, input_shape, feature_head),
        )
        return ret
