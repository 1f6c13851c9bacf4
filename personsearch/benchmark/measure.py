"""The three measurements of a detectron2 model (ours or the plain detector).

* **inference**: ``model.inference`` on the gallery image (one image per call: preprocessing,
  backbone, RPN, RoI heads, post-processing); detections and proposals counted;
* **query**: ``model.roi_heads.embed_boxes`` on precomputed backbone features for Q query boxes (a
  query image costs no second backbone pass: the boxes are embedded from the gallery pass);
* **train**: one training iteration (forward, backward, optimizer step with the config's gradient
  clipping) of ``PersonSearchTrainer``'s guarded train step on a fixed batch with random
  ground-truth boxes and person ids, the config's RoI sampling and ``SOLVER.AMP``.

Each returns a dict with the per-call times (seconds), the peak memory and the counts of work.
"""

import itertools
from typing import Dict, List

import torch
from detectron2.structures import Boxes, Instances

from personsearch.utils.amp import autocast, autocast_dtype

from .counting import WorkCounter
from .forcing import calibrate_batchnorm, expected_detections
from .inputs import BenchmarkInputs
from .models import build
from .timing import measured_runs


def mode_of(force: bool, weights: str) -> str:
    """Short name of how a model was run: forced / forced+weights / weights / random."""
    if force:
        return "forced+weights" if weights else "forced"
    return "weights" if weights else "random"


def _device(cfg) -> torch.device:
    return torch.device(cfg.MODEL.DEVICE)


def _inference_amp(cfg, model):
    """The autocast context of inference. ``PersonSearchRCNN`` applies ``TEST.AMP`` itself (it
    has an ``amp_dtype``); the plain ``GeneralizedRCNN`` ignores the key, so it is applied around
    it here."""
    if not cfg.TEST.AMP.ENABLED or getattr(model, "amp_dtype", None) is not None:
        return autocast(False, "cpu", None)
    device = _device(cfg).type
    return autocast(True, device, autocast_dtype(cfg.TEST.AMP.DTYPE, device, "TEST.AMP.DTYPE"))


def _query_amp(cfg):
    """``TEST.AMP`` around the query embedding (called outside ``model.inference``)."""
    if not cfg.TEST.AMP.ENABLED:
        return autocast(False, "cpu", None)
    device = _device(cfg).type
    return autocast(True, device, autocast_dtype(cfg.TEST.AMP.DTYPE, device, "TEST.AMP.DTYPE"))


def _gallery_input(image: torch.Tensor, device, query_boxes=None) -> List[Dict]:
    h, w = image.shape[-2:]
    x = {"image": image.to(device), "height": int(h), "width": int(w)}
    if query_boxes is not None:
        x["query_boxes"] = Boxes(query_boxes.to(device))
    return [x]


def prepare_for_inference(cfg, inputs: BenchmarkInputs, force: bool, weights: str):
    """Build the model in eval mode and, in forced mode without trained weights, calibrate its
    BatchNorm statistics on the benchmark images (gallery and query paths).

    Returns:
        ``(model, info)`` with info ``{"mode", "bn_calibrated", "bn_frozen"}``.
    """
    torch.manual_seed(inputs.seed)
    model = build(cfg)
    info = {"mode": mode_of(force, weights), "bn_calibrated": 0, "bn_frozen": 0}
    if force and not weights:
        device = _device(cfg)
        person_search = hasattr(model.roi_heads, "embed_boxes")
        q = inputs.calibration_query_boxes() if person_search else None
        passes = []
        for img in inputs.calibration_images():
            batch = _gallery_input(img, device, q)

            def run(batch=batch):
                with _inference_amp(cfg, model):
                    model.inference(batch)

            passes.append(run)
        bn = calibrate_batchnorm(model, passes)
        info.update(bn_calibrated=bn["calibrated"], bn_frozen=bn["frozen"])
    return model, info


def measure_inference(
    cfg, inputs: BenchmarkInputs, runs: int, warmup: int, force: bool, weights: str = ""
) -> Dict:
    """Gallery inference of one image per call (see the module docstring)."""
    model, info = prepare_for_inference(cfg, inputs, force, weights)
    device = _device(cfg)
    cuda = device.type == "cuda"
    batch = _gallery_input(inputs.gallery_image(), device)
    counter = WorkCounter(model.proposal_generator, model.roi_heads.pooler)
    detections = []

    @torch.no_grad()
    def step(i):
        counter.start_call()
        with _inference_amp(cfg, model):
            out = model.inference(batch)
        detections.append(len(out[0]["instances"]))

    timing = measured_runs(step, runs, warmup, cuda, items_per_call=1)
    counter.remove()
    return {
        **info,
        **timing,
        "detections_per_image": detections[-1] if detections else None,
        "expected_detections": expected_detections(cfg),
        **counter.per_image(1),
    }


def measure_query(
    cfg, inputs: BenchmarkInputs, runs: int, warmup: int, force: bool, weights: str = ""
) -> Dict:
    """Embedding of Q query boxes from precomputed backbone features (see the module
    docstring); ``items_per_call`` is Q."""
    model, info = prepare_for_inference(cfg, inputs, force, weights)
    if not hasattr(model.roi_heads, "embed_boxes"):
        raise TypeError(f"{type(model.roi_heads).__name__} embeds no query boxes")
    device = _device(cfg)
    cuda = device.type == "cuda"
    batch = _gallery_input(inputs.gallery_image(), device)
    with torch.no_grad(), _query_amp(cfg):
        images = model.preprocess_image(batch)
        features = model.backbone(images.tensor)
    boxes = [Boxes(inputs.query_boxes().to(device))]
    counter = WorkCounter(None, model.roi_heads.pooler)
    dims = []

    @torch.no_grad()
    def step(i):
        counter.start_call()
        with _query_amp(cfg):
            dims.append(tuple(model.roi_heads.embed_boxes(features, boxes)[0].shape))

    timing = measured_runs(step, runs, warmup, cuda, items_per_call=len(boxes[0]))
    counter.remove()
    return {
        **info,
        **timing,
        "embedding_shape": list(dims[-1]) if dims else None,
        "rois_per_call": counter.rois[-1] if counter.rois else None,
    }


def training_batch(inputs: BenchmarkInputs) -> List[Dict]:
    """The mapper-like training batch: images with ``instances`` (gt_boxes, gt_classes,
    gt_pids)."""
    batch = []
    for image, boxes, pids in inputs.training_batch():
        h, w = image.shape[-2:]
        inst = Instances((int(h), int(w)))
        inst.gt_boxes = Boxes(boxes)
        inst.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
        inst.gt_pids = pids
        batch.append({"image": image, "height": int(h), "width": int(w), "instances": inst})
    return batch


def measure_train(
    cfg, inputs: BenchmarkInputs, runs: int, warmup: int, force: bool, weights: str = ""
) -> Dict:
    """Training iterations on a fixed batch (see the module docstring). BatchNorm uses batch
    statistics in training, so no calibration is needed; the RoI heads sample
    ``ROI_HEADS.BATCH_SIZE_PER_IMAGE`` RoIs per image whatever the weights."""
    from detectron2.utils.events import EventStorage

    from personsearch.engine import PersonSearchTrainer
    from personsearch.engine.train_loop import GuardedTrainLoop

    torch.manual_seed(inputs.seed)
    model = build(cfg)
    model.train()
    optimizer = PersonSearchTrainer.build_optimizer(cfg, model)
    batch = training_batch(inputs)
    device = _device(cfg)
    cuda = device.type == "cuda"
    total = warmup + runs
    loop = GuardedTrainLoop(
        model,
        itertools.cycle([batch]),
        optimizer,
        max_skips=total,
        amp_dtype=cfg.SOLVER.AMP.DTYPE if cfg.SOLVER.AMP.ENABLED else "",
    )
    counter = WorkCounter(model.proposal_generator, model.roi_heads.pooler)

    with EventStorage(0) as storage:

        def step(i):
            counter.start_call()
            loop.iter = storage.iter = i
            loop.run_step()

        timing = measured_runs(step, runs, warmup, cuda, items_per_call=1)
    counter.remove()
    n = len(batch)
    return {
        "mode": mode_of(force, weights),
        **timing,
        "images_per_iter": n,
        "nonfinite_skips": loop.num_skipped,
        **counter.per_image(n),
    }


MEASUREMENTS = {"inference": measure_inference, "query": measure_query, "train": measure_train}
