"""The inference, query and training measurements of an official implementation, on the same
inputs and in the same way as :mod:`.measure` (adapters and their patches: :mod:`.official`)."""

from typing import Dict

import torch

from personsearch.utils.amp import autocast, autocast_dtype

from . import official
from .counting import WorkCounter
from .forcing import calibrate_batchnorm
from .inputs import BenchmarkInputs
from .timing import measured_runs


def _amp(precision: str, device: torch.device):
    """External ``torch.autocast`` (the official code has no mixed-precision switch)."""
    if precision == "float32":
        return autocast(False, "cpu", None)
    return autocast(True, device.type, autocast_dtype(precision, device.type, "--amp"))


def _float_image(image: torch.Tensor, device) -> torch.Tensor:
    return (image.float() / 255.0).to(device)


def _prepare_eval(spec: Dict, inputs: BenchmarkInputs, device: torch.device):
    impl = spec["impl"]
    torch.manual_seed(inputs.seed)
    model = official.build_official(impl, spec["path"], training=False).to(device)
    settings = official.configure(
        model,
        inputs.height,
        inputs.width,
        spec["pre_nms_topk"],
        spec["post_nms_topk"],
        spec["detections"],
    )
    q = inputs.calibration_query_boxes().to(device)
    passes = []
    for img in inputs.calibration_images():
        x = _float_image(img, device)

        def run(x=x):
            with _amp(spec["precision"], device):
                official.gallery(impl, model, x)
                official.query(impl, model, x, q)

        passes.append(run)
    bn = calibrate_batchnorm(model, passes)
    info = {
        "mode": "forced",
        "bn_calibrated": bn["calibrated"],
        "bn_frozen": bn["frozen"],
        "official_settings": settings,
        "notes": official.notes(impl),
    }
    return model, info


def measure_official(
    spec: Dict, measure: str, inputs: BenchmarkInputs, runs: int, warmup: int
) -> Dict:
    """One measurement of an official model.

    Args:
        spec: ``{"impl": "seqnet"|"nae"|"nae+", "path": clone root, "device", "precision",
            "pre_nms_topk", "post_nms_topk", "detections"}``.
        measure: "inference", "query" or "train".
        inputs, runs, warmup: as for our models.
    """
    impl = spec["impl"]
    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    if measure == "train":
        return _measure_train(spec, inputs, runs, warmup, device)
    model, info = _prepare_eval(spec, inputs, device)
    image = _float_image(inputs.gallery_image(), device)
    counter = WorkCounter(model.rpn, model.roi_heads.box_roi_pool)
    counts = []
    if measure == "inference":

        @torch.no_grad()
        def step(i):
            counter.start_call()
            with _amp(spec["precision"], device):
                counts.append(len(official.gallery(impl, model, image)[0]["boxes"]))

        items = 1
    elif measure == "query":
        boxes = inputs.query_boxes().to(device)

        @torch.no_grad()
        def step(i):
            counter.start_call()
            with _amp(spec["precision"], device):
                counts.append(len(official.query(impl, model, image, boxes)))

        items = len(boxes)
    else:
        raise ValueError(f"unknown measurement {measure!r}")
    out = {**info, **measured_runs(step, runs, warmup, cuda, items_per_call=items)}
    counter.remove()
    if measure == "inference":
        out.update(
            detections_per_image=counts[-1] if counts else None,
            expected_detections=spec["detections"],
            **counter.per_image(1),
        )
    else:
        out["rois_per_call"] = counter.rois[-1] if counter.rois else None
    return out


def _measure_train(spec: Dict, inputs: BenchmarkInputs, runs: int, warmup: int, device) -> Dict:
    impl = spec["impl"]
    cuda = device.type == "cuda"
    torch.manual_seed(inputs.seed)
    model = official.build_official(impl, spec["path"], training=True).to(device)
    official.configure(
        model,
        inputs.height,
        inputs.width,
        spec["pre_nms_topk"],
        spec["post_nms_topk"],
        spec["detections"],
    )
    model.train()
    optimizer = official.optimizer_for(model)
    batch = inputs.training_batch()
    scaler = torch.amp.GradScaler("cuda") if spec["precision"] == "float16" else None
    counter = WorkCounter(model.rpn, model.roi_heads.box_roi_pool)

    def step(i):
        counter.start_call()
        # as in the official engines: the batch is moved to the device inside the loop
        images = [_float_image(img, device) for img, _, _ in batch]
        targets = official.training_targets(
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
        torch.nn.utils.clip_grad_norm_(model.parameters(), official.OFFICIAL_CLIP)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()

    timing = measured_runs(step, runs, warmup, cuda, items_per_call=1)
    counter.remove()
    return {
        "mode": "forced",
        "notes": official.notes(impl),
        **timing,
        "images_per_iter": len(batch),
        **counter.per_image(len(batch)),
    }
