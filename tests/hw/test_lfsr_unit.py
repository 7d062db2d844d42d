# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the LFSR unit against ``ref.lfsr.GaloisLFSR``, with random stalls."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hw.lfsr import GaloisLFSRUnit, draw_network
from ref.lfsr import DEFAULT_TAPS, GaloisLFSR


def collect(unit: GaloisLFSRUnit, count: int, rng: random.Random, *, stall: float,
            reseed_at: dict[int, int] | None = None) -> list[int]:
    """Take ``count`` draws with random ready stalls; ``reseed_at[i] = v`` reseeds after draw i."""
    reseed_at = reseed_at or {}
    taken: list[int] = []

    async def bench(ctx):
        while len(taken) < count:
            ready = rng.random() >= stall
            seed = reseed_at.pop(len(taken), None) if ready else None
            ctx.set(unit.o_stream.ready, ready)
            ctx.set(unit.i_seed.valid, seed is not None)
            ctx.set(unit.i_seed.payload, seed or 0)
            _, _, valid, payload = await ctx.tick().sample(unit.o_stream.valid, unit.o_stream.payload)
            assert valid
            if ready:
                taken.append(payload)

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return taken


@pytest.mark.parametrize("seed", [5, 6])
@pytest.mark.parametrize("width", [4, 8, 16, 32])
def test_sequence_equals_ref_under_stalls(width, seed):
    print(f"seed={seed}")
    rng = random.Random(seed)
    state = rng.randint(1, (1 << width) - 1)
    unit = GaloisLFSRUnit(width=width, taps=DEFAULT_TAPS[width], seed=state)
    model = GaloisLFSR(width, DEFAULT_TAPS[width], state)
    assert collect(unit, 200, rng, stall=0.4) == [model.draw() for _ in range(200)]


def test_reseed_restarts_the_sequence_and_zero_is_ignored():
    width, taps = 16, DEFAULT_TAPS[16]
    unit = GaloisLFSRUnit(width=width, taps=taps, seed=1)
    got = collect(unit, 30, random.Random(0), stall=0.0, reseed_at={10: 0xBEEF, 20: 0})
    first = GaloisLFSR(width, taps, 1)
    second = GaloisLFSR(width, taps, 0xBEEF)
    # Draw 10 was consumed together with the reseed; 11.. come from the new seed; the zero
    # reseed after draw 20 changes nothing.
    expected = [first.draw() for _ in range(11)] + [second.draw() for _ in range(19)]
    assert got == expected


def test_full_period_of_an_8_bit_unit_visits_every_nonzero_state():
    unit = GaloisLFSRUnit(width=8, taps=DEFAULT_TAPS[8], seed=1)
    draws = collect(unit, 255, random.Random(0), stall=0.0)
    assert sorted(draws) == list(range(1, 256))


def test_draw_network_on_ints_matches_ref():
    model = GaloisLFSR(12, DEFAULT_TAPS[12], 77)
    assert draw_network(77, 12, DEFAULT_TAPS[12]) == model.draw()


@pytest.mark.parametrize("kwargs,message", [
    ({"width": 1, "taps": 1, "seed": 1}, "width must be an integer in 2..32, not 1"),
    ({"width": 8, "taps": 0x38, "seed": 1}, "taps must be a 8-bit mask with bit 7 set"),
    ({"width": 8, "taps": 0xB8, "seed": 0}, "seed must be an integer in 1..255, not 0"),
])
def test_invalid_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaloisLFSRUnit(**kwargs)
