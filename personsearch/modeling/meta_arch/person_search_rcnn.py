"""PersonSearchRCNN: Faster R-CNN whose inference also embeds the query boxes of each image."""

from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import Boxes, ImageList, Instances

from personsearch.utils.amp import autocast, autocast_dtype

NORMALIZATIONS = ("detectron2", "torchvision")


@META_ARCH_REGISTRY.register()
class PersonSearchRCNN(GeneralizedRCNN):
    """A ``GeneralizedRCNN`` for one-step person search.

    Training is detectron2's: the dataset mapper puts ``instances`` with ``gt_boxes``,
    ``gt_classes`` and ``gt_pids`` in every input and the RoI heads return their losses.

    Inference runs the backbone once per image and returns, per image::

        {"instances": Instances(pred_boxes, scores, pred_classes, reid_feats),
         "query_feats": Tensor (Q, D),
         "query_contexts": [Tensor (K_q, D), ...]}   # one per query; empty list if not computed

    ``reid_feats`` (R, D) are the L2-normalised embeddings of the detections; boxes are in
    original-image pixels. ``query_feats`` are the embeddings of the input's ``query_boxes`` (Q
    boxes in input-image coordinates, set by the mapper for images that hold queries; Q = 0
    otherwise), in the same order, from the same backbone pass, never score-weighted.
    ``query_contexts`` are CBGM's query-image contexts (row 0 the query; the image's detections with
    the query box forced in at score 1 before NMS, unweighted), at most ``TEST.SEARCH.
    QUERY_CONTEXT_SIZE`` rows, from heads that can compute them exactly (the NAE family).

    With ``TEST.SEARCH.USE_GT_BOXES`` the ground-truth boxes of each image (``instances.gt_boxes``
    from the mapper) replace the detector output, with score 1: search accuracy then measures
    re-identification alone.
    """

    @configurable
    def __init__(
        self,
        *,
        use_gt_boxes: bool = False,
        query_context_size: int = 0,
        input_normalization: str = "detectron2",
        amp_dtype: str = "",
        **kwargs,
    ):
        """
        Args:
            use_gt_boxes: at inference, describe every image by its ground-truth boxes instead of
                detections.
            query_context_size: CBGM context entries returned per query (0: none).
            input_normalization: "detectron2" (``(x - PIXEL_MEAN) / PIXEL_STD`` on 0..255) or
                "torchvision" (``x / 255`` first, then mean and std divided by 255: the same
                function with torchvision's float rounding, for converted official models).
            amp_dtype: "" (float32) or "bfloat16" / "float16": run inference under
                ``torch.autocast`` (``TEST.AMP``); outputs are returned in float32.
            kwargs: see :class:`detectron2.modeling.GeneralizedRCNN`.
        """
        super().__init__(**kwargs)
        if input_normalization not in NORMALIZATIONS:
            raise ValueError(
                f"MODEL.INPUT_NORMALIZATION must be one of {NORMALIZATIONS}, got "
                f"{input_normalization!r}"
            )
        self.use_gt_boxes = use_gt_boxes
        self.query_context_size = query_context_size
        self.input_normalization = input_normalization
        self.amp_dtype = (
            autocast_dtype(amp_dtype, self.device.type, "TEST.AMP.DTYPE") if amp_dtype else None
        )
        # torchvision's mean and std in [0, 1], computed in double precision from the config
        # values (123.675 / 255 -> 0.485 exactly as torchvision's literal), not saved
        unit = [[float(v) / 255.0 for v in kwargs[k]] for k in ("pixel_mean", "pixel_std")]
        self.register_buffer("unit_pixel_mean", torch.tensor(unit[0]).view(-1, 1, 1), False)
        self.register_buffer("unit_pixel_std", torch.tensor(unit[1]).view(-1, 1, 1), False)
        if not hasattr(self.roi_heads, "embed_boxes"):
            raise TypeError(
                f"{type(self.roi_heads).__name__} cannot embed query boxes; person search needs a "
                "person-search RoI head (MODEL.ROI_HEADS.NAME, e.g. 'OIMROIHeads')"
            )

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["use_gt_boxes"] = cfg.TEST.SEARCH.USE_GT_BOXES
        ret["query_context_size"] = cfg.TEST.SEARCH.QUERY_CONTEXT_SIZE
        ret["input_normalization"] = cfg.MODEL.INPUT_NORMALIZATION
        ret["amp_dtype"] = cfg.TEST.AMP.DTYPE if cfg.TEST.AMP.ENABLED else ""
        return ret

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]) -> ImageList:
        """Normalise and batch the images (see ``input_normalization``)."""
        if self.input_normalization == "detectron2":
            return super().preprocess_image(batched_inputs)
        mean, std = self.unit_pixel_mean, self.unit_pixel_std
        images = [(x["image"].to(self.device) / 255.0 - mean) / std for x in batched_inputs]
        return ImageList.from_tensors(
            images,
            self.backbone.size_divisibility,
            padding_constraints=self.backbone.padding_constraints,
        )

    def inference(
        self,
        batched_inputs: List[Dict[str, torch.Tensor]],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        """Detect people, embed them and embed the query boxes.

        Args:
            batched_inputs: mapper outputs; each has ``image`` and may have ``query_boxes``
                (Boxes, input coordinates) and ``instances`` (used with ``use_gt_boxes``).
            detected_instances: if given, embed these boxes (``pred_boxes``) instead of detecting.
            do_postprocess: rescale boxes to the original image size (``height``/``width``).

        Returns:
            list[dict]: per image ``{"instances", "query_feats"}`` (see the class docstring).
        """
        assert not self.training
        if self.amp_dtype is not None:
            with autocast(True, self.device.type, self.amp_dtype):
                outputs = self._inference(batched_inputs, detected_instances, do_postprocess)
            return [_to_float32(o) for o in outputs]
        return self._inference(batched_inputs, detected_instances, do_postprocess)

    def _inference(self, batched_inputs, detected_instances, do_postprocess):
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        if detected_instances is None and self.use_gt_boxes:
            detected_instances = [
                self._gt_as_detections(x, s) for x, s in zip(batched_inputs, images.image_sizes)
            ]
        query_boxes = [
            x["query_boxes"] if "query_boxes" in x else Boxes(torch.zeros(0, 4))
            for x in batched_inputs
        ]
        query_boxes = [b.to(self.device) for b in query_boxes]
        if detected_instances is None:
            proposals, _ = self.proposal_generator(images, features, None)
            results, query_feats, contexts = self.roi_heads.inference_with_queries(
                features, proposals, query_boxes, self.query_context_size
            )
        else:
            results = [x.to(self.device) for x in detected_instances]
            uncertain = self.roi_heads.has_uncertainty
            boxes = [r.pred_boxes for r in results]
            if uncertain:  # UGAS's OUTPUT_VARIANCE: every given box also gets its uncertainty
                embeddings, uncertainty = self.roi_heads.embed_boxes(features, boxes, True)
                query_feats, query_uncertainty = self.roi_heads.embed_boxes(
                    features, query_boxes, True
                )
            else:
                embeddings = self.roi_heads.embed_boxes(features, boxes)
                query_feats = self.roi_heads.embed_boxes(features, query_boxes)
            for i, r in enumerate(results):
                r.reid_feats = embeddings[i]
                if uncertain:
                    r.uncertainty = uncertainty[i]
            contexts = [[] for _ in results]
        if do_postprocess:
            assert not torch.jit.is_scripting(), "Scripting is not supported for postprocess."
            outputs = GeneralizedRCNN._postprocess(results, batched_inputs, images.image_sizes)
        else:
            outputs = [{"instances": r} for r in results]
        for i, (out, q, c) in enumerate(zip(outputs, query_feats, contexts)):
            out["query_feats"] = q
            out["query_contexts"] = c
            if detected_instances is not None and self.roi_heads.has_uncertainty:
                out["query_uncertainty"] = query_uncertainty[i]
        return outputs

    def _gt_as_detections(self, batched_input: Dict, image_size) -> Instances:
        if "instances" not in batched_input:
            raise KeyError(
                "TEST.SEARCH.USE_GT_BOXES needs ground-truth 'instances' in the test inputs "
                "(PersonSearchDatasetMapper provides them)"
            )
        gt = batched_input["instances"]
        det = Instances(image_size)
        det.pred_boxes = Boxes(gt.gt_boxes.tensor.clone())
        det.scores = torch.ones(len(gt))
        det.pred_classes = torch.zeros(len(gt), dtype=torch.long)
        return det


def _to_float32(output: Dict) -> Dict:
    """An inference output with every floating-point tensor in float32."""
    inst = output["instances"]
    for name in inst.get_fields():
        value = inst.get(name)
        if isinstance(value, Boxes):
            inst.set(name, Boxes(value.tensor.float()))
        elif isinstance(value, torch.Tensor) and value.is_floating_point():
            inst.set(name, value.float())
    output["query_feats"] = output["query_feats"].float()
    if "query_uncertainty" in output:
        output["query_uncertainty"] = output["query_uncertainty"].float()
    output["query_contexts"] = [c.float() for c in output["query_contexts"]]
    return output
