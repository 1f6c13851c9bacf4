"""SyncBatchNormND is an ordinary BatchNorm in one process, for (N, C) and (N, C, H, W)."""

import pytest
import torch
from torch import nn

from personsearch.layers import SyncBatchNormND, build_norm


@pytest.mark.parametrize("shape,ref", [((6, 4), nn.BatchNorm1d), ((3, 4, 5, 5), nn.BatchNorm2d)])
def test_single_process_equals_batchnorm(shape, ref):
    torch.manual_seed(0)
    sync, plain = SyncBatchNormND(4), ref(4)
    plain.load_state_dict(sync.state_dict())  # same parameter and buffer names
    x = torch.randn(*shape)
    for m in (sync, plain):
        m.train()
    torch.testing.assert_close(sync(x), plain(x))
    torch.testing.assert_close(sync.running_var, plain.running_var)
    for m in (sync, plain):
        m.eval()
    torch.testing.assert_close(sync(x), plain(x))


def test_build_norm():
    assert isinstance(build_norm("BN", 3, 1), nn.BatchNorm1d)
    assert isinstance(build_norm("BN", 3, 2), nn.BatchNorm2d)
    assert isinstance(build_norm("SyncBN", 3, 1), SyncBatchNormND)
    with pytest.raises(ValueError, match="MODEL.X must be one of"):
        build_norm("GN", 3, 1, "MODEL.X")
