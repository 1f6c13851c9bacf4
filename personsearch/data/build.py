"""Building the training data of a person-search run from registered splits."""

import logging
from typing import Dict, List

from detectron2.data import DatasetCatalog

__all__ = ["load_training_records"]

logger = logging.getLogger(__name__)


def load_training_records(dataset_names: List[str], num_pids: int) -> List[Dict]:
    """Load and concatenate training splits, giving each split its own person-id range.

    Args:
        dataset_names: registered training splits (``DATASETS.TRAIN``).
        num_pids: ``MODEL.OIM.NUM_PIDS``, the OIM lookup-table size.

    Returns:
        The records; person ids of the k-th split are shifted by the identity count of the splits
        before it (unlabeled people stay -1).

    Raises:
        ValueError: if the identities do not fit ``num_pids`` (both numbers in the message).
    """
    if isinstance(dataset_names, str):
        dataset_names = [dataset_names]
    records, offset, counts = [], 0, []
    for name in dataset_names:
        dicts = DatasetCatalog.get(name)
        if not dicts:
            raise ValueError(f"Training dataset {name!r} is empty")
        pids = []
        for d in dicts:
            for k, a in enumerate(d.get("annotations", [])):
                if "person_id" not in a:
                    image = d.get("image_id", d.get("file_name"))
                    raise KeyError(
                        f"Training dataset {name!r}, image {image!r}, annotation {k} has no "
                        "'person_id': person-search datasets label every box with a person id "
                        "(-1 for unlabeled people)"
                    )
                pids.append(a["person_id"])
        n = max([p for p in pids if p >= 0], default=-1) + 1
        if offset:
            for d in dicts:
                for a in d.get("annotations", []):
                    if a["person_id"] >= 0:
                        a["person_id"] += offset
        counts.append(f"{name}: {n}")
        records.extend(dicts)
        offset += n
    if offset > num_pids:
        raise ValueError(
            f"MODEL.OIM.NUM_PIDS={num_pids} is smaller than the number of labeled identities in "
            f"the training data, {offset} ({', '.join(counts)}); set MODEL.OIM.NUM_PIDS {offset}"
        )
    if offset < num_pids:
        logger.warning(
            f"MODEL.OIM.NUM_PIDS={num_pids} but the training data has {offset} identities "
            f"({', '.join(counts)}); the unused lookup-table rows stay zero."
        )
    else:
        logger.info(f"Training identities: {offset} ({', '.join(counts)})")
    return records
