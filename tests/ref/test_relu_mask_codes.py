"""The integer ReLU + mask model (``ref.relu_mask_codes``) against the float policy and autograd."""

from __future__ import annotations

import pytest
import torch
from ref_testutil import make_linear, run_layer

from ref.policies import ReluMaskPolicy
from ref.relu_mask_codes import (
    apply_stream,
    bitmap_beats,
    emit_stream,
    mask_apply,
    pack_codes,
    relu_codes,
    relu_mask,
    unpack_bitmap,
    unpack_codes,
)


def integer_codes(shape: tuple[int, ...], bits: int, seed: int) -> torch.Tensor:
    """Random int64 codes with many zeros and both extremes (-2**(bits-1) included)."""
    gen = torch.Generator().manual_seed(seed)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    z = torch.randint(low, high + 1, shape, generator=gen)
    pick = torch.rand(shape, generator=gen)
    z = torch.where(pick < 0.25, torch.zeros((), dtype=torch.int64), z)
    z = torch.where((pick >= 0.25) & (pick < 0.3), torch.full((), low), z)
    return torch.where((pick >= 0.3) & (pick < 0.35), torch.full((), high), z)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("bits", [4, 8])
def test_emit_equals_policy_mask_and_torch_relu(bits, seed):
    print(f"seed={seed}")
    z = integer_codes((6, 12), bits, seed)
    z[0] = 0  # an all-zero row
    z[1] = z[1].abs().clamp(min=1)  # an all-positive row
    a = torch.relu(z.double())  # the float forward: integer-valued, exact
    layer = make_linear(12, 5)
    plan = ReluMaskPolicy(layer.spec()).forward(a, layer.weight.detach(), True)
    assert torch.equal(relu_codes(z).double(), a)
    assert torch.equal(relu_mask(z), plan.out_mask)
    assert not relu_mask(z)[0].any() and relu_mask(z)[1].all()


@pytest.mark.parametrize("seed", [1, 2])
def test_apply_equals_masked_bwi_of_the_policy_layer(seed):
    """On integer-valued operands the policy layer's dX is exact; mask_apply of the dense dX with
    the emitted mask is that dX, and equals autograd through ReLU (gradient 0 at z == 0)."""
    print(f"seed={seed}")
    gen = torch.Generator().manual_seed(seed)
    z = integer_codes((4, 12), 4, seed)
    a = torch.relu(z.double())
    layer = make_linear(12, 5)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-3, 4, (5, 12), generator=gen).double())
        layer.bias.zero_()
    g = torch.randint(-4, 5, (4, 5), generator=gen).double()
    _, dx_policy, _, _, _ = run_layer(layer, ReluMaskPolicy(layer.spec()), a, g)
    dense = (g @ layer.weight.detach()).to(torch.int64)
    assert torch.equal(mask_apply(dense, relu_mask(z)), dx_policy.to(torch.int64))
    zf = z.double().requires_grad_(True)
    (dz,) = torch.autograd.grad(torch.relu(zf), zf, dense.double())
    assert torch.equal(mask_apply(dense, relu_mask(z)).double(), dz)


def test_beat_format_matches_docs_core_example():
    # docs/core.md worked example: A row 0 = [0, 3, 0, 0, -2, 0, 0, 1] has bitmap 0b10010010.
    row = [0, 3, 0, 0, -2, 0, 0, 1]
    assert bitmap_beats([v != 0 for v in row], 16) == [0x92]
    assert pack_codes([1, 2, 0, -4], 4, 4) == [0xC021]
    assert unpack_codes([0xC021, 0xF301], 4, 4) == [1, 2, 0, -4, 1, 0, 3, -1]
    assert unpack_bitmap(bitmap_beats([True, False] * 9, 4), 18, 4) == [True, False] * 9
    assert bitmap_beats([True] * 18, 4) == [0xF, 0xF, 0xF, 0xF, 0x3]


def test_streams_agree_with_tensor_rules():
    z = integer_codes((5, 8), 4, 3)
    act, mask = emit_stream(z.tolist(), bus_elems=4, operand_bits=4)
    assert unpack_codes(act, 4, 4) == relu_codes(z).reshape(-1).tolist()
    assert [b for row in relu_mask(z).tolist() for b in bitmap_beats(row, 16)] == mask
    dx = integer_codes((5, 8), 4, 4)
    out = apply_stream(dx.tolist(), relu_mask(z).tolist(), bus_elems=4, operand_bits=4)
    assert unpack_codes(out, 4, 4) == mask_apply(dx, relu_mask(z)).reshape(-1).tolist()


def test_invalid_inputs():
    with pytest.raises(ValueError, match="multiple of bus_elems = 4"):
        pack_codes([1, 2, 3], 4, 4)
    with pytest.raises(ValueError, match="outside the signed 4-bit range"):
        pack_codes([8, 0, 0, 0], 4, 4)
    with pytest.raises(ValueError, match="z must be an int64 tensor"):
        relu_mask(torch.zeros(3))
    with pytest.raises(ValueError, match="mask must be a bool tensor of shape"):
        mask_apply(torch.zeros(3, dtype=torch.int64), torch.ones(4, dtype=torch.bool))
