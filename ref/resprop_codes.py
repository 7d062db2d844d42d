"""Bit-exact integer model of the ReSprop unit (``hw.resprop``): D = dY - P, S, nnz, x2 / /2 threshold.

This is ``ref.policies.resprop.ReSpropPolicy`` (``threshold_mode="adaptive_x2"``) on integer gradient
codes, in the numbers the hardware uses. Definition:

- **Codes.** dY and the stored sample P are signed ``bits``-bit codes, any value in
  ``[-2**(bits-1), 2**(bits-1) - 1]`` (the most negative code included). ``D = dY - P`` is exact: it
  lies in ``[-(2**bits - 1), 2**bits - 1]`` and needs ``bits + 1`` signed bits. No saturation.
- **Threshold.** The float threshold ``thr`` of the policy is held as ``mant * 2**exp``: ``mant`` an
  unsigned ``bits``-bit integer, ``exp`` a signed ``EXP_BITS``-bit integer. x2 is ``exp + 1``, /2 is
  ``exp - 1``, both exact as in float, saturating at ``[EXP_MIN, EXP_MAX]`` (float instead underflows
  to 0.0 after ~1075 halvings and then stays 0 forever; the hardware keeps counting from EXP_MIN).
  Because ``|D|`` is an integer, ``|D| > thr`` equals ``|D| > floor(thr)``; and ``|D| <= 2**bits - 1``,
  so the comparison needs only ``T = min(floor(mant * 2**exp), 2**bits - 1)`` (``effective_threshold``).
- **Any float start.** ``threshold_code(thr, bits)`` keeps the top ``bits`` significant bits of
  ``thr``. That changes no comparison ever: while ``thr * 2**k < 2**bits`` its top bit has weight
  ``<= 2**(bits-1)``, so the kept bits include every bit of weight ``>= 1`` and the floors agree;
  above, both clamp to ``2**bits - 1``.
- **S and tie rule.** ``S = D`` where ``|D| > T`` (strict, as the official code), else 0. Dense
  iterations (``dense=True``): ``S = dY`` (sign-extended), the threshold is not updated.
- **Controller.** The target non-zero percentage is an integer ``target_cp`` in hundredths of a
  percent (15 % -> 1500). ``nz% < target`` is ``10000 * nnz < target_cp * n`` (n = numel), exactly
  (no division); then ``exp - 1``; ``>``: ``exp + 1``; equal: unchanged (the policy's rule). For a
  target that is a multiple of 0.01 % this agrees with the policy's float ``100.0 * nnz / n``
  comparison: a nonzero gap between ``100 nnz / n`` and the target is at least ``1 / (100 n)``, far
  above float64 rounding, provided the float target is the double nearest ``target_cp / 100``.
- **Stored sample.** Element order is row-major ``[n_samples, elems]``. P is held in two banks of
  ``depth`` codes (ping-pong: the pass reads one bank and writes sample ``sample``'s raw dY into the
  other, so every sample of the pass sees the old P). Element ``e`` uses address ``e mod depth``. The
  banks swap at the end of a pass that stored a sample (``sample < n_samples`` and ``elems > 0``);
  otherwise the stored P is kept. Both banks start all-zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "EXP_BITS", "EXP_MAX", "EXP_MIN", "PERCENT_SCALE", "PassResult", "ReSpropCodes", "adapt_exponent",
    "effective_threshold", "sparse_difference", "target_code", "threshold_code", "threshold_value",
]  # fmt: skip

EXP_BITS = 8
EXP_MIN, EXP_MAX = -(1 << (EXP_BITS - 1)), (1 << (EXP_BITS - 1)) - 1
#: ``target_cp`` units per 100 %: the target is given in hundredths of a percent.
PERCENT_SCALE = 10000


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 32:
        raise ValueError(f"bits must be an integer in 2..32, not {bits!r}")


def threshold_code(thr: float, bits: int) -> tuple[int, int]:
    """``(mant, exp)`` for a float threshold ``thr >= 0``: the top ``bits`` significant bits of ``thr``.

    ``mant * 2**exp <= thr``, and every ``|D| > thr * 2**k`` comparison on ``bits``-bit codes agrees
    (module docstring). 0.0 gives ``(0, 0)``. Raises ValueError when ``exp`` leaves [EXP_MIN, EXP_MAX].
    """
    _check_bits(bits)
    if not (isinstance(thr, (int, float)) and math.isfinite(thr) and thr >= 0):
        raise ValueError(f"threshold must be a finite number >= 0, not {thr!r}")
    if thr == 0:
        return 0, 0
    frac, e = math.frexp(thr)  # thr = frac * 2**e, 0.5 <= frac < 1
    mant = math.floor(math.ldexp(frac, bits))  # exact: a scaling by a power of two
    exp = e - bits
    if not EXP_MIN <= exp <= EXP_MAX:
        raise ValueError(f"threshold {thr!r} needs exponent {exp}, outside {EXP_MIN}..{EXP_MAX} for bits={bits}")
    return mant, exp


def threshold_value(mant: int, exp: int) -> float:
    """The real threshold ``mant * 2**exp`` as a float (exact for the ranges used here)."""
    return math.ldexp(mant, exp)


def effective_threshold(mant: int, exp: int, bits: int) -> int:
    """``T = min(floor(mant * 2**exp), 2**bits - 1)``: ``|D| > mant * 2**exp`` iff ``|D| > T``."""
    _check_bits(bits)
    if not 0 <= mant < (1 << bits):
        raise ValueError(f"mant must be an integer in 0..{(1 << bits) - 1}, not {mant!r}")
    if not EXP_MIN <= exp <= EXP_MAX:
        raise ValueError(f"exp must be an integer in {EXP_MIN}..{EXP_MAX}, not {exp!r}")
    value = mant << exp if exp >= 0 else mant >> -exp
    return min(value, (1 << bits) - 1)


def adapt_exponent(exp: int, nnz: int, n: int, target_cp: int) -> int:
    """One x2 / /2 controller step on the exponent (saturating): the policy's ``adapt_threshold``."""
    diff = PERCENT_SCALE * nnz - target_cp * n  # sign of (nz% - target) * n * 100
    if diff < 0:
        return max(EXP_MIN, exp - 1)
    if diff > 0:
        return min(EXP_MAX, exp + 1)
    return exp


def target_code(target_percent: float) -> int:
    """Hundredths of a percent for a float target percentage; raises unless it is a multiple of 0.01."""
    cp = round(target_percent * 100)
    if abs(cp - target_percent * 100) > 1e-6 or cp < 0:
        raise ValueError(f"target percentage must be a non-negative multiple of 0.01, not {target_percent!r}")
    return cp


def sparse_difference(dy: int, p: int, thr_int: int) -> int:
    """One element of S: ``dy - p`` if ``|dy - p| > thr_int`` else 0."""
    d = dy - p
    return d if abs(d) > thr_int else 0


@dataclass(frozen=True)
class PassResult:
    """What one pass of the unit produces (the ``o_s`` stream and the ``o_done`` beat)."""

    s: list[int]
    nnz: int
    thr_used: int  # effective integer threshold T of this pass
    exp_after: int  # threshold exponent after the controller step
    stored: bool  # whether the pass stored a new P (banks swapped)


class ReSpropCodes:
    """State of one ReSprop unit: threshold ``(mant, exp)`` and the two P banks of ``depth`` codes."""

    def __init__(self, bits: int, depth: int, mant: int = 0, exp: int = 0) -> None:
        _check_bits(bits)
        if not isinstance(depth, int) or depth < 1 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two >= 1, not {depth!r}")
        effective_threshold(mant, exp, bits)  # validates mant and exp
        self.bits = bits
        self.depth = depth
        self.mant = mant
        self.exp = exp
        self.banks = [[0] * depth, [0] * depth]
        self.read_bank = 0

    @property
    def stored_p(self) -> list[int]:
        """The bank the next pass reads (the P of the last stored sample, zero-padded to ``depth``)."""
        return list(self.banks[self.read_bank])

    def run_pass(
        self,
        dy: Sequence[int],
        *,
        n_samples: int,
        elems: int,
        sample: int,
        dense: bool,
        target_cp: int,
        load: tuple[int, int] | None = None,
    ) -> PassResult:
        """One pass over ``dy`` (row-major ``[n_samples, elems]`` codes); ``load = (mant, exp)`` first."""
        lo, hi = -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        if len(dy) != n_samples * elems:
            raise ValueError(f"dy has {len(dy)} codes, expected n_samples * elems = {n_samples * elems}")
        if any(not lo <= v <= hi for v in dy):
            raise ValueError(f"dy codes must lie in {lo}..{hi}")
        if load is not None:
            effective_threshold(load[0], load[1], self.bits)
            self.mant, self.exp = load
        thr = effective_threshold(self.mant, self.exp, self.bits)
        old = self.banks[self.read_bank]
        new = self.banks[1 - self.read_bank]
        s = []
        for i, v in enumerate(dy):
            j, e = divmod(i, elems)
            addr = e % self.depth
            s.append(v if dense else sparse_difference(v, old[addr], thr))
            if j == sample:
                new[addr] = v
        nnz = sum(1 for x in s if x != 0)
        if not dense:
            self.exp = adapt_exponent(self.exp, nnz, n_samples * elems, target_cp)
        stored = sample < n_samples and elems > 0
        if stored:
            self.read_bank = 1 - self.read_bank
        return PassResult(s=s, nnz=nnz, thr_used=thr, exp_after=self.exp, stored=stored)
