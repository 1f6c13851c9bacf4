"""Pictures and figures of person-search data and models, behind the drawing and analysis tools.

* :mod:`.detections`: a model's detections on one image, drawn in the colour of their score and
  rendered with colorbars (``tools/visualize_detections.py``);
* :mod:`.attention`: per-box attention maps (NAE+ pixel attention, UGAS SFM gates) and their
  heatmap overlay;
* :mod:`.dataset_plots`: the box-height, people-per-image and boxes-per-identity figures of splits,
  and :func:`.dataset_plots.analyze`, the whole report of ``tools/analyze_dataset.py``;
* :mod:`.selection`: which records a picture tool draws and its file names.

The drawing primitives are :mod:`personsearch.utils.visualizer`. This subpackage uses matplotlib
and is not imported by ``import personsearch``.
"""

from .attention import (
    ATTENTION_CMAP,
    box_attention_maps,
    has_attention,
    overlay_attention,
    sfm_attention_maps,
)
from .dataset_plots import plot_appearances_per_identity, plot_box_heights, plot_boxes_per_image
from .detections import (
    SCORE_CMAP,
    detect_image,
    draw_detections,
    render_figure,
    score_colors,
    score_description,
)
from .selection import output_name, select_records

__all__ = [
    "ATTENTION_CMAP",
    "SCORE_CMAP",
    "box_attention_maps",
    "detect_image",
    "draw_detections",
    "has_attention",
    "output_name",
    "overlay_attention",
    "plot_appearances_per_identity",
    "plot_box_heights",
    "plot_boxes_per_image",
    "render_figure",
    "score_colors",
    "score_description",
    "select_records",
    "sfm_attention_maps",
]
