import pytest
import torch
from ref_testutil import CONV_GRID, close, make_conv, make_linear, network_grads, reference, relu_input, run_layer

from ref.models import DigitsCNN
from ref.policies import ReluMaskPolicy


@pytest.mark.parametrize(("stride", "padding", "kernel", "bias"), CONV_GRID)
def test_masked_bwi_is_zero_where_input_is_zero_and_dense_elsewhere(
    stride: int, padding: int, kernel: int, bias: bool
) -> None:
    torch.manual_seed(1)
    layer = make_conv(stride, padding, kernel, bias)
    x = relu_input((2, 3, 7, 7), seed=3, zero_fraction=0.5)
    y, dx, dw, db, g = run_layer(layer, ReluMaskPolicy(layer.spec()), x)
    ry, rdx, rdw, rdb = reference(layer, x, g)
    pos = x > 0
    assert bool((dx[~pos] == 0).all()) and not bool(torch.signbit(dx[~pos]).any())  # exactly +0
    close(dx[pos], rdx[pos])
    close(y, ry), close(dw, rdw), close(db, rdb)
    # After the previous ReLU's backward the result equals dense autograd (property 1).
    close(dx * pos, rdx * pos)


def test_first_layer_without_relu_input_has_no_mask() -> None:
    torch.manual_seed(2)
    layer = make_conv(1, 1, 3, True, input_is_relu=False)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    _, dx, _, _, g = run_layer(layer, ReluMaskPolicy(layer.spec()), x)
    close(dx, reference(layer, x, g)[1])
    assert "bwi" in layer.last_work and layer.last_work["bwi"].mask_density == 1.0


def test_relu_at_exactly_zero_is_masked() -> None:
    layer = make_linear(4, 3)
    x = torch.tensor([[0.0, 1.0, -0.0, 2.0]], dtype=torch.float64)
    _, dx, _, _, _ = run_layer(layer, ReluMaskPolicy(layer.spec()), x)
    assert dx[0, 0] == 0 and dx[0, 2] == 0 and dx[0, 1] != 0 and dx[0, 3] != 0


@pytest.mark.parametrize("variant", ["relu", "bn_relu"])
def test_network_gradients_equal_autograd(variant: str) -> None:
    got, ref = network_grads("relu_mask", variant, steps=2)
    for gs, rs in zip(got, ref, strict=True):
        for a, b in zip(gs, rs, strict=True):
            close(a, b)


def captured_dy_and_output(variant: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(dY of conv l, A_l = ReLU output after conv l) for conv1..conv3 after one backward pass."""
    torch.manual_seed(3)
    model = DigitsCNN(variant).double()
    for lay in model.policy_layers():
        lay.set_policy(ReluMaskPolicy(lay.spec()))
        lay.capture = True
    x = torch.rand(8, 1, 8, 8, dtype=torch.float64)
    model(x).sum().backward()
    convs = model.policy_layers()
    # The input of conv l+1 is A_l; the fc input is A_3 (flattened).
    outs = [convs[1].last_capture["x"], convs[2].last_capture["x"], convs[3].last_capture["x"].view(8, 32, 4, 4)]
    return [(convs[i].last_capture["dy"], outs[i]) for i in range(3)]


def test_without_bn_dy_is_zero_where_relu_output_is_zero() -> None:
    for dy, a in captured_dy_and_output("relu"):
        assert bool((dy[a == 0] == 0).all())
        assert float((a == 0).double().mean()) > 0.05  # the property is not vacuous


def test_with_bn_dy_is_dense_negative_control() -> None:
    for dy, _ in captured_dy_and_output("bn_relu"):
        assert float((dy != 0).double().mean()) > 0.9


def test_mac_counts_all_ones_and_all_zeros() -> None:
    layer = make_conv(1, 1, 3, False)
    pol = ReluMaskPolicy(layer.spec())
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64) + 0.1  # all positive: mask all ones
    g = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    run_layer(layer, pol, x, g)
    bwi = layer.last_work["bwi"]
    assert bwi.mask_density == 1.0 and bwi.issued_macs == bwi.dense_macs
    _, dx, _, _, _ = run_layer(layer, pol, torch.zeros(2, 3, 5, 5, dtype=torch.float64), g)
    assert bool((dx == 0).all()) and layer.last_work["bwi"].issued_macs == 0
    assert layer.last_work["bwi"].dense_macs == bwi.dense_macs
