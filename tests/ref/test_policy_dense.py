import pytest
import torch
from ref_testutil import CONV_GRID, close, make_conv, make_linear, network_grads, reference, relu_input, run_layer

from ref.policies import DensePolicy


@pytest.mark.parametrize(("stride", "padding", "kernel", "bias"), CONV_GRID)
def test_dense_conv_equals_autograd_float64(stride: int, padding: int, kernel: int, bias: bool) -> None:
    torch.manual_seed(0)
    layer = make_conv(stride, padding, kernel, bias)
    x = relu_input((2, 3, 7, 7), seed=1)
    y, dx, dw, db, g = run_layer(layer, DensePolicy(layer.spec()), x)
    ry, rdx, rdw, rdb = reference(layer, x, g)
    close(y, ry), close(dx, rdx), close(dw, rdw), close(db, rdb)


def test_dense_linear_equals_autograd_float64() -> None:
    torch.manual_seed(0)
    layer = make_linear()
    x = relu_input((6, 12), seed=2)
    y, dx, dw, db, g = run_layer(layer, DensePolicy(layer.spec()), x)
    ry, rdx, rdw, rdb = reference(layer, x, g)
    close(y, ry), close(dx, rdx), close(dw, rdw), close(db, rdb)


@pytest.mark.parametrize("variant", ["relu", "bn_relu"])
def test_dense_network_gradients_equal_autograd(variant: str) -> None:
    got, ref = network_grads("dense", variant, steps=2)
    for gs, rs in zip(got, ref, strict=True):
        for a, b in zip(gs, rs, strict=True):
            close(a, b)
