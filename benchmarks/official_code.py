"""Run-time adapters of the official SeqNet, NAE and NAE+ implementations, for measuring them in
the same run, on the same input, with the same proposal settings as our models.

The official code is **never vendored or imported by the package otherwise**: the user passes the
root of a clone (``--official seqnet=/path/to/SeqNet nae=/path/to/NAE4PS nae+=/path/to/NAE4PS``),
which is put at the front of ``sys.path`` only inside the measuring process. The clones are
https://github.com/serend1p1ty/SeqNet and https://github.com/DeanChan/NAE4PS (NAE and NAE+ are
the same code; NAE+ is its ``--pixel_wise --embedding_feat_fuse`` model).

What is patched at run time, and why (nothing is written to the clone):

* **torchvision's ``resnet50`` (both)**: ``torchvision.models.resnet.resnet50`` is replaced, while
  the model is constructed only, by a function that ignores ``pretrained`` and builds with
  ``weights=None``. SeqNet hard-codes ``pretrained=True``, which downloads ImageNet weights (no
  internet here, and forced mode wants random weights anyway); NAE passes the deprecated
  ``pretrained=False``. The architecture is unchanged.
* **``huepy`` and ``cPickle`` (NAE)**: NAE4PS's ``lib/utils`` imports the colour-printing package
  ``huepy`` and Python 2's ``cPickle`` at module level. When they cannot be imported, stubs are put
  in ``sys.modules`` (``huepy``: functions returning their argument; ``cPickle``: ``pickle``).
* **Two Python 2 idioms in ``NormAwareEmbeddingProj.__init__`` (NAE)**: ``self.in_channels =
  map(int, in_channels)`` is an iterator in Python 3 (``len`` fails) and ``_split_embedding_dim``
  divides with ``/`` (float layer widths). The module-level name ``map`` of
  ``lib.model.faster_rcnn_norm_aware`` is set to a list-returning ``map``, and the method
  ``NormAwareEmbeddingProj._split_embedding_dim`` is replaced by the same computation with ``//``.
  Both are identities on a copy where these lines were already fixed.

What is set as attributes (the official settings being changed, like our forced mode):

* the transform's ``min_size`` / ``max_size`` are set to the image's own sides, so its resize is
  the identity (torchvision's transform still normalises and pads the batch to a multiple of 32);
* RPN pre/post-NMS top-k at test time (``rpn._pre_nms_top_n["testing"]``,
  ``rpn._post_nms_top_n["testing"]``: 6000 / 300 as in the R50 configs);
* RoI heads ``score_thresh = 0``, ``nms_thresh = 1.0``, ``detections_per_img`` = the top-k.
  SeqNet's code then forces ``nms_thresh = 0.5`` itself around its second-stage post-processing
  (``SeqRoIHeads.forward``), which is left as it is: its second stage still embeds every
  first-stage box, but returns fewer detections;
* with random weights, BatchNorm statistics are calibrated exactly as for our models
  (:func:`~.forcing.calibrate_batchnorm` on the gallery and query paths).

Training targets carry ``labels`` = person id + 1 (every benchmark person is labeled) and, for NAE,
an empty float32 ``keypoints`` (N, 0, 3) tensor: NAE's RoI heads test ``self.has_keypoint``, a
bound method under torchvision >= 0.6 and therefore always true, then check
``t["keypoints"].dtype``; nothing else reads it. The optimizer step mirrors both official engines:
SGD (lr 0.003, momentum 0.9, weight decay 5e-4) with the gradient norm clipped at 10.

The official query path is the one their evaluation uses: SeqNet ``model([img], [{"boxes":
...}])``, NAE ``model.ex_feat([img], [{"boxes": ...}])``. It runs the backbone again on the query
image; it is timed as it is.
"""

import builtins
import contextlib
import importlib
import os
import pickle
import sys
import types
from typing import Dict, List, Sequence

import torch
from torch import nn

IMPLEMENTATIONS = ("seqnet", "nae", "nae+")
DISPLAY_NAMES = {"seqnet": "official SeqNet", "nae": "official NAE", "nae+": "official NAE+"}
# files that identify a clone's root
_MARKERS = {
    "seqnet": ("models/seqnet.py", "defaults.py"),
    "nae": ("lib/model/faster_rcnn_norm_aware.py", "configs/res50_faster_rcnn.py"),
    "nae+": ("lib/model/faster_rcnn_pixel_wise_norm_aware.py", "configs/res50_faster_rcnn.py"),
}
_REPOS = {
    "seqnet": "https://github.com/serend1p1ty/SeqNet",
    "nae": "https://github.com/DeanChan/NAE4PS",
    "nae+": "https://github.com/DeanChan/NAE4PS",
}
# the official optimizer and gradient clipping (SeqNet defaults.py, NAE configs)
OFFICIAL_LR, OFFICIAL_MOMENTUM, OFFICIAL_WEIGHT_DECAY, OFFICIAL_CLIP = 0.003, 0.9, 5e-4, 10.0


def check_official_path(impl: str, path: str) -> str:
    """The absolute root of an official clone, checked.

    Raises:
        ValueError: unknown implementation name.
        FileNotFoundError: the path is missing or is not the root of that code.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(
            f"--official {impl}=...: unknown implementation {impl!r}; use one of "
            f"{list(IMPLEMENTATIONS)}"
        )
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"--official {impl}: directory not found: {path!r} (the root of a clone of "
            f"{_REPOS[impl]})"
        )
    missing = [m for m in _MARKERS[impl] if not os.path.isfile(os.path.join(root, m))]
    if missing:
        raise FileNotFoundError(
            f"--official {impl}: {path!r} is not the root of {_REPOS[impl]}: "
            f"{', '.join(missing)} not found there"
        )
    return root


@contextlib.contextmanager
def _random_init_resnet50():
    """torchvision's ``resnet50`` without pretrained weights, while the model is built."""
    import torchvision.models.resnet as tv_resnet

    original = tv_resnet.resnet50

    def resnet50(pretrained=False, progress=True, **kwargs):
        kwargs.pop("weights", None)
        return original(weights=None, progress=progress, **kwargs)

    tv_resnet.resnet50 = resnet50
    try:
        yield
    finally:
        tv_resnet.resnet50 = original


def _put_on_path(root: str) -> None:
    if root not in sys.path:
        sys.path.insert(0, root)


def _stub_python2_modules() -> None:
    """``huepy`` and ``cPickle`` for NAE4PS's ``lib/utils`` (see the module docstring)."""
    try:
        importlib.import_module("huepy")
    except ImportError:
        names = ("good", "info", "red", "bold", "green", "lightgreen", "yellow", "orange", "bad")
        sys.modules["huepy"] = types.SimpleNamespace(**{n: str for n in names})
    sys.modules.setdefault("cPickle", pickle)


def _list_map(fn, *iterables):
    return list(builtins.map(fn, *iterables))


def _split_embedding_dim(self) -> List[int]:
    """``NormAwareEmbeddingProj._split_embedding_dim`` with integer division."""
    parts = len(self.in_channels)
    dims = [self.dim // parts] * parts
    for i in range(1, self.dim - sum(dims) + 1):
        dims[-i] += 1
    return dims


def _patch_nae() -> None:
    module = importlib.import_module("lib.model.faster_rcnn_norm_aware")
    module.map = _list_map
    module.NormAwareEmbeddingProj._split_embedding_dim = _split_embedding_dim


def _build_seqnet(root: str) -> nn.Module:
    _put_on_path(root)
    defaults = importlib.import_module("defaults")
    seqnet = importlib.import_module("models.seqnet")
    with _random_init_resnet50():
        return seqnet.SeqNet(defaults.get_default_cfg())


def _build_nae(root: str, pixel_wise: bool, training: bool) -> nn.Module:
    _put_on_path(root)
    _stub_python2_modules()
    _patch_nae()
    configs = importlib.import_module("configs.res50_faster_rcnn")
    misc = importlib.import_module("lib.utils.misc")
    argv = ["--pixel_wise", "--embedding_feat_fuse"] if pixel_wise else []
    args = configs.args_faster_rcnn_norm_aware().parse_args(argv, namespace=misc.Nestedspace())
    if pixel_wise:
        getter = importlib.import_module("lib.model.faster_rcnn_pixel_wise_norm_aware")
        build = getter.get_pixel_wise_norm_aware_model
    else:
        getter = importlib.import_module("lib.model.faster_rcnn_norm_aware")
        build = getter.get_norm_aware_model
    with _random_init_resnet50():
        return build(args, training=training, pretrained_backbone=False)


def build_official(impl: str, root: str, training: bool) -> nn.Module:
    """The official model with random weights (in train or eval mode, as their scripts build it
    for training or testing)."""
    root = check_official_path(impl, root)
    if impl == "seqnet":
        model = _build_seqnet(root)
    else:
        model = _build_nae(root, pixel_wise=impl == "nae+", training=training)
    return model.train(training)


def configure(
    model: nn.Module, height: int, width: int, pre_nms: int, post_nms: int, detections: int
) -> Dict[str, object]:
    """Set the input and proposal settings (see the module docstring); returns what was set."""
    model.transform.min_size = (min(height, width),)
    model.transform.max_size = max(height, width)
    model.rpn._pre_nms_top_n["testing"] = int(pre_nms)
    model.rpn._post_nms_top_n["testing"] = int(post_nms)
    heads = model.roi_heads
    heads.score_thresh = 0.0
    heads.nms_thresh = 1.0
    heads.detections_per_img = int(detections)
    return {
        "transform": [model.transform.min_size[0], model.transform.max_size],
        "rpn_topk_test": [int(pre_nms), int(post_nms)],
        "roi": {"score_thresh": 0.0, "nms_thresh": 1.0, "detections_per_img": int(detections)},
    }


def gallery(impl: str, model: nn.Module, images) -> List[Dict]:
    """Detections of one (3, H, W) float image in [0, 1], or of a list of them (one call)."""
    return model(list(images) if isinstance(images, (list, tuple)) else [images])


def query(impl: str, model: nn.Module, image: torch.Tensor, boxes: torch.Tensor):
    """Embeddings of query boxes, by the official query path (backbone included)."""
    targets = [{"boxes": boxes}]
    if impl == "seqnet":
        return model([image], targets)
    return model.ex_feat([image], targets)


def training_targets(
    impl: str, boxes: Sequence[torch.Tensor], pids: Sequence[torch.Tensor], device
) -> List[Dict]:
    """Official training targets: boxes, labels = pid + 1 (and NAE's empty keypoints)."""
    out = []
    for b, p in zip(boxes, pids):
        t = {"boxes": b.to(device), "labels": (p + 1).to(device)}
        if impl != "seqnet":
            t["keypoints"] = torch.zeros((len(b), 0, 3), dtype=torch.float32, device=device)
        out.append(t)
    return out


def optimizer_for(model: nn.Module) -> torch.optim.Optimizer:
    """The official SGD recipe."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(
        params, lr=OFFICIAL_LR, momentum=OFFICIAL_MOMENTUM, weight_decay=OFFICIAL_WEIGHT_DECAY
    )


def notes(impl: str) -> List[str]:
    """What a reader of the table must know about an official row."""
    out = [
        "query path runs the backbone again on the query image (their evaluation's query path)",
        "torchvision's transform pads the input to a multiple of 32",
    ]
    if impl == "seqnet":
        out.append("second-stage NMS forced to 0.5 by the official code: fewer final detections")
    return out
