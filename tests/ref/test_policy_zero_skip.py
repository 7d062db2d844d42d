import pytest
import torch
from ref_testutil import CONV_GRID, close, make_conv, make_linear, network_grads, reference, relu_input, run_layer

from ref.policies import ZeroSkipPolicy


@pytest.mark.parametrize("zero_fraction", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize(("stride", "padding", "kernel", "bias"), CONV_GRID)
def test_equals_autograd_float64(stride: int, padding: int, kernel: int, bias: bool, zero_fraction: float) -> None:
    torch.manual_seed(4)
    layer = make_conv(stride, padding, kernel, bias)
    x = relu_input((2, 3, 7, 7), seed=5, zero_fraction=zero_fraction)
    y0 = layer.geometry.fwd(x, layer.weight.detach())
    g = relu_input(tuple(y0.shape), seed=6, zero_fraction=zero_fraction) - 0.3 * (zero_fraction < 1)
    g = torch.where(relu_input(tuple(y0.shape), 7, zero_fraction) != 0, g, torch.zeros(()))
    y, dx, dw, db, _ = run_layer(layer, ZeroSkipPolicy(layer.spec()), x, g)
    ry, rdx, rdw, rdb = reference(layer, x, g)
    close(y, ry), close(dx, rdx), close(dw, rdw), close(db, rdb)
    if zero_fraction == 0.0:
        assert all(w.issued_macs == w.dense_macs for w in layer.last_work.values())
    if zero_fraction == 1.0:
        assert layer.last_work["fwd"].issued_macs == 0 and layer.last_work["bwi"].issued_macs == 0


def test_float32_allclose() -> None:
    torch.manual_seed(8)
    layer = make_conv(2, 1, 3, True).float()
    x = relu_input((2, 3, 7, 7), seed=9).float()
    y, dx, dw, db, g = run_layer(layer, ZeroSkipPolicy(layer.spec()), x)
    for a, b in zip((y, dx, dw, db), reference(layer, x, g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_negative_zero_inputs_do_not_change_results() -> None:
    layer = make_conv(1, 1, 3, True)
    x = relu_input((1, 3, 5, 5), seed=10)
    xneg = torch.where(x == 0, torch.tensor(-0.0, dtype=torch.float64), x)
    g = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    a = run_layer(layer, ZeroSkipPolicy(layer.spec()), x, g)
    b = run_layer(layer, ZeroSkipPolicy(layer.spec()), xneg, g)
    for u, v in zip(a[:4], b[:4], strict=True):
        assert torch.equal(u, v)


def test_inf_follows_dense_ieee_behaviour() -> None:
    # Documented choice: the golden model follows dense IEEE arithmetic (0 * inf = nan propagates).
    layer = make_linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight[0, 0] = float("inf")
    x = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    y, *_ = run_layer(layer, ZeroSkipPolicy(layer.spec()), x, torch.ones(1, 2, dtype=torch.float64))
    ry = reference(layer, x, torch.ones(1, 2, dtype=torch.float64))[0]
    assert torch.equal(y.isnan(), ry.isnan()) and bool(y.isnan()[0, 0])


def test_issued_fwd_macs_linear_formula() -> None:
    layer = make_linear(12, 5)
    x = relu_input((6, 12), seed=11)
    run_layer(layer, ZeroSkipPolicy(layer.spec()), x)
    assert layer.last_work["fwd"].issued_macs == int((x != 0).sum()) * 5
    assert layer.last_work["bww"].issued_macs == int((x != 0).sum()) * 5


@pytest.mark.parametrize("variant", ["relu", "bn_relu"])
def test_network_with_dense_first_layer_equals_autograd(variant: str) -> None:
    got, ref = network_grads("zero_skip", variant, steps=2)
    for gs, rs in zip(got, ref, strict=True):
        for a, b in zip(gs, rs, strict=True):
            close(a, b)
