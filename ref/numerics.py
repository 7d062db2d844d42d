"""Integer numerics shared by the golden model and the RTL.

Everything that produces an integer here is computed with integer operations (int64 tensors or
Python ints) except ``quantize_symmetric``, whose only float step is the exact-by-construction
division by the scale (see its docstring). Rounding rules are stated per function and do not
depend on the platform's float rounding mode.

Rounding names used throughout:

- ``half_away``: round to nearest, ties away from zero (2.5 -> 3, -2.5 -> -3).
- ``half_even``: round to nearest, ties to even (2.5 -> 2, 3.5 -> 4, -2.5 -> -2).
- ``floor``:     toward minus infinity (arithmetic right shift).
"""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist

import torch

ROUNDINGS: tuple[str, ...] = ("half_away", "half_even", "floor")


def qmax(bits: int) -> int:
    """Largest magnitude of a symmetric signed ``bits``-bit code: 2**(bits-1) - 1."""
    _check_bits(bits)
    return (1 << (bits - 1)) - 1


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 2 <= bits <= 32:
        raise ValueError(f"bits must be an int in [2, 32], got {bits!r}")


def _check_rounding(rounding: str) -> None:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round a float tensor to the nearest integer, ties away from zero, as int64.

    Exact for every float64 input: ``f = floor(|x|)`` and ``r = |x| - f`` are both exact in
    float64 (the fractional part of a float is representable), and the decision ``r >= 0.5`` is
    an exact comparison. (The common ``floor(|x| + 0.5)`` is wrong for 0.49999999999999994.)
    """
    x = x.to(torch.float64)
    a = x.abs()
    f = torch.floor(a)
    mag = f + (a - f >= 0.5).to(torch.float64)
    return (torch.sign(x) * mag).to(torch.int64)


def quantize_symmetric(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, float]:
    """Per-tensor symmetric quantization.

    ``scale = max|x| / (2**(bits-1) - 1)`` (1.0 for an all-zero tensor), ``q = round_half_away(x /
    scale)`` saturated to ``[-qmax, qmax]``. Returns ``(q: int64 tensor of x's shape, scale)``;
    dequantize with ``q * scale``. The division is done in float64 (x itself is float32 or
    float64); the element at max|x| maps to exactly +-qmax.
    """
    _check_bits(bits)
    m = qmax(bits)
    x64 = x.detach().to(torch.float64)
    amax = float(x64.abs().max().item()) if x64.numel() else 0.0
    if not math.isfinite(amax):
        raise ValueError("quantize_symmetric: x contains inf or nan")
    scale = amax / m if amax > 0 else 1.0
    q = round_half_away(x64 / scale)
    return q.clamp(-m, m), scale


def saturate(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Clamp an int64 tensor to the symmetric range [-(2**(bits-1)-1), 2**(bits-1)-1]."""
    m = qmax(bits)
    return q.clamp(-m, m)


def shift_round(acc: torch.Tensor, shift: int, rounding: str = "half_away") -> torch.Tensor:
    """Integer division of an int64 tensor by 2**shift with the named rounding (no floats)."""
    _check_rounding(rounding)
    if acc.dtype != torch.int64:
        raise TypeError(f"acc must be an int64 tensor, got {acc.dtype}")
    if not isinstance(shift, int) or shift < 0:
        raise ValueError(f"shift must be an int >= 0, got {shift!r}")
    if shift == 0:
        return acc.clone()
    floor_q = acc >> shift  # arithmetic shift = floor division
    if rounding == "floor":
        return floor_q
    rem = acc - (floor_q << shift)  # in [0, 2**shift)
    half = 1 << (shift - 1)
    if rounding == "half_away":
        # Above half: up. At a tie: up for positive values, stay (toward -inf = away) for negative.
        up = (rem > half) | ((rem == half) & (acc >= 0))
    else:
        up = (rem > half) | ((rem == half) & ((floor_q & 1) == 1))
    return floor_q + up.to(torch.int64)


def requantize(acc: torch.Tensor, shift: int, bits: int, rounding: str = "half_away") -> torch.Tensor:
    """Accumulator -> ``bits``-bit code: ``saturate(shift_round(acc, shift, rounding), bits)``."""
    return saturate(shift_round(acc, shift, rounding), bits)


def to_fixed(value: float, frac_bits: int) -> int:
    """Fixed-point code of a real constant: round_half_away(value * 2**frac_bits), exactly.

    Uses exact rational arithmetic on the float's binary value, so the result never depends on
    float rounding.
    """
    if not isinstance(frac_bits, int) or not 0 <= frac_bits <= 62:
        raise ValueError(f"frac_bits must be an int in [0, 62], got {frac_bits!r}")
    if not math.isfinite(value):
        raise ValueError(f"value must be finite, got {value}")
    f = Fraction(value) * (1 << frac_bits)
    mag = abs(f)
    r = math.floor(mag + Fraction(1, 2))
    return r if f >= 0 else -r


def from_fixed(code: int, frac_bits: int) -> float:
    """Real value of a fixed-point code."""
    return code / float(1 << frac_bits)


def tau_constant(p: float, tau_rule: str = "mean_abs") -> float:
    """The multiplier c of tau = c * mean|g| for target pruning rate ``p`` in [0, 1).

    ``mean_abs`` (default, third-party-code convention): c = Phi^-1((1+p)/2).
    ``normal``: c = Phi^-1((1+p)/2) * sqrt(pi/2), i.e. sigma estimated as sqrt(pi/2) * mean|g|
    for zero-mean Gaussian g, so that P(|g| < tau) = p.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {p}")
    if tau_rule not in ("mean_abs", "normal"):
        raise ValueError(f"tau_rule must be one of ('mean_abs', 'normal'), got {tau_rule!r}")
    if p == 0.0:
        return 0.0
    c = NormalDist().inv_cdf((1.0 + p) / 2.0)
    return c * math.sqrt(math.pi / 2.0) if tau_rule == "normal" else c


def tau_float(g: torch.Tensor, c: float) -> float:
    """tau = c * mean|g| over the whole tensor, in float64."""
    return c * float(g.detach().to(torch.float64).abs().mean().item())


def tau_fixed(q: torch.Tensor, c_fixed: int, frac_bits: int) -> int:
    """Integer tau in the units of ``q``: floor(c_fixed * sum|q| / (n * 2**frac_bits)) (round down).

    ``q``: int64 codes of g; ``c_fixed = to_fixed(c, frac_bits)``. Computed with Python ints, so
    there is no overflow. Its value times the scale of q is within one LSB (plus the constant's
    rounding c_err * mean|q|) of the float tau of the dequantized tensor.
    """
    if q.dtype != torch.int64:
        raise TypeError(f"q must be an int64 tensor, got {q.dtype}")
    n = q.numel()
    if n == 0:
        raise ValueError("tau_fixed: q is empty")
    s = int(q.abs().sum().item())
    return (c_fixed * s) // (n << frac_bits)
