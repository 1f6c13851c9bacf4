"""Renderer of the synthetic person-search scenes: identity attributes, people, objects, scenes.

Everything here is a pure function of a ``numpy.random.Generator`` and its arguments, so a scene is
reproducible from its seed. Drawing uses OpenCV primitives on supersampled canvases that are
reduced with area interpolation (anti-aliased people even at 30 px). The dataset layout (which
identity appears in which image, protocol files) lives in
:mod:`personsearch.data.datasets.synthetic`; the design is described in ``docs/SYNTHETIC.md``.

The package depends on numpy and OpenCV only and imports its modules relatively, so rendering
subprocesses load it by file path without importing torch (see ``generator.render_all``).

Modules: ``attributes`` (the identity attribute space), ``painter`` (sprites and anti-aliased
drawing), ``person``, ``objects`` (occluders and distractors), ``background``, ``scene``
(placement, depth compositing, occlusion, boxes) and ``worker`` (one image file; subprocess entry).

Coordinates: images are ``(H, W, 3)`` RGB; boxes are integer ``(x, y, w, h)`` with the right and
bottom edges exclusive (``x + w <= W``), tight around the pixels where the person's coverage
(alpha) is at least :data:`BOX_ALPHA`.
"""

from .attributes import (
    ATTRIBUTES,
    NUM_ATTRIBUTES,
    describe_attributes,
    is_distinct,
    sample_attributes,
    sample_identities,
    sample_unlabeled_attributes,
)
from .background import render_background
from .objects import DISTRACTORS, OCCLUDERS, render_object
from .painter import Sprite
from .person import render_person
from .scene import BOX_ALPHA, PERSON_METERS, PlacedPerson, render_scene
from .worker import RenderResult, RenderTask, render_image_file, worker_main

__all__ = [
    "ATTRIBUTES",
    "BOX_ALPHA",
    "DISTRACTORS",
    "NUM_ATTRIBUTES",
    "OCCLUDERS",
    "PERSON_METERS",
    "PlacedPerson",
    "RenderResult",
    "RenderTask",
    "Sprite",
    "describe_attributes",
    "is_distinct",
    "render_background",
    "render_image_file",
    "render_object",
    "render_person",
    "render_scene",
    "sample_attributes",
    "sample_identities",
    "sample_unlabeled_attributes",
    "worker_main",
]
