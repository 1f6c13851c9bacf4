"""LazyConfig versions of the SeqNet and UGAS models (configs/*.py) build the same model as their
yaml twins: the same modules, state-dict keys and shapes, parameter count and hyper-parameters.

Both are built at full ResNet-50 size (no forward pass), so the shipped files are compared as
they are.
"""

import math
import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model
from omegaconf import DictConfig, OmegaConf
from torch import nn

from personsearch import get_person_search_cfg
from tests.common import CONFIGS

PAIRS = [("SeqNet_R50.py", "SeqNet_R50.yaml"), ("UGAS_R50.py", "UGAS_R50.yaml")]
PRIMITIVES = (bool, int, float, str, type(None))


def _plain(v):
    """Config containers -> lists/dicts; tuples -> lists (yaml and lazy spell sequences apart).
    omegaconf >= 2.4 keeps a tuple as a ``TupleConfig``, neither a list nor a ``ListConfig``."""
    if isinstance(v, DictConfig):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)) or OmegaConf.is_config(v):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, float) and math.isfinite(v):
        return round(v, 9)
    return v


def _value(v, depth=0):
    """A comparable description of an attribute: primitives and containers as they are, plain
    helper objects (Matcher, Box2BoxTransform, ShapeSpec, ...) by their own attributes."""
    v = _plain(v)
    if isinstance(v, PRIMITIVES):
        return v
    if isinstance(v, list):
        return [_value(x, depth) for x in v]
    if isinstance(v, dict):
        return {k: _value(x, depth) for k, x in v.items()}
    if isinstance(v, torch.Tensor):
        return ("tensor", tuple(v.shape), v.flatten()[:8].tolist())
    if isinstance(v, nn.Module):
        return ("module", type(v).__name__, repr(v))
    if callable(v) and not hasattr(v, "__dict__"):
        return ("callable", getattr(v, "__name__", type(v).__name__))
    if depth < 2 and hasattr(v, "__dict__"):
        return (type(v).__name__, {k: _value(x, depth + 1) for k, x in vars(v).items()})
    return type(v).__name__


def hyperparameters(model: nn.Module) -> dict:
    """Every non-private, non-tensor attribute of every module (thresholds, sizes, names, ...)."""
    out = {}
    for name, module in model.named_modules():
        for k, v in vars(module).items():
            if k.startswith("_") or k == "training" or callable(v) and not hasattr(v, "__dict__"):
                continue
            out[f"{name}:{k}"] = _value(v)
        out[f"{name}:<type>"] = type(module).__name__
    return out


def build_pair(lazy_file, yaml_file):
    cfg = LazyConfig.load(os.path.join(CONFIGS, lazy_file))
    torch.manual_seed(0)
    lazy = instantiate(cfg.model)
    torch.manual_seed(0)
    yaml = build_model(
        get_person_search_cfg(os.path.join(CONFIGS, yaml_file), ["MODEL.DEVICE", "cpu"])
    )
    return cfg, lazy, yaml


@pytest.mark.parametrize("lazy_file, yaml_file", PAIRS)
def test_lazy_config_builds_the_yaml_model(lazy_file, yaml_file):
    cfg, lazy, yaml = build_pair(lazy_file, yaml_file)
    assert type(lazy) is type(yaml)
    a, b = lazy.state_dict(), yaml.state_dict()
    assert list(a) == list(b)
    assert {k: tuple(v.shape) for k, v in a.items()} == {k: tuple(v.shape) for k, v in b.items()}
    count = sum(p.numel() for p in lazy.parameters())
    assert count == sum(p.numel() for p in yaml.parameters())
    trainable = [n for n, p in lazy.named_parameters() if p.requires_grad]
    assert trainable == [n for n, p in yaml.named_parameters() if p.requires_grad]  # stem frozen
    assert [type(m).__name__ for m in lazy.modules()] == [type(m).__name__ for m in yaml.modules()]
    # every buffer, non-persistent ones included: pixel mean/std, the anchors (sizes, ratios,
    # strides), initial BN statistics and OIM memories ...
    buffers_a, buffers_b = dict(lazy.named_buffers()), dict(yaml.named_buffers())
    assert list(buffers_a) == list(buffers_b)
    for k, v in buffers_a.items():
        torch.testing.assert_close(v, buffers_b[k], msg=k)
    # ... and every hyper-parameter the modules hold (thresholds, sampling, loss weights, ...)
    ha, hb = hyperparameters(lazy), hyperparameters(yaml)
    assert set(ha) == set(hb)
    differing = {k: (ha[k], hb[k]) for k in ha if ha[k] != hb[k]}
    assert not differing
    # the two res5 stages are separate modules in both
    heads = lazy.roi_heads
    assert heads.box_feature_head is not heads.feature_head
    assert count > 30_000_000  # really the R50 model (two res5 stages)


def test_lazy_config_training_sections_instantiate(tmp_path):
    cfg = LazyConfig.load(os.path.join(CONFIGS, "UGAS_R50.py"))
    # detectron2's training script saves the config as yaml (every target is importable)
    LazyConfig.save(cfg, str(tmp_path / "config.yaml"))
    assert not (tmp_path / "config.yaml.pkl").exists()
    assert cfg.train.output_dir == "output/UGAS_R50_lazy"
    assert cfg.dataloader.evaluator.dataset_name == "cuhk_sysu_test"
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    assert optimizer.defaults["lr"] == 0.003
    scheduler = instantiate(cfg.lr_multiplier)
    assert scheduler(0.0) == pytest.approx(0.001) and scheduler(0.9) == pytest.approx(0.1)
    mapper = instantiate(cfg.dataloader.train.mapper)
    assert mapper.is_train and mapper.image_format == "RGB"
    reloaded = instantiate(LazyConfig.load(str(tmp_path / "config.yaml")).model)
    shapes = {k: tuple(v.shape) for k, v in reloaded.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # a lazy config is also the place to change the model: e.g. the SeqNet file without UGAS
    seqnet = LazyConfig.load(os.path.join(CONFIGS, "SeqNet_R50.py"))
    assert seqnet.model.roi_heads.ugas is None and seqnet.train.output_dir.endswith(
        "SeqNet_R50_lazy"
    )
