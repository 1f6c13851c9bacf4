"""The one loading policy (personsearch.utils.serialization): the project's own files load
weights-only on every torch, foreign formats load through their allow-lists, anything else is
refused (and never executed) unless the file is listed as trusted."""

import collections
import logging
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from detectron2.engine import HookBase
from torch import nn

from personsearch.checkpoint import PersonSearchCheckpointer
from personsearch.engine import PersonSearchTrainer
from personsearch.evaluation import load_results, save_results
from personsearch.utils.serialization import (
    TRUSTED_FILES_ENV,
    UntrustedFileError,
    check_saved_types,
    load_arrays,
    load_pickle_file,
    load_torch_file,
    referenced_globals,
    unsafe_globals,
)
from tests.common import tiny_cfg, tiny_synthetic_splits


@pytest.fixture(autouse=True)
def no_trusted_files(monkeypatch):
    monkeypatch.delenv(TRUSTED_FILES_ENV, raising=False)


def touch(path):
    """Creates ``path``: what unpickling a :class:`Payload` would run."""
    open(path, "w").close()


class Payload:
    """Unpickling it runs code: it creates the file named by ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (touch, (self.marker,))


class Opaque:
    """A plain class of this module: no torch version's weights-only loader allows it."""

    def __init__(self, value):
        self.value = value


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trainer after 3 SGD iterations with a checkpoint at iteration 2 (model, optimizer with
    momentum buffers, scheduler, iteration, skip count, run seed)."""
    root = tmp_path_factory.mktemp("serialization")
    names = tiny_synthetic_splits(str(root / "data"), "ser")
    cfg = tiny_cfg(
        opts=["DATASETS.TRAIN", (names["train"],), "DATASETS.TEST", (), "MODEL.OIM.NUM_PIDS", 4,
              "SOLVER.MAX_ITER", 3, "SOLVER.IMS_PER_BATCH", 2, "SOLVER.CHECKPOINT_PERIOD", 2,
              "SEED", 3, "OUTPUT_DIR", str(root / "run")]  # fmt: skip
    )
    trainer = PersonSearchTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return cfg, trainer, str(root / "run")


def test_the_trainers_checkpoints_are_weights_only(trained):
    cfg, trainer, out = trained
    path = os.path.join(out, "model_0000001.pth")
    # only tensors, storages and OrderedDict: nothing outside torch's weights-only set
    assert unsafe_globals(path) == []
    assert "collections.OrderedDict" in referenced_globals(path)
    data = load_torch_file(path)
    assert data["iteration"] == 1
    assert data["trainer"]["run_seed"] == 3
    assert data["trainer"]["_trainer"]["optimizer"]["state"]  # momentum buffers were saved
    # --resume reads it through the same policy and restores the training state
    resumed = PersonSearchTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3  # model_final (iteration 2) is the last checkpoint
    assert resumed.run_seed == 3


class NumpyStateHook(HookBase):
    """A hook whose state holds a numpy scalar (weights-only loading refuses numpy globals)."""

    def state_dict(self):
        return {"best": np.float64(0.5), "history": [1, np.int64(2)]}


def test_saving_a_value_that_would_not_load_weights_only_is_an_error(trained, tmp_path):
    _, trainer, _ = trained
    ckpt = PersonSearchCheckpointer(trainer.model, str(tmp_path), trainer=trainer)
    trainer.register_hooks([NumpyStateHook()])
    try:
        with pytest.raises(TypeError) as e:
            ckpt.save("model_bad", iteration=1)
    finally:
        trainer._hooks.pop()
    msg = str(e.value)
    assert str(tmp_path / "model_bad.pth") in msg
    assert "['NumpyStateHook']['best']: numpy.float64" in msg
    assert "['NumpyStateHook']['history'][1]: numpy.int64" in msg
    assert not list(tmp_path.glob("model_bad*"))  # nothing written
    ckpt.save("model_good", iteration=1)  # the same trainer state without the hook saves
    assert unsafe_globals(str(tmp_path / "model_good.pth")) == []


def test_check_saved_types_accepts_plain_values_and_tensors():
    check_saved_types(
        {"a": [1, 2.0, "x", None, True, (1, 2)], "b": collections.OrderedDict(t=torch.ones(2))}
    )
    with pytest.raises(TypeError, match=r"<root>: a key of type numpy.int64; \['k'\]: a key of"):
        check_saved_types({np.int64(1): 2, "k": {np.int64(3): 1}})
    with pytest.raises(TypeError, match="<root>: collections.Counter"):
        check_saved_types(collections.Counter())


def test_results_files_are_weights_only(tmp_path):
    path = str(tmp_path / "r.pth")
    results = {"format_version": 1, "dataset": "d", "config": "", "gallery": {}, "queries": []}
    save_results(path, results)
    assert unsafe_globals(path) == []
    assert load_results(path) == results
    with pytest.raises(TypeError, match="results file .*r2.pth.*\\['dataset'\\]: numpy.str_"):
        save_results(str(tmp_path / "r2.pth"), dict(results, dataset=np.str_("d")))
    assert not os.path.exists(tmp_path / "r2.pth")


@pytest.mark.parametrize("legacy", [False, True])
def test_a_file_that_needs_arbitrary_unpickling_is_refused_and_nothing_runs(tmp_path, legacy):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save(
        {"model": {"w": torch.ones(2)}, "x": Payload(str(marker))},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    assert unsafe_globals(str(path)) == [f"{__name__}.touch"]
    with pytest.raises(UntrustedFileError) as e:
        load_torch_file(str(path))
    assert e.value.path == str(path) and e.value.unsafe_globals == [f"{__name__}.touch"]
    assert f"{TRUSTED_FILES_ENV}={path}" in str(e.value)
    assert not marker.exists()
    model = nn.Linear(2, 2)
    with pytest.raises(UntrustedFileError, match=f"{__name__}.touch"):
        PersonSearchCheckpointer(model).load(str(path))  # MODEL.WEIGHTS / resume: same policy
    assert not marker.exists()


def test_a_trusted_file_is_fully_unpickled_with_a_warning(tmp_path, monkeypatch, caplog):
    path = tmp_path / "odd.pth"
    torch.save({"model": {}, "obj": Opaque(2)}, path)
    with pytest.raises(UntrustedFileError, match=f"{__name__}.Opaque"):
        load_torch_file(str(path))
    monkeypatch.setenv(TRUSTED_FILES_ENV, str(tmp_path / "another.pth"))
    with pytest.raises(UntrustedFileError):  # only the files listed
        load_torch_file(str(path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(TRUSTED_FILES_ENV, os.pathsep.join(["another.pth", "odd.pth"]))
    with caplog.at_level(logging.WARNING):
        loaded = load_torch_file(str(path))
    assert loaded["obj"].value == 2
    assert "full unpickling" in caplog.text and f"{__name__}.Opaque" in caplog.text
    # a restricted unpickler that allows the class (how foreign formats are read)
    allowed = {f"{__name__}.Opaque"}
    assert load_torch_file(str(path), trusted=False, allowed_globals=allowed)["obj"].value == 2


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint", b"PK\x03\x04 truncated zip", pickle.dumps([1, 2], protocol=2)[:-3]],
)
def test_a_damaged_file_is_unreadable_not_untrusted(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="Cannot read checkpoint .*bad.pth") as e:
        load_torch_file(str(path))
    assert not isinstance(e.value, UntrustedFileError)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_torch_file(str(tmp_path / "nope.pth"))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_referenced_globals_reads_every_pickle_protocol(tmp_path, protocol):
    path = tmp_path / "p.pkl"
    value = {"c": collections.Counter(a=1), "d": collections.defaultdict(int), "o": Payload("x")}
    value["c2"] = collections.Counter(b=1)  # a repeated global: memoised in protocols >= 4
    with open(path, "wb") as f:
        pickle.dump(value, f, protocol=protocol)
    # Python 3 names also where protocol 2 writes Python 2's (__builtin__.long for int)
    expected = ["builtins.int", "collections.Counter", "collections.defaultdict"]
    expected = sorted(expected + [f"{__name__}.touch"])
    assert referenced_globals(str(path)) == expected


def _zoo_pickle(path, numpy_core_alias=False, protocol=2, **extra):
    """A model-zoo style pickle of an nn.Linear(3, 2) (numpy arrays); ``numpy_core_alias`` writes
    numpy 1's module name ``numpy.core`` as files from the model zoo do, whatever numpy runs."""
    weights = {"weight": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.ones(2, "f4")}
    data = dict({"model": weights, "__author__": "Detectron2 Model Zoo"}, **extra)
    blob = pickle.dumps(data, protocol=protocol)
    if numpy_core_alias:
        blob = blob.replace(b"numpy._core.", b"numpy.core.")
        assert b"numpy.core.multiarray" in blob
    path.write_bytes(blob)
    return weights


@pytest.mark.parametrize("alias, protocol", [(False, 2), (True, 2), (False, 4)])
def test_model_zoo_pickles_load_through_their_allow_list(tmp_path, alias, protocol):
    path = tmp_path / "model_final.pkl"
    weights = _zoo_pickle(path, numpy_core_alias=alias, protocol=protocol)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numpy 2's DeprecationWarning for numpy.core
        data = load_pickle_file(str(path))
    np.testing.assert_array_equal(data["model"]["weight"], weights["weight"])
    model = nn.Linear(3, 2)
    PersonSearchCheckpointer(model).load(str(path))
    torch.testing.assert_close(model.weight.detach(), torch.from_numpy(weights["weight"]))


def test_model_zoo_pickle_with_other_objects_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "model_final.pkl"
    _zoo_pickle(path, payload=Payload(str(marker)))
    with pytest.raises(UntrustedFileError, match=f"model_final.pkl.*{__name__}.touch"):
        PersonSearchCheckpointer(nn.Linear(3, 2)).load(str(path))
    assert not marker.exists()


def test_caffe2_and_pycls_files_load_weights_only(tmp_path):
    model = nn.Linear(3, 2)
    caffe2 = tmp_path / "R-10.pkl"
    w = np.full((2, 3), 2.0, np.float32)
    blobs = {"weight": w, "weight_momentum": w * 0, "bias": w[0, :2]}
    caffe2.write_bytes(pickle.dumps({"blobs": blobs}))
    loaded = PersonSearchCheckpointer(model).load(str(caffe2))
    assert loaded == {"__author__": "Caffe2", "matching_heuristics": True}  # the model only
    torch.testing.assert_close(model.weight.detach(), torch.full((2, 3), 2.0))
    pycls = tmp_path / "model.pyth"
    torch.save({"model_state": {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}}, pycls)
    PersonSearchCheckpointer(model).load(str(pycls))
    torch.testing.assert_close(model.weight.detach(), torch.zeros(2, 3))
    torch.save({"epoch": 3}, pycls)
    with pytest.raises(ValueError, match="model.pyth.*'model_state'"):
        PersonSearchCheckpointer(model).load(str(pycls))


def test_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.arange(3), o=np.array([{"a": 1}], dtype=object))
    with load_arrays(str(path)) as npz:
        np.testing.assert_array_equal(npz["x"], np.arange(3))
        with pytest.raises(ValueError, match="allow_pickle"):
            npz["o"]
