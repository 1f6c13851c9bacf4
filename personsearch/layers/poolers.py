"""detectron2's ``ROIPooler`` with the CPU-fast RoIAlign of :mod:`.roi_align`."""

from typing import Sequence

from detectron2.modeling.poolers import ROIPooler

from .roi_align import ROIAlign


def build_roi_pooler(
    output_size: int,
    scales: Sequence[float],
    sampling_ratio: int,
    pooler_type: str,
    cpu_impl: str = "sparse",
) -> ROIPooler:
    """A detectron2 ``ROIPooler`` whose "ROIAlign"/"ROIAlignV2" levels run
    :class:`~personsearch.layers.roi_align.ROIAlign` (``cpu_impl`` "sparse": the sparse-product
    RoIAlign on CPU tensors; "torchvision": its kernel everywhere). Other pooler types are
    detectron2's unchanged.

    Args:
        output_size, scales, sampling_ratio, pooler_type: see ``ROIPooler``.
        cpu_impl: ``MODEL.ROI_BOX_HEAD.ROI_ALIGN_CPU``.
    """
    pooler = ROIPooler(
        output_size=output_size,
        scales=scales,
        sampling_ratio=sampling_ratio,
        pooler_type=pooler_type,
    )
    if pooler_type in ("ROIAlign", "ROIAlignV2"):
        for i, level in enumerate(pooler.level_poolers):
            pooler.level_poolers[i] = ROIAlign(
                level.output_size,
                level.spatial_scale,
                level.sampling_ratio,
                aligned=level.aligned,
                cpu_impl=cpu_impl,
            )
    return pooler
