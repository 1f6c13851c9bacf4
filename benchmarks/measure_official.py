"""The inference, query and training measurements of an official implementation, on the same
inputs and in the same way as :mod:`.measure` (adapters and their patches: :mod:`.official_code`).
"""

from typing import Dict, List

import torch

from personsearch.utils.amp import autocast, autocast_dtype

from . import official_code
from .counting import WorkCounter
from .forcing import calibrate_batchnorm
from .inputs import BenchmarkInputs
from .measure import Session, run_session
from .timing import measured_runs


def _amp(precision: str, device: torch.device):
    """External ``torch.autocast`` (the official code has no mixed-precision switch)."""
    if precision == "float32":
        return autocast(False, "cpu", None)
    return autocast(True, device.type, autocast_dtype(precision, device.type, "--amp"))


def _float_image(image: torch.Tensor, device) -> torch.Tensor:
    return (image.float() / 255.0).to(device)


def prepare_official_eval(spec: Dict, inputs: BenchmarkInputs, device: torch.device):
    """The official model in eval mode, configured for the benchmark
    (:func:`official_code.configure`), with the weights of ``spec["weights"]`` (an
    official-layout checkpoint, e.g. from :func:`~.official_weights.write_official_weights`) or,
    without, random weights whose BatchNorm statistics are calibrated on the benchmark images.

    Returns:
        ``(model, info)``.
    """
    impl = spec["impl"]
    torch.manual_seed(inputs.seed)
    model = official_code.build_official(impl, spec["path"], training=False).to(device)
    settings = official_code.configure(
        model,
        inputs.height,
        inputs.width,
        spec["pre_nms_topk"],
        spec["post_nms_topk"],
        spec["detections"],
    )
    info = {"official_settings": settings, "notes": official_code.notes(impl)}
    if spec.get("weights"):
        state = torch.load(spec["weights"], map_location=device, weights_only=True)
        model.load_state_dict(state.get("model", state))
        model.eval()
        info.update(mode="forced+weights", bn_calibrated=0, bn_frozen=0)
        return model, info
    q = inputs.calibration_query_boxes().to(device)
    passes = []
    for img in inputs.calibration_images():
        x = _float_image(img, device)

        def run(x=x):
            with _amp(spec["precision"], device):
                official_code.gallery(impl, model, x)
                official_code.query(impl, model, x, q)

        passes.append(run)
    bn = calibrate_batchnorm(model, passes)
    info.update(mode="forced", bn_calibrated=bn["calibrated"], bn_frozen=bn["frozen"])
    return model, info


class OfficialSession(Session):
    """Inference (``inputs.batch`` images per call) or query measurement of an official model."""

    def __init__(self, spec: Dict, measure: str, inputs: BenchmarkInputs):
        if measure not in ("inference", "query"):
            raise ValueError(f"unknown measurement {measure!r}")
        self.spec, self.measure = spec, measure
        self.impl = spec["impl"]
        self.device = torch.device(spec["device"])
        self.cuda = self.device.type == "cuda"
        self.model, self.info = prepare_official_eval(spec, inputs, self.device)
        self.counter = WorkCounter(self.model.rpn, self.model.roi_heads.box_roi_pool)
        self.counts: List[int] = []
        if measure == "inference":
            self.images = [_float_image(img, self.device) for img in inputs.gallery_images()]
            self.items_per_call = len(self.images)
        else:
            self.image = _float_image(inputs.gallery_image(), self.device)
            self.boxes = inputs.query_boxes().to(self.device)
            self.items_per_call = len(self.boxes)

    def step(self) -> None:
        self.counter.start_call()
        with self.grad_mode(), _amp(self.spec["precision"], self.device):
            if self.measure == "inference":
                out = official_code.gallery(self.impl, self.model, self.images)
                self.counts.append(len(out[0]["boxes"]))
            else:
                queries = official_code.query(self.impl, self.model, self.image, self.boxes)
                self.counts.append(len(queries))

    def result(self) -> Dict:
        if self.measure == "query":
            return {"rois_per_call": self.counter.rois[-1] if self.counter.rois else None}
        return {
            "detections_per_image": self.counts[-1] if self.counts else None,
            "expected_detections": self.spec["detections"],
            "images_per_call": self.items_per_call,
            **self.counter.per_image(self.items_per_call),
        }

    def close(self) -> None:
        self.counter.remove()


def measure_official(
    spec: Dict, measure: str, inputs: BenchmarkInputs, runs: int, warmup: int, flops: bool = True
) -> Dict:
    """One measurement of an official model.

    Args:
        spec: ``{"impl": "seqnet"|"nae"|"nae+", "path": clone root, "device", "precision",
            "pre_nms_topk", "post_nms_topk", "detections"}``.
        measure: "inference", "query" or "train".
        inputs, runs, warmup: as for our models.
        flops: count the model FLOPs of a call (inference and query).
    """
    device = torch.device(spec["device"])
    if measure == "train":
        return _measure_train(spec, inputs, runs, warmup, device)
    return run_session(OfficialSession(spec, measure, inputs), runs, warmup, flops)


def _measure_train(spec: Dict, inputs: BenchmarkInputs, runs: int, warmup: int, device) -> Dict:
    impl = spec["impl"]
    cuda = device.type == "cuda"
    torch.manual_seed(inputs.seed)
    model = official_code.build_official(impl, spec["path"], training=True).to(device)
    official_code.configure(
        model,
        inputs.height,
        inputs.width,
        spec["pre_nms_topk"],
        spec["post_nms_topk"],
        spec["detections"],
    )
    model.train()
    optimizer = official_code.optimizer_for(model)
    batch = inputs.training_batch()
    scaler = torch.amp.GradScaler("cuda") if spec["precision"] == "float16" else None
    counter = WorkCounter(model.rpn, model.roi_heads.box_roi_pool)

    def step(i):
        counter.start_call()
        # as in the official engines: the batch is moved to the device inside the loop
        images = [_float_image(img, device) for img, _, _ in batch]
        targets = official_code.training_targets(
            impl, [b for _, b, _ in batch], [p for _, _, p in batch], device
        )
        with _amp(spec["precision"], device):
            losses = model(images, targets)
        loss = sum(v.float() for v in losses.values())
        optimizer.zero_grad()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), official_code.OFFICIAL_CLIP)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()

    timing = measured_runs(step, runs, warmup, cuda, items_per_call=1)
    counter.remove()
    return {
        "mode": "forced",
        "notes": official_code.notes(impl),
        **timing,
        "images_per_iter": len(batch),
        **counter.per_image(len(batch)),
    }
