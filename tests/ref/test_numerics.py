import math
import random
from fractions import Fraction

import pytest
import torch

from ref.numerics import (
    from_fixed,
    qmax,
    quantize_symmetric,
    requantize,
    round_half_away,
    shift_round,
    tau_constant,
    tau_fixed,
    tau_float,
    to_fixed,
)


def test_round_half_away_ties_and_near_ties() -> None:
    x = torch.tensor(
        [0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994, -0.49999999999999994, 2.4, -3.6, 0.0], dtype=torch.float64
    )
    assert round_half_away(x).tolist() == [1, 2, 3, -1, -3, 0, 0, 2, -4, 0]


def test_quantize_maps_max_to_qmax_and_bounds_error() -> None:
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(1000, generator=gen, dtype=torch.float64)
    for bits in (4, 8, 16):
        q, scale = quantize_symmetric(x, bits)
        assert q.dtype == torch.int64
        assert int(q.abs().max()) == qmax(bits) == 2 ** (bits - 1) - 1
        assert scale == float(x.abs().max()) / qmax(bits)
        assert float((q * scale - x).abs().max()) <= scale / 2 * (1 + 1e-12)


def test_quantize_all_zero_and_rejects_bad_bits() -> None:
    q, scale = quantize_symmetric(torch.zeros(5), 8)
    assert scale == 1.0 and q.tolist() == [0] * 5
    with pytest.raises(ValueError, match="bits"):
        quantize_symmetric(torch.ones(3), 1)


def ref_shift(a: int, shift: int, rounding: str) -> int:
    f = Fraction(a, 1 << shift)
    fl = math.floor(f)
    if rounding == "floor":
        return fl
    rem = f - fl
    if rem != Fraction(1, 2):
        return fl + (1 if rem > Fraction(1, 2) else 0)
    if rounding == "half_away":
        return fl + 1 if f > 0 else fl
    return fl if fl % 2 == 0 else fl + 1


@pytest.mark.parametrize("rounding", ["half_away", "half_even", "floor"])
def test_shift_round_matches_exact_rational_rounding(rounding: str) -> None:
    rng = random.Random(5)
    vals = [rng.randint(-(1 << 40), 1 << 40) for _ in range(2000)] + list(range(-40, 41))
    for shift in (0, 1, 2, 3, 7, 13):
        got = shift_round(torch.tensor(vals, dtype=torch.int64), shift, rounding).tolist()
        assert got == [ref_shift(v, shift, rounding) for v in vals]


def test_requantize_saturates_and_rejects_floats() -> None:
    acc = torch.tensor([1 << 20, -(1 << 20), 200, -200, 255], dtype=torch.int64)
    assert requantize(acc, 1, 8).tolist() == [127, -127, 100, -100, 127]
    with pytest.raises(TypeError, match="int64"):
        requantize(acc.double(), 1, 8)
    with pytest.raises(ValueError, match="rounding"):
        requantize(acc, 1, 8, rounding="nearest")


def test_to_fixed_is_exact() -> None:
    assert to_fixed(0.5, 0) == 1 and to_fixed(-0.5, 0) == -1 and to_fixed(2.5, 0) == 3
    for v in (1.6448536269514722, math.sqrt(math.pi / 2), -0.1, 3.0):
        for fb in (4, 15, 30):
            exact = Fraction(v) * (1 << fb)
            code = to_fixed(v, fb)
            assert abs(Fraction(code) - exact) <= Fraction(1, 2)
            assert abs(from_fixed(code, fb) - v) <= 2.0 ** -(fb + 1)


@pytest.mark.parametrize("p", [0.5, 0.9, 0.99])
def test_tau_constant_inverts_the_normal_cdf(p: float) -> None:
    c = tau_constant(p, "mean_abs")
    assert math.erf(c / math.sqrt(2)) == pytest.approx(p, abs=1e-12)  # P(|Z| < c) = p
    assert tau_constant(p, "normal") == pytest.approx(c * math.sqrt(math.pi / 2), rel=1e-15)
    assert tau_constant(0.0) == 0.0
    with pytest.raises(ValueError, match="sparsity"):
        tau_constant(1.0)


@pytest.mark.parametrize("bits", [8, 16])
def test_tau_fixed_agrees_with_float_within_one_lsb(bits: int) -> None:
    frac_bits = 16
    gen = torch.Generator().manual_seed(bits)
    for trial in range(20):
        g = torch.randn(257 + trial, generator=gen, dtype=torch.float64) * (trial + 1)
        q, scale = quantize_symmetric(g, bits)
        c = tau_constant(0.9, "normal")
        t_float = tau_float(q * scale, c)
        t_int = tau_fixed(q, to_fixed(c, frac_bits), frac_bits)
        mean_q = float(q.abs().double().mean())
        # floor -> at most 1 LSB low; the constant's rounding adds at most 2^-(f+1) * mean|q| LSBs.
        bound = scale * (1 + 2.0 ** -(frac_bits + 1) * mean_q) * (1 + 1e-12)
        assert abs(t_int * scale - t_float) <= bound
