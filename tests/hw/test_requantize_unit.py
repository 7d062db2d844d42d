# amaranth: UnusedElaboratable=no
"""``hw.requantize.Requantizer`` against ``ref.numerics.requantize`` at the saturation's edges.

The requantizer decides saturation from the unrounded value beside the rounding add
(``q + round_up > L`` as ``q > L or round_up and q == L``), so the cases that matter are values
that round onto, just past or just short of ``±L``: every value within one step of
``±L * 2**shift`` (ties included) for every rounding, shift and code width, plus the extremes
of the accumulator. The core's random programs reach these rarely.
"""

from __future__ import annotations

import pytest
import torch
from amaranth.sim import Simulator

from hw.layouts import ROUNDING_CODES
from hw.requantize import Requantizer
from ref.numerics import qmax, requantize, shift_round

ACC_BITS = 12


def cases() -> list[tuple[int, int, int, str]]:
    lo, hi = -(1 << (ACC_BITS - 1)), (1 << (ACC_BITS - 1)) - 1
    out = []
    for rounding in ROUNDING_CODES:
        for shift in (0, 1, 2, 3, ACC_BITS - 2, ACC_BITS + 3):
            for out_bits in (2, 3, 5, ACC_BITS, ACC_BITS + 2, 32):
                edge = qmax(out_bits) << min(shift, ACC_BITS + 1)
                step = 1 << min(shift, ACC_BITS + 1)
                values = {lo, lo + 1, hi, -1, 0, 1}
                for centre in (edge, -edge, edge + step, -edge - step):
                    values.update(range(centre - step - 1, centre + step + 2))
                out += [(v, shift, out_bits, rounding) for v in sorted(values) if lo <= v <= hi]
    return out


@pytest.mark.parametrize("decision_register", [False, True], ids=["latency2", "latency3"])
def test_saturation_edges_equal_ref(decision_register):
    unit = Requantizer(ACC_BITS, code_bits=8, decision_register=decision_register)
    todo = cases()
    checked = above = below = 0

    async def bench(ctx):
        nonlocal checked, above, below
        ctx.set(unit.en, 1)
        for value, shift, out_bits, rounding in todo:
            ctx.set(unit.i_value, value)
            ctx.set(unit.i_shift, shift)
            ctx.set(unit.i_out_bits, out_bits)
            ctx.set(unit.i_rounding, ROUNDING_CODES[rounding])
            # o_above / o_below are the saturation's decisions on the rounded value r, shown
            # side_latency cycles after the value (a cycle ahead of the code at latency 3).
            await ctx.tick().repeat(unit.side_latency)
            r = int(shift_round(torch.tensor(value), shift, rounding))
            lim = qmax(out_bits)
            assert (ctx.get(unit.o_above), ctx.get(unit.o_below)) == (r > lim, r < -lim), (value, shift, out_bits)
            if unit.latency > unit.side_latency:
                await ctx.tick().repeat(unit.latency - unit.side_latency)
            want = int(requantize(torch.tensor(value), shift, out_bits, rounding))
            got = ctx.get(unit.o_value)
            assert got == want, f"{value=} {shift=} {out_bits=} {rounding=}: {got}, ref {want}"
            checked += 1
            above += r > lim
            below += r < -lim

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    print(f"{checked} values, {above} saturated up, {below} down")
    assert above > checked // 20 and below > checked // 20   # the edges were reached both ways
