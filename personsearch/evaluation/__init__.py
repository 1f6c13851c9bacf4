"""Person-search evaluation: pure protocol functions, the results file and the evaluator."""

from .boxes import adaptive_iou_threshold, pairwise_iou_numpy
from .cbgm import CBGMOptions, build_query_context, cbgm_rescore, match_context
from .detection import DetectionResult, evaluate_detections, match_detections
from .evaluator import PersonSearchEvaluator
from .galleries import (
    AllButQueryGalleries,
    JsonGalleries,
    SubsetView,
    cuhk_sysu_galleries,
    explicit_gallery,
    lowres_subset,
    map_protocol_queries,
    person_index,
)
from .ranking import recall_scaled_ap, top_k_descending
from .results_io import (
    FORMAT_VERSION,
    RESULTS_FILENAME,
    build_results,
    load_results,
    save_results,
    validate_results,
)
from .scoring import CBGM_DEFAULTS, SearchOptions, pack_results, score_results
from .search_protocol import (
    GallerySpec,
    PackedDetections,
    SearchResult,
    evaluate_search,
    score_query,
)

__all__ = [
    # boxes / ranking
    "adaptive_iou_threshold",
    "pairwise_iou_numpy",
    "recall_scaled_ap",
    "top_k_descending",
    # detection
    "DetectionResult",
    "evaluate_detections",
    "match_detections",
    # search
    "GallerySpec",
    "PackedDetections",
    "SearchResult",
    "evaluate_search",
    "score_query",
    # CBGM
    "CBGMOptions",
    "build_query_context",
    "cbgm_rescore",
    "match_context",
    # galleries
    "AllButQueryGalleries",
    "JsonGalleries",
    "SubsetView",
    "cuhk_sysu_galleries",
    "explicit_gallery",
    "lowres_subset",
    "map_protocol_queries",
    "person_index",
    # results file
    "FORMAT_VERSION",
    "RESULTS_FILENAME",
    "build_results",
    "load_results",
    "save_results",
    "validate_results",
    # scoring glue and evaluator
    "CBGM_DEFAULTS",
    "SearchOptions",
    "pack_results",
    "score_results",
    "PersonSearchEvaluator",
]


def __getattr__(name: str):
    # deprecated names, kept for one release
    if name == "pairwise_iou":
        from .boxes import deprecated_pairwise_iou

        return deprecated_pairwise_iou()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
