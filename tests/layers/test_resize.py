"""resize_bilinear: F.interpolate's bilinear values (align_corners=False) by the NHWC kernel."""

import pytest
import torch
import torch.nn.functional as F

from personsearch.layers import resize_bilinear

SHAPES = [((3, 4, 14, 14), (7, 7)), ((2, 5, 15, 9), (7, 4)), ((2, 3, 7, 7), (14, 14)),
          ((1, 2, 1, 5), (3, 2))]  # fmt: skip


@pytest.mark.parametrize("shape, size", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_values_equal_interpolate_and_the_layout_is_channels_last(shape, size, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape).to(dtype)
    expected = F.interpolate(x, size, mode="bilinear", align_corners=False)
    got = resize_bilinear(x, size)
    assert got.shape == expected.shape and got.dtype == dtype
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_gradients_equal_interpolate_and_same_size_is_a_no_op():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 14, 14, requires_grad=True)
    g = torch.randn(2, 3, 7, 7)
    (resize_bilinear(x, (7, 7)) * g).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    (F.interpolate(x, (7, 7), mode="bilinear", align_corners=False) * g).sum().backward()
    torch.testing.assert_close(ours, x.grad, rtol=1e-6, atol=1e-6)
    assert resize_bilinear(x, (14, 14)) is x
