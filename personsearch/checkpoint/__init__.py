"""Checkpoints: saving and loading them, initialising from other models' weights.

* :mod:`.checkpointer`: :class:`PersonSearchCheckpointer` (atomic saves, weights-only loading;
  the only code that overrides detectron2's private checkpointer methods);
* :mod:`.loading`: which reader reads which checkpoint format (the unpickling policy itself is
  :mod:`personsearch.utils.serialization`);
* :mod:`.model_zoo`: detectron2 model-zoo / detector checkpoints mapped onto person-search models;
* :mod:`.official`: conversion of the official SeqNet / NAE / NAE+ checkpoints.
"""

from .checkpointer import PersonSearchCheckpointer, remove_stale_temporary_files
from .model_zoo import (
    DETECTOR_KEY_RENAMES,
    DetectorKeyMapping,
    expand_shared_keys,
    map_detector_checkpoint,
    reshape_linear_to_conv1x1,
)
from .official import (
    SOURCES,
    ConversionError,
    ConversionReport,
    convert_official_state_dict,
    load_official_state_dict,
)
