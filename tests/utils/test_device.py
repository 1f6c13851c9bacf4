"""utils.device: one check and one message for a CUDA config on a machine without CUDA."""

import pytest
import torch

from personsearch.utils.device import check_device, cuda_unavailable_message


def test_cuda_without_cuda_names_the_source_and_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = cuda_unavailable_message("cuda:1", "configs/OIM_R50.yaml")
    assert message == (
        "configs/OIM_R50.yaml: MODEL.DEVICE is 'cuda:1' but CUDA is not available; add "
        "'MODEL.DEVICE cpu' to the command to run on the CPU."
    )
    for error in (SystemExit, RuntimeError, ValueError):
        with pytest.raises(error, match="CUDA is not available; add 'MODEL.DEVICE cpu'"):
            check_device("cuda", "x.yaml", error)
    assert cuda_unavailable_message("cpu", "x.yaml") is None
    check_device("cpu", "x.yaml")


def test_cuda_with_cuda_is_fine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cuda_unavailable_message("cuda", "x.yaml") is None
    check_device("cuda", "x.yaml", SystemExit)
