"""ALGORITHMS.md §2.6.10: row-wise 1-D decomposition equals conv2d / conv2d_input / conv2d_weight."""

import pytest
import torch

from ref.layer_ops import ConvGeometry
from ref.rowconv import bwi_rows, bww_rows, fwd_rows


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("hw", [7, 8])
def test_rows_equal_conv_passes(stride: int, padding: int, kernel: int, hw: int) -> None:
    gen = torch.Generator().manual_seed(stride + 2 * padding + 4 * kernel + hw)
    geom = ConvGeometry(stride, padding)
    x = torch.randn(2, 3, hw, hw, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 3, kernel, kernel, generator=gen, dtype=torch.float64)
    y = geom.fwd(x, w)
    dy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(fwd_rows(x, w, stride, padding), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        bwi_rows(dy, w, x.shape, stride, padding), geom.bwi(dy, w, x.shape), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        bww_rows(x, dy, w.shape, stride, padding), geom.bww(x, dy, w.shape), rtol=1e-12, atol=1e-12
    )
