"""Stochastic gradient pruning on integer codes: the bit-exact model of ``hw.stochastic_pruner``.

``ref.policies.stochastic_prune`` states the rule (Dai et al. / Ye et al.) on floats. The hardware
works on signed ``operand_bits``-bit codes ``q`` of dY, an integer threshold ``tau`` and raw LFSR
draws ``d`` (``u = d / 2**lfsr_width``). Per element, in row-major order, one draw each::

    a    = |q|                                    (|-2**(b-1)| = 2**(b-1) is fine)
    drop = a * 2**w < d * tau                     (== |g| < u*tau, exact in integers)
    out  = 0                         if drop
           q                         if a >= tau   (passed through unchanged)
           sign(q) * min(tau, qmax)  otherwise    (qmax = 2**(b-1) - 1)

``tau = ref.numerics.tau_fixed(q, c_fixed, frac_bits) = floor(c_fixed * sum|q| / (n * 2**frac_bits))``.

Departures from the float rule, both only where the float result is not a ``b``-bit code:

- The substituted ``±tau`` saturates to the symmetric code range ``±qmax`` (the range of
  ``ref.numerics.saturate``): with ``c > 1`` a flat tensor can give ``tau > qmax``. The drop
  decision still uses the unsaturated ``tau``, so there the expected output,
  ``sign(q) * qmax * a / tau``, is biased toward 0. Passed-through codes are never changed.
- Nothing else: with ``d * tau < 2**53`` the float comparison ``|g| < u*tau`` of the policy is
  exact, so its decisions are identical (tested in ``tests/ref/test_stochastic_prune_codes.py``).

At ``tau = 0`` the pruner is bypassed and draws nothing, as the float policy does at p = 0.

Tensor sequence (:class:`PrunerModel`): a threshold register ``tau`` (0 after reset) holds the
threshold of the most recently summed tensor. ``two_pass`` sums the tensor, sets the register to
its own tau and prunes it with that; ``previous`` prunes the tensor with the register's value (the
previous tensor's tau), then sets the register to the current tensor's tau.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ref.lfsr import GaloisLFSR
from ref.numerics import qmax, tau_fixed

__all__ = ["MODES", "PrunerModel", "mean_deviation_bound", "prune_codes"]

#: Tensor modes of the pruner, in the order of their hardware encoding (0, 1).
MODES: tuple[str, ...] = ("two_pass", "previous")


def prune_codes(q: torch.Tensor, tau: int, draws, *, operand_bits: int, lfsr_width: int) -> torch.Tensor:
    """Prune int64 codes ``q`` with integer ``tau`` and LFSR draws (same number of elements as q).

    ``draws`` is indexed like ``q.flatten()`` (row-major); it is ignored at ``tau == 0``, where the
    result is ``q`` unchanged. Returns an int64 tensor of q's shape.
    """
    if q.dtype != torch.int64:
        raise TypeError(f"q must be an int64 tensor, got {q.dtype}")
    if not isinstance(tau, int) or tau < 0:
        raise ValueError(f"tau must be an int >= 0, got {tau!r}")
    low, high = -(1 << (operand_bits - 1)), qmax(operand_bits)
    if q.numel() and (int(q.min()) < low or int(q.max()) > high):
        raise ValueError(f"q must hold signed {operand_bits}-bit codes in [{low}, {high}]")
    if tau == 0:
        return q.clone()
    d = torch.as_tensor(np.asarray(draws, dtype=np.int64).reshape(-1))
    if d.numel() != q.numel():
        raise ValueError(f"need one draw per element: {q.numel()} elements, {d.numel()} draws")
    if d.numel() and (int(d.min()) < 0 or int(d.max()) >= 1 << lfsr_width):
        raise ValueError(f"draws must be {lfsr_width}-bit unsigned integers")
    a = q.reshape(-1).abs()
    # Python-int-exact in int64: a * 2**w < 2**(b-1+w) and d * tau < 2**w * tau, both < 2**63
    # for the widths the hardware allows (b <= 32, w <= 32, tau < 2**(b+3)) unless b = w = 32;
    # the caller's ranges are checked here instead of relying on that.
    if (operand_bits - 1 + lfsr_width) >= 63 or tau.bit_length() + lfsr_width >= 63:
        raise ValueError("prune_codes: operand_bits/lfsr_width/tau too wide for exact int64 comparison")
    drop = (a << lfsr_width) < d * tau
    sub = torch.sign(q.reshape(-1)) * min(tau, high)
    out = torch.where(a < tau, sub, q.reshape(-1))
    out = torch.where(drop, torch.zeros_like(out), out)
    return out.reshape(q.shape)


def mean_deviation_bound(g: int, tau: int, *, lfsr_width: int, count: int, z: float) -> float:
    """The largest ``|mean - g|`` of ``count`` pruned outputs of one code ``g`` (``0 < |g| < tau <= qmax``)
    that is consistent with unbiased pruning: the discrete-uniform bias plus ``z`` standard errors.

    With draws uniform on ``1 .. 2**w - 1`` the keep probability is
    ``floor(|g| * 2**w / tau) / (2**w - 1)``, which differs from ``|g| / tau`` by less than
    ``1 / (2**w - 1)``: a bias below ``tau / (2**w - 1)`` in the mean. Each output is ``±tau`` or 0,
    with variance ``tau * |g| - g**2``; the draws are treated as independent.
    """
    if not (isinstance(g, int) and isinstance(tau, int) and 0 < abs(g) < tau):
        raise ValueError(f"need integers with 0 < |g| < tau, got g={g!r}, tau={tau!r}")
    if not (isinstance(count, int) and count > 0):
        raise ValueError(f"count must be a positive int, got {count!r}")
    return tau / ((1 << lfsr_width) - 1) + z * math.sqrt((tau * abs(g) - g * g) / count)


class PrunerModel:
    """The pruner unit's behaviour over a sequence of tensors (see the module docstring).

    ``lfsr`` is advanced by one draw per pruned element, and not at all for a tensor pruned with
    ``tau = 0``. ``tau`` is the threshold register (0 after reset).
    """

    def __init__(self, *, operand_bits: int, lfsr: GaloisLFSR) -> None:
        self.operand_bits = operand_bits
        self.lfsr = lfsr
        self.tau = 0

    def run(self, q: torch.Tensor, *, c_fixed: int, frac_bits: int, mode: str) -> tuple[torch.Tensor, int]:
        """Prune one tensor; returns ``(pruned codes, tau used)`` and updates the register.

        An empty tensor does nothing (returns it and the register's value, register unchanged).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if q.numel() == 0:
            return q.clone(), self.tau
        tau_now = tau_fixed(q, c_fixed, frac_bits)
        if mode == "two_pass":
            self.tau = tau_now
        used = self.tau
        draws = self.lfsr.draw_many(q.numel()) if used else None
        out = prune_codes(q, used, draws, operand_bits=self.operand_bits, lfsr_width=self.lfsr.width)
        self.tau = tau_now
        return out, used
