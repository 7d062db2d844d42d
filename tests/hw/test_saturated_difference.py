# amaranth: UnusedElaboratable=no
"""``hw.saturated_difference`` against ``ref``: ReSprop's ``S`` of a saturated code, every case.

The unit sees P and T a cycle early (out_bits two), and the rounded value before the saturation;
the model saturates first (``ref.numerics.saturate``) and then takes ``ref.resprop_codes.sparse_difference``. The core's
random programs rarely meet the boundaries ``|D| = T`` and ``|D| = T + 1`` on a saturated code,
so this test sweeps them: exhaustively for 4-bit codes, at the boundaries for 8-bit codes.
"""

from __future__ import annotations

import random

import pytest
import torch
from amaranth.sim import Simulator

from hw.saturated_difference import SaturatedDifference
from ref.numerics import qmax, saturate
from ref.resprop_codes import sparse_difference


def low_bits(v: int, bits: int) -> int:
    """``v``'s low ``bits`` bits as a signed value (what the unit's ``i_rounded`` receives)."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def check(code_bits: int, cases: list[tuple[int, int, int, int]], output_register: bool = False) -> int:
    """Drive every ``(r, out_bits, p, t)`` (out_bits from the cycle before ``en``, P and T in the
    ``en`` cycle before r) and compare ``S`` (``o_keep ? o_diff : 0``) with ref's, a cycle after r
    with ``output_register``. Returns how many codes saturated."""
    unit = SaturatedDifference(code_bits, output_register=output_register)
    saturated = 0

    async def bench(ctx):
        nonlocal saturated
        for r, out_bits, p, t in cases:
            lim = qmax(out_bits)
            g = int(saturate(torch.tensor(r), out_bits))
            saturated += g != r
            # out_bits a cycle before en (the limit is registered from it) and through en.
            ctx.set(unit.i_out_bits, out_bits)
            await ctx.tick()
            ctx.set(unit.en, 1)
            ctx.set(unit.i_p, p)
            ctx.set(unit.i_thr, t)
            await ctx.tick()
            # The register holds while en is low, whatever the first-stage inputs do.
            ctx.set(unit.en, 0)
            ctx.set(unit.i_p, -p - 1)
            ctx.set(unit.i_thr, (1 << code_bits) - 1 - t)
            ctx.set(unit.i_out_bits, 2 + (out_bits - 1) % (code_bits - 1))
            await ctx.tick()
            ctx.set(unit.i_rounded, low_bits(r, code_bits + 2))
            ctx.set(unit.i_above, r > lim)
            ctx.set(unit.i_below, r < -lim)
            if output_register:
                # The result is registered at the next en; afterwards the inputs no longer matter.
                ctx.set(unit.en, 1)
                await ctx.tick()
                ctx.set(unit.en, 0)
                ctx.set(unit.i_rounded, low_bits(~r, code_bits + 2))
                ctx.set(unit.i_above, r <= lim)
                ctx.set(unit.i_below, r >= -lim)
            got = ctx.get(unit.o_diff) if ctx.get(unit.o_keep) else 0
            want = sparse_difference(g, p, t)
            assert got == want, f"r={r} out_bits={out_bits} p={p} t={t}: S = {got}, ref {want}"

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return saturated


@pytest.mark.parametrize("output_register", [False, True], ids=["combinational", "registered"])
def test_every_case_of_4_bit_codes(output_register):
    b = 4
    # Rounded values around both limits, and far ones whose low bits look like small codes.
    far = [(1 << (b + 2)) + 1, (1 << (b + 3)) - 2, 3 << (b + 2)]
    cases = [(r, out_bits, p, t)
             for out_bits in range(2, b + 1)
             for r in [*range(-qmax(out_bits) - 3, qmax(out_bits) + 4), *far, *(-v for v in far)]
             for p in range(-(1 << (b - 1)), 1 << (b - 1))
             for t in range(1 << b)]
    saturated = check(b, cases, output_register)
    print(f"{len(cases)} cases, {saturated} saturated")
    assert saturated > len(cases) // 4


def test_boundaries_of_8_bit_codes():
    b, seed = 8, 11
    print(f"seed={seed}")
    rng = random.Random(seed)
    cases = []
    for _ in range(3000):
        out_bits = rng.choice([2, 3, b - 1, b])
        lim = qmax(out_bits)
        r = rng.choice([lim + rng.randint(1, 1 << 12), -lim - rng.randint(1, 1 << 12), rng.randint(-lim, lim)])
        p = rng.choice([-(1 << (b - 1)), (1 << (b - 1)) - 1, rng.randint(-(1 << (b - 1)), (1 << (b - 1)) - 1)])
        # T at |D| - 1, |D| and |D| + 1: the keep test's boundary, clamped to the threshold range.
        d = int(saturate(torch.tensor(r), out_bits)) - p
        t = min(max(abs(d) + rng.choice([-1, 0, 1]), 0), (1 << b) - 1)
        cases.append((r, out_bits, p, t))
    saturated = check(b, cases)
    print(f"{len(cases)} cases, {saturated} saturated")
    assert saturated > len(cases) // 2
