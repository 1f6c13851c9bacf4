"""Counting the work a model actually did: proposals from the RPN and RoIs pooled by the RoI
heads, per call, through forward hooks (a ``len`` per image: no measurable cost)."""

from typing import Dict, List, Optional

from torch import nn


class WorkCounter:
    """Counts, per model call, the proposals the RPN returned and the boxes the RoI pooler pooled.

    Works for any model whose RPN returns ``(proposals_per_image, losses)`` and whose pooler is
    called as ``pooler(features, boxes_per_image, ...)`` (detectron2's ``RPN`` / ``ROIPooler`` and
    torchvision's ``RegionProposalNetwork`` / ``MultiScaleRoIAlign``, as the official codes use).
    Call :meth:`start_call` before each model call; the lists then hold one entry per call.

    Attributes:
        proposals: per call, the total number of proposals over the call's images.
        rois: per call, the total number of boxes pooled (every stage: SeqNet pools twice).
    """

    def __init__(self, rpn: Optional[nn.Module], pooler: Optional[nn.Module]):
        """
        Args:
            rpn: the proposal generator (or None: no proposals counted).
            pooler: the RoI pooler whose inputs are counted (or None).
        """
        self.proposals: List[int] = []
        self.rois: List[int] = []
        self._handles = []
        if rpn is not None:
            self._handles.append(rpn.register_forward_hook(self._on_rpn))
        if pooler is not None:
            self._handles.append(pooler.register_forward_pre_hook(self._on_pool))

    def start_call(self) -> None:
        """Open the counts of the next model call."""
        self.proposals.append(0)
        self.rois.append(0)

    def _on_rpn(self, module, inputs, output) -> None:
        if self.proposals:
            self.proposals[-1] += sum(len(p) for p in output[0])

    def _on_pool(self, module, inputs) -> None:
        if self.rois and len(inputs) > 1:
            self.rois[-1] += sum(len(b) for b in inputs[1])

    def remove(self) -> None:
        """Detach the hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def per_image(self, images_per_call: int) -> Dict[str, Optional[float]]:
        """The counts of the last call, per image (None where nothing was counted)."""

        def last(values):
            return values[-1] / images_per_call if values else None

        return {"proposals_per_image": last(self.proposals), "rois_per_image": last(self.rois)}
