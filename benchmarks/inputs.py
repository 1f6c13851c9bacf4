"""The benchmark inputs: one gallery image, query boxes and training targets, all derived from a
seed so that every model of a run (each measured in its own process) receives the same tensors."""

import re
from dataclasses import dataclass
from typing import List, Tuple

import torch

# the smallest side a C4 model with stride-16 features and 2x2 res5 maps can take
MIN_SIDE = 32


def parse_size(text: str) -> Tuple[int, int]:
    """``"900x1500"`` -> ``(900, 1500)`` (height, width).

    Raises:
        ValueError: not ``HEIGHTxWIDTH`` with integers >= ``MIN_SIDE``.
    """
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m:
        raise ValueError(f"--size must be HEIGHTxWIDTH in pixels (e.g. 900x1500), got {text!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"--size {text}: both sides must be at least {MIN_SIDE} pixels")
    return h, w


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def random_image(height: int, width: int, seed: int) -> torch.Tensor:
    """(3, H, W) uint8 noise image; its content does not matter in forced mode."""
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=_generator(seed))


def random_person_boxes(height: int, width: int, count: int, seed: int) -> torch.Tensor:
    """(count, 4) float32 XYXY boxes of upright people inside the image: heights 15-60 % of the
    image height, height / width 2-3 (CUHK-SYSU-like)."""
    g = _generator(seed)
    u = torch.rand((count, 4), generator=g, dtype=torch.float64)
    h = (0.15 + 0.45 * u[:, 0]) * height
    w = (h / (2.0 + u[:, 1])).clamp(max=width - 2.0)
    h = h.clamp(max=height - 2.0)
    x1 = u[:, 2] * (width - 1.0 - w)
    y1 = u[:, 3] * (height - 1.0 - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1).float()


@dataclass(frozen=True)
class BenchmarkInputs:
    """Everything a measurement feeds a model, reproducible from its fields.

    Attributes:
        height, width: the input size (no resizing happens; the official transforms are set to an
            identity resize).
        seed: base seed of every tensor below.
        num_queries: query boxes embedded per query measurement.
        train_batch: images per training iteration.
        gt_boxes: ground-truth people per training image.
        num_pids: person ids are drawn from ``[0, num_pids)`` (all labeled).
        calib_images: images of the BatchNorm calibration (the gallery image is the first).
        batch: images per inference call (the gallery image first, then others of the same
            size).
    """

    height: int
    width: int
    seed: int = 0
    num_queries: int = 1
    train_batch: int = 2
    gt_boxes: int = 5
    num_pids: int = 5532
    calib_images: int = 3
    batch: int = 1

    def gallery_image(self) -> torch.Tensor:
        """The (3, H, W) uint8 image of the inference measurement."""
        return random_image(self.height, self.width, self.seed)

    def gallery_images(self) -> List[torch.Tensor]:
        """The ``batch`` images of one inference call: the gallery image, then others."""
        return [self.gallery_image()] + [
            random_image(self.height, self.width, self.seed + 3000 + i)
            for i in range(max(0, self.batch - 1))
        ]

    def calibration_images(self) -> List[torch.Tensor]:
        """The gallery image, then ``calib_images - 1`` more of the same size."""
        return [self.gallery_image()] + [
            random_image(self.height, self.width, self.seed + 1000 + i)
            for i in range(max(0, self.calib_images - 1))
        ]

    def query_boxes(self) -> torch.Tensor:
        """(Q, 4) float32 XYXY query boxes in the gallery image."""
        return random_person_boxes(self.height, self.width, self.num_queries, self.seed + 1)

    def calibration_query_boxes(self) -> torch.Tensor:
        """(max(Q, 4), 4) boxes for the query pass of the BatchNorm calibration (BatchNorm in
        training mode needs more than one value per channel)."""
        return random_person_boxes(self.height, self.width, max(self.num_queries, 4), self.seed + 2)

    def training_batch(self) -> List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``train_batch`` x ``(image uint8 (3, H, W), boxes (N, 4) float32, pids (N,) int64)``."""
        out = []
        for i in range(self.train_batch):
            seed = self.seed + 2000 + 10 * i
            image = random_image(self.height, self.width, seed)
            boxes = random_person_boxes(self.height, self.width, self.gt_boxes, seed + 1)
            pids = torch.randint(0, self.num_pids, (self.gt_boxes,), generator=_generator(seed + 2))
            out.append((image, boxes, pids))
        return out
