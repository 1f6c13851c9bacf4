"""Turns person-search dataset records into model inputs."""

import copy
import logging
from typing import Dict, List, Optional

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes

logger = logging.getLogger(__name__)


class PersonSearchDatasetMapper:
    """Reads the image, applies the augmentations and builds the model input of one record.

    Output dict (besides the record's own keys, ``annotations`` removed):

    * ``image``: (3, H, W) uint8 tensor in ``INPUT.FORMAT`` after augmentation;
    * ``instances``: ``Instances`` with ``gt_boxes``, ``gt_classes`` and ``gt_pids`` (person ids,
      -1 unlabeled), transformed and filtered together (empty boxes removed). Kept at test time
      too (the "GT boxes as detector" evaluation embeds them);
    * ``query_boxes`` (test only, images with queries): ``Boxes`` (Q, 4) of the record's
      ``queries`` in augmented-image coordinates, in the order of ``queries`` (whose ``bbox`` stays
      in original pixels for the evaluator).

    Unreadable images: at test time, or with ``on_corrupt_image="fail"``, raise an error naming the
    file. With ``"skip"`` (training only) the record is dropped (detectron2's loader then draws
    another one), logged and counted; more than ``max_corrupt_images`` distinct failures stop
    training.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: List[T.Augmentation],
        image_format: str,
        on_corrupt_image: str = "fail",
        max_corrupt_images: int = 10,
    ):
        """
        Args:
            is_train: training (augment, allow skipping corrupt images) or test mapping.
            augmentations: applied in order (resize shortest edge, flip, ...).
            image_format: ``INPUT.FORMAT`` ("RGB" or "BGR").
            on_corrupt_image: "fail" or "skip" (see the class docstring).
            max_corrupt_images: cap for "skip".
        """
        if on_corrupt_image not in ("fail", "skip"):
            raise ValueError(
                f"DATALOADER.ON_CORRUPT_IMAGE must be 'fail' or 'skip', got {on_corrupt_image!r}"
            )
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.on_corrupt_image = on_corrupt_image
        self.max_corrupt_images = max_corrupt_images
        self._corrupt_files = set()
        mode = "training" if is_train else "inference"
        logger.info(f"[PersonSearchDatasetMapper] Augmentations used in {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "augmentations": utils.build_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "on_corrupt_image": cfg.DATALOADER.ON_CORRUPT_IMAGE,
            "max_corrupt_images": cfg.DATALOADER.MAX_CORRUPT_IMAGES,
        }

    def __call__(self, dataset_dict: Dict) -> Optional[Dict]:
        """Map one record; returns None only for a skipped corrupt training image."""
        d = copy.deepcopy(dataset_dict)
        for i, a in enumerate(d.get("annotations", [])):
            if "person_id" not in a:
                raise KeyError(
                    f"Record {d.get('image_id', d['file_name'])!r}: annotations[{i}] has no "
                    "'person_id'; person-search datasets need one per box (-1 = unlabeled). Is "
                    "this a plain detection dataset?"
                )
        image = self._read_image(d["file_name"])
        if image is None:
            return None
        utils.check_image_size(d, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        d["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

        annos = d.pop("annotations", [])
        for a in annos:  # integer boxes would be truncated by detectron2's in-place transforms
            a["bbox"] = np.asarray(a["bbox"], dtype=np.float64)
        annos = [utils.transform_instance_annotations(a, transforms, image_shape) for a in annos]
        instances = utils.annotations_to_instances(annos, image_shape)
        # attach before filtering so that ids stay aligned with their boxes
        instances.gt_pids = torch.tensor([a["person_id"] for a in annos], dtype=torch.int64)
        d["instances"] = utils.filter_empty_instances(instances)

        if not self.is_train and d.get("queries"):
            boxes = np.asarray([q["bbox"] for q in d["queries"]], dtype=np.float64).reshape(-1, 4)
            boxes = transforms.apply_box(boxes)
            d["query_boxes"] = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
        return d

    def _read_image(self, file_name: str) -> Optional[np.ndarray]:
        try:
            return utils.read_image(file_name, format=self.image_format)
        except (OSError, ValueError, SyntaxError) as e:  # PIL raises these for bad files
            if not self.is_train or self.on_corrupt_image == "fail":
                raise OSError(
                    f"Cannot read image {file_name!r}: {e}. Set DATALOADER.ON_CORRUPT_IMAGE skip "
                    "to skip unreadable training images."
                ) from e
            self._corrupt_files.add(file_name)
            n = len(self._corrupt_files)
            logger.warning(f"Skipping unreadable training image {file_name!r} ({n} so far): {e}")
            if n > self.max_corrupt_images:
                raise RuntimeError(
                    f"{n} training images could not be read (DATALOADER.MAX_CORRUPT_IMAGES="
                    f"{self.max_corrupt_images}); last: {file_name!r}"
                ) from e
            return None
