"""PersonSearchCheckpointer: atomic saves and weights-only loading."""

import logging
import os

import pytest
import torch
from torch import nn

from personsearch.checkpoint import PersonSearchCheckpointer
from personsearch.utils.serialization import TRUSTED_FILES_ENV, UntrustedFileError


class NotATensor:
    """A custom object that weights-only loading refuses."""

    value = 3


def make(tmp_path):
    model = nn.Linear(3, 2)
    return model, PersonSearchCheckpointer(model, save_dir=str(tmp_path))


def test_save_writes_checkpoint_and_tag(tmp_path):
    model, ckpt = make(tmp_path)
    ckpt.save("model_0000009", iteration=9)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert not list(tmp_path.glob("*.tmp"))
    data = torch.load(tmp_path / "model_0000009.pth", weights_only=True)
    assert data["iteration"] == 9
    torch.testing.assert_close(data["model"]["weight"], model.weight.detach())


def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model, ckpt = make(tmp_path)
    ckpt.save("model_0000004", iteration=4)
    good = (tmp_path / "model_0000004.pth").read_bytes()
    real_save = torch.save

    def crash(obj, f, *a, **k):  # write part of the file, then die
        f.write(b"partial")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000009", iteration=9)
    monkeypatch.setattr(torch, "save", real_save)
    # no file under the final name, the tag still names the complete checkpoint
    assert not (tmp_path / "model_0000009.pth").exists()
    assert ckpt.get_checkpoint_file() == os.path.join(str(tmp_path), "model_0000004.pth")
    assert (tmp_path / "model_0000004.pth").read_bytes() == good
    model2, ckpt2 = make(tmp_path)
    assert ckpt2.resume_or_load("", resume=True)["iteration"] == 4


def test_weights_only_load_and_refusal_unless_trusted(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv(TRUSTED_FILES_ENV, raising=False)
    model, ckpt = make(tmp_path)
    plain = tmp_path / "plain.pth"
    torch.save({"model": model.state_dict()}, plain)
    with caplog.at_level(logging.WARNING):
        ckpt.load(str(plain))
    assert "unpickling" not in caplog.text
    odd = tmp_path / "odd.pth"
    torch.save({"model": model.state_dict(), "extra": NotATensor()}, odd)
    with pytest.raises(UntrustedFileError) as e:
        ckpt.load(str(odd))
    # the message names the file, the class it would import and how to allow the file
    assert f"{TRUSTED_FILES_ENV}={odd}" in str(e.value)
    assert f"{__name__}.NotATensor" in str(e.value)
    assert e.value.unsafe_globals == [f"{__name__}.NotATensor"]
    monkeypatch.setenv(TRUSTED_FILES_ENV, str(tmp_path / "other.pth") + os.pathsep + str(odd))
    with caplog.at_level(logging.WARNING):
        loaded = ckpt.load(str(odd))
    assert "full unpickling" in caplog.text and str(odd) in caplog.text
    assert loaded["extra"].value == 3


def test_old_import_paths_still_work_with_a_deprecation_warning():
    import personsearch.engine
    import personsearch.engine.checkpointer as old_module
    from personsearch.checkpoint.model_zoo import map_detector_checkpoint
    from personsearch.data.build import load_training_records

    with pytest.deprecated_call(match="personsearch.checkpoint.PersonSearchCheckpointer"):
        assert personsearch.engine.PersonSearchCheckpointer is PersonSearchCheckpointer
    with pytest.deprecated_call(match="personsearch.data.build.load_training_records"):
        assert personsearch.engine.load_training_records is load_training_records
    with pytest.deprecated_call(match="personsearch.checkpoint.model_zoo"):
        assert old_module.map_detector_checkpoint is map_detector_checkpoint
    with pytest.raises(AttributeError):
        personsearch.engine.no_such_name  # noqa: B018
