"""Helpers shared by the tests: tiny configs, random model inputs, multi-process runs."""

import contextlib
import copy
import functools
import importlib.util
import logging
import os
import signal
import tempfile
import uuid
from datetime import timedelta
from typing import Callable, Sequence

import torch
from detectron2.engine import launch
from detectron2.structures import Boxes, Instances

from personsearch import get_person_search_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")

# A narrow ResNet-10 C4 model with few RoIs: a train step takes well under a second on a CPU.
TINY_MODEL_OPTS = [
    "MODEL.DEVICE", "cpu",
    "MODEL.WEIGHTS", "",
    "MODEL.RESNETS.DEPTH", 10,
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 8,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 8,
    "MODEL.REID_HEAD.EMBED_DIM", 16,
    "MODEL.OIM.NUM_PIDS", 8,
    "MODEL.OIM.CQ_SIZE", 16,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 200,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 50,
    "MODEL.RPN.PRE_NMS_TOPK_TEST", 200,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 50,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 8,
    "INPUT.MIN_SIZE_TRAIN", (96,),
    "INPUT.MAX_SIZE_TRAIN", 160,
    "INPUT.MIN_SIZE_TEST", 96,
    "INPUT.MAX_SIZE_TEST", 160,
    "DATALOADER.NUM_WORKERS", 0,
]  # fmt: skip


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> int:
    """Give every BatchNorm of ``model`` non-trivial running statistics and affine parameters (a
    fresh BatchNorm is nearly the identity, which hides mistakes in code that rewrites it, such as
    BatchNorm folding); returns how many there are."""
    from detectron2.layers import FrozenBatchNorm2d

    g = torch.Generator().manual_seed(seed)
    count = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)):
                c = m.running_mean.numel()
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                count += 1
    return count


def tiny_synthetic_splits(root: str, prefix: str) -> dict:
    """Generate a 6 + 6 image synthetic set under ``root`` and register its splits as
    ``{prefix}_train`` / ``{prefix}_test`` (re-registered if a name exists).

    Returns:
        ``{"train": name, "test": name}``.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from personsearch.data.datasets.cuhk_sysu import register_cuhk_sysu
    from synthetic_generator import generate_synthetic_dataset

    generate_synthetic_dataset(
        root,
        num_train_images=6,
        num_test_images=6,
        num_train_ids=4,
        num_test_ids=3,
        gallery_sizes=(4,),
        workers=1,
        progress=False,
    )
    names = {}
    for split in ("train", "test"):
        name = f"{prefix}_{split}"
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_cuhk_sysu(name, root, split)
        names[split] = name
    return names


def tiny_cfg(config_file: str = "Base-PersonSearch.yaml", opts: Sequence = ()):
    """A CPU-sized config built from one of the repository's config files."""
    return get_person_search_cfg(os.path.join(CONFIGS, config_file), TINY_MODEL_OPTS + list(opts))


def random_input(height: int = 96, width: int = 128, pids=(0, -1, 3), seed: int = 0) -> dict:
    """A mapper-like training input with one box per person id."""
    g = torch.Generator().manual_seed(seed)
    inst = Instances((height, width))
    boxes = []
    for i, _ in enumerate(pids):
        x1 = 5 + 35 * i
        boxes.append([x1, 10.0, x1 + 25.0, 80.0])
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.zeros(len(pids), dtype=torch.long)
    inst.gt_pids = torch.tensor(list(pids), dtype=torch.long)
    image = torch.randint(0, 255, (3, height, width), dtype=torch.uint8, generator=g)
    return {"image": image, "instances": inst, "height": height, "width": width}


def run_distributed(fn: Callable, world_size: int, *args) -> None:
    """Run ``fn(*args)`` in ``world_size`` CPU processes joined by a gloo process group.

    ``fn`` must be a module-level function (it is pickled); it can find its rank with
    ``detectron2.utils.comm.get_rank()``. Results must be passed back through files.
    """
    launch(
        _finishing,
        world_size,
        num_machines=1,
        machine_rank=0,
        dist_url=local_dist_url(),
        args=(fn,) + args,
        timeout=DIST_TIMEOUT,
    )


# A test whose processes wait longer than this for each other fails instead of hanging CI for
# the 30 minutes of detectron2's default.
DIST_TIMEOUT = timedelta(minutes=3)


def local_dist_url() -> str:
    """A ``file://`` rendezvous unique to one run. With ``--dist-url auto`` every run picks a free
    port, closes it and binds it again later, so runs side by side on one machine could pick the
    same port in between; a rendezvous file has no such race."""
    return "file://" + os.path.join(tempfile.gettempdir(), f"personsearch-dist-{uuid.uuid4().hex}")


def _finishing(fn: Callable, *args) -> None:
    """Run ``fn`` then leave the process group together (``fn`` may have left it itself)."""
    from personsearch.utils.comm import leave_process_group

    fn(*args)
    leave_process_group()


def cpu_threads(n: int = 1):
    """Use ``n`` intra-op threads (worker processes of multi-process tests share 2 cores)."""
    torch.set_num_threads(n)


def tiny_opts(names, out_dir, *extra) -> list:
    """Command-line config overrides: the tiny model trained for 4 iterations on the splits
    ``names["train"]`` / ``names["test"]`` (the tiny synthetic set of the tool tests)."""
    base = [str(tuple(v)) if isinstance(v, (list, tuple)) else str(v) for v in TINY_MODEL_OPTS]
    return base + [
        "MODEL.OIM.NUM_PIDS", "4",
        "DATASETS.TRAIN", f"('{names['train']}',)",
        "DATASETS.TEST", f"('{names['test']}',)",
        "TEST.SEARCH.GALLERY_SIZE", "4",
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.MAX_ITER", "4",
        "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.STEPS", "(3,)",
        "SOLVER.CHECKPOINT_PERIOD", "2",
        "OUTPUT_DIR", str(out_dir),
        *extra,
    ]  # fmt: skip


@functools.lru_cache(maxsize=None)
def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"_personsearch_tool_{name}", os.path.join(REPO, "tools", name + ".py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def time_limit(seconds: float, what: str = "the call"):
    """Raise ``TimeoutError`` in the main thread if the block runs longer than ``seconds``."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"{what} did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def warning_messages(caplog) -> list:
    """The WARNING-and-above messages captured by pytest's ``caplog``, in order."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def rounded_records(records):
    """A copy of ``records`` with box coordinates rounded to 1e-6 (XYWH <-> XYXY conversions in a
    save/load round trip add ~1e-14)."""
    out = copy.deepcopy(records)
    for r in out:
        for a in r["annotations"] + r.get("queries", []):
            a["bbox"] = [round(v, 6) for v in a["bbox"]]
    return out
