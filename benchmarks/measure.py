"""The three measurements of a detectron2 model (ours or the plain detector).

* **inference**: ``model.inference`` on ``--batch`` gallery images per call (normalisation,
  backbone, RPN, RoI heads, post-processing); detections and proposals counted; the model FLOPs
  of a call counted once (:mod:`.flops`);
* **query**: ``model.roi_heads.embed_boxes`` on precomputed backbone features for Q query boxes (a
  query image costs no second backbone pass: the boxes are embedded from the gallery pass);
* **train**: one training iteration (forward, backward, optimizer step with the config's gradient
  clipping) of ``PersonSearchTrainer``'s guarded train step on a fixed batch with random
  ground-truth boxes and person ids, the config's RoI sampling and ``SOLVER.AMP``.

Inference and query models get the config's ``TEST.OPTIMIZE`` (BatchNorm folding, channels_last;
``--no-optimize`` turns both off) after the forced-mode calibration. Each measurement returns a
dict with the per-call times (wall and CPU seconds), the peak memory and the counts of work.
"""

import itertools
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from detectron2.structures import Boxes, Instances

from personsearch.modeling.inference_optimization import InferenceOptions, optimize_for_inference
from personsearch.utils.amp import autocast, autocast_dtype

from .counting import WorkCounter
from .flops import count_flops, flops_per_item
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
    BatchNorm statistics on the benchmark images (gallery and query paths); then apply the
    config's ``TEST.OPTIMIZE`` inference optimisations (after the calibration, which needs the
    BatchNorm layers).

    Returns:
        ``(model, info)`` with info ``{"mode", "bn_calibrated", "bn_frozen", "optimizations"}``.
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
    info["optimizations"] = optimize_for_inference(
        model, InferenceOptions.from_config(cfg), amp=bool(cfg.TEST.AMP.ENABLED)
    )
    return model, info


class Session:
    """A prepared measurement: everything built, one call of :meth:`step` is one timed call.

    Used the same way by the sequential runs (:func:`run_session`) and by the interleaved runs of
    several models (:mod:`.interleave`).

    Attributes:
        cuda: the calls run on a GPU (timing synchronises it).
        items_per_call: images (or query boxes) per call.
        info: facts of the setup that go into the result (mode, calibration, optimisations).
    """

    cuda: bool = False
    items_per_call: int = 1
    info: Dict
    _counting = False

    def step(self) -> None:
        """One call of the measured work."""
        raise NotImplementedError

    def grad_mode(self):
        """``torch.inference_mode()`` (what the predictor uses); ``torch.no_grad()`` while FLOPs
        are counted (the counter sees nothing under inference mode)."""
        return torch.no_grad() if self._counting else torch.inference_mode()

    def count_flops(self) -> Dict:
        """One (untimed) call under the FLOP counter: ``{"gflop_per_item", "gflop_by_op"}``."""
        self._counting = True
        try:
            _, counts = count_flops(self.step, getattr(self, "model", None))
        finally:
            self._counting = False
        per = flops_per_item(counts, self.items_per_call)
        return {
            "gflop_per_item": per / 1e9,
            "gflop_by_op": {k: v / 1e9 / max(1, self.items_per_call)
                            for k, v in counts["by_op"].items()},
        }  # fmt: skip

    def result(self) -> Dict:
        """What the calls did (counts of work), after the timed calls."""
        return {}

    def close(self) -> None:
        """Release hooks."""


def run_session(session: Session, runs: int, warmup: int, flops: bool = True) -> Dict:
    """Time a session: its FLOPs counted in the first warm-up call (an extra call without
    warm-up), the other warm-ups, then ``runs`` timed calls.

    Returns:
        ``session.info``, the FLOP counts, :func:`~.timing.measured_runs`' fields and
        ``session.result()``.
    """
    out = dict(session.info)
    if flops:
        out.update(session.count_flops())
        warmup = max(0, warmup - 1)
    timing = measured_runs(
        lambda i: session.step(), runs, warmup, session.cuda, session.items_per_call
    )
    out.update(timing)
    out.update(session.result())
    session.close()
    return out


class InferenceSession(Session):
    """Gallery inference: ``model.inference`` on ``inputs.batch`` images per call."""

    def __init__(
        self,
        cfg,
        inputs: BenchmarkInputs,
        force: bool,
        weights: str = "",
        prepared=None,
        images: Optional[List[torch.Tensor]] = None,
    ):
        """
        Args:
            cfg, inputs, force, weights: the model to build (:func:`prepare_for_inference`).
            prepared: ``(model, info)`` already built and prepared (``cfg`` still gives the
                device, ``TEST.AMP`` and the expected detections).
            images: the (3, H, W) uint8 images of a call, already made (default:
                ``inputs.gallery_images()``).
        """
        self.cfg = cfg
        if prepared is None:
            prepared = prepare_for_inference(cfg, inputs, force, weights)
        self.model, self.info = prepared
        device = _device(cfg)
        self.cuda = device.type == "cuda"
        images = inputs.gallery_images() if images is None else images
        self.batch = [x for img in images for x in _gallery_input(img, device)]
        self.items_per_call = len(self.batch)
        self.counter = WorkCounter(self.model.proposal_generator, self.model.roi_heads.pooler)
        self.detections: List[int] = []
        self.expected = expected_detections(cfg)

    def step(self) -> None:
        self.counter.start_call()
        with self.grad_mode(), _inference_amp(self.cfg, self.model):
            out = self.model.inference(self.batch)
        self.detections.append(len(out[0]["instances"]))

    def result(self) -> Dict:
        return {
            "detections_per_image": self.detections[-1] if self.detections else None,
            "expected_detections": self.expected,
            "images_per_call": self.items_per_call,
            **self.counter.per_image(self.items_per_call),
        }

    def close(self) -> None:
        self.counter.remove()


class QuerySession(Session):
    """Embedding of Q query boxes from precomputed backbone features (no second backbone pass)."""

    def __init__(self, cfg, inputs: BenchmarkInputs, force: bool, weights: str = ""):
        self.cfg = cfg
        self.model, self.info = prepare_for_inference(cfg, inputs, force, weights)
        if not hasattr(self.model.roi_heads, "embed_boxes"):
            raise TypeError(f"{type(self.model.roi_heads).__name__} embeds no query boxes")
        device = _device(cfg)
        self.cuda = device.type == "cuda"
        batch = _gallery_input(inputs.gallery_image(), device)
        with torch.inference_mode(), _query_amp(cfg):
            images = self.model.preprocess_image(batch)
            self.features = self.model.backbone(images.tensor)
        self.boxes = [Boxes(inputs.query_boxes().to(device))]
        self.items_per_call = len(self.boxes[0])
        self.counter = WorkCounter(None, self.model.roi_heads.pooler)
        self.dims: List = []

    def step(self) -> None:
        self.counter.start_call()
        with self.grad_mode(), _query_amp(self.cfg):
            emb = self.model.roi_heads.embed_boxes(self.features, self.boxes)
        self.dims.append(tuple(emb[0].shape))

    def result(self) -> Dict:
        return {
            "embedding_shape": list(self.dims[-1]) if self.dims else None,
            "rois_per_call": self.counter.rois[-1] if self.counter.rois else None,
        }

    def close(self) -> None:
        self.counter.remove()


def measure_inference(
    cfg,
    inputs: BenchmarkInputs,
    runs: int,
    warmup: int,
    force: bool,
    weights: str = "",
    flops: bool = True,
) -> Dict:
    """Gallery inference of ``inputs.batch`` images per call (see the module docstring)."""
    return run_session(InferenceSession(cfg, inputs, force, weights), runs, warmup, flops)


def measure_query(
    cfg,
    inputs: BenchmarkInputs,
    runs: int,
    warmup: int,
    force: bool,
    weights: str = "",
    flops: bool = True,
) -> Dict:
    """Embedding of Q query boxes from precomputed backbone features (see the module
    docstring); ``items_per_call`` is Q."""
    return run_session(QuerySession(cfg, inputs, force, weights), runs, warmup, flops)


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


def run_training_steps(
    cfg,
    model,
    optimizer,
    batches: List,
    timer: Callable[[Callable[[int], None]], Any],
    max_skips: int = 0,
    before: Optional[Callable[[], None]] = None,
) -> Tuple[Any, int]:
    """Time training iterations: the one definition of a benchmark's s/iter (``tools/benchmark.py
    train`` and ``compare``'s train measurement).

    One iteration is ``PersonSearchTrainer``'s guarded train step
    (:class:`~personsearch.engine.train_loop.GuardedTrainLoop`): the forward pass under
    ``SOLVER.AMP``, the non-finite checks, backward and the optimizer step with the config's
    gradient clipping, on the next of ``batches`` (cycled).

    Args:
        cfg: the model's config (``SOLVER.AMP``).
        model: the model, in training mode.
        optimizer: its optimizer (``PersonSearchTrainer.build_optimizer``).
        batches: the training batches (lists of mapped dicts), cycled.
        timer: ``timer(step)`` calls ``step(i)`` for ``i = 0, 1, ...`` (warm-up and timed
            iterations) and returns the timing, e.g. a partial of :func:`.timing.timed_runs`.
        max_skips: non-finite steps that may be skipped (0: the first one raises
            ``FloatingPointError``).
        before: called before every iteration (e.g. a work counter's ``start_call``).

    Returns:
        ``(timer's result, number of skipped non-finite steps)``.
    """
    from detectron2.utils.events import EventStorage

    from personsearch.engine.train_loop import GuardedTrainLoop

    loop = GuardedTrainLoop(
        model,
        itertools.cycle(batches),
        optimizer,
        max_skips=max_skips,
        amp_dtype=cfg.SOLVER.AMP.DTYPE if cfg.SOLVER.AMP.ENABLED else "",
    )
    with EventStorage(0) as storage:

        def step(i):
            if before is not None:
                before()
            loop.iter = storage.iter = i
            loop.run_step()

        timing = timer(step)
    return timing, loop.num_skipped


def measure_train(
    cfg, inputs: BenchmarkInputs, runs: int, warmup: int, force: bool, weights: str = ""
) -> Dict:
    """Training iterations (:func:`run_training_steps`) on a fixed batch (see the module
    docstring). BatchNorm uses batch statistics in training, so no calibration is needed; the RoI
    heads sample ``ROI_HEADS.BATCH_SIZE_PER_IMAGE`` RoIs per image whatever the weights."""
    from personsearch.engine import PersonSearchTrainer

    torch.manual_seed(inputs.seed)
    model = build(cfg)
    model.train()
    optimizer = PersonSearchTrainer.build_optimizer(cfg, model)
    batch = training_batch(inputs)
    device = _device(cfg)
    cuda = device.type == "cuda"
    counter = WorkCounter(model.proposal_generator, model.roi_heads.pooler)
    timing, skipped = run_training_steps(
        cfg,
        model,
        optimizer,
        [batch],
        lambda step: measured_runs(step, runs, warmup, cuda, items_per_call=1),
        max_skips=warmup + runs,
        before=counter.start_call,
    )
    counter.remove()
    n = len(batch)
    return {
        "mode": mode_of(force, weights),
        **timing,
        "images_per_iter": n,
        "nonfinite_skips": skipped,
        **counter.per_image(n),
    }


MEASUREMENTS = {"inference": measure_inference, "query": measure_query, "train": measure_train}
# the measurements that can run interleaved with other models' (a session per model)
SESSIONS = {"inference": InferenceSession, "query": QuerySession}
