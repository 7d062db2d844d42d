"""cocotb tests of the generated Galois LFSR unit against ``ref.lfsr.GaloisLFSR``.

Expected draws come only from ``ref``. Each test records the draws and the cycle of each transfer
so the Icarus and Verilator runs can be compared exactly.
"""

from __future__ import annotations

import cocotb
from amaranth import unsigned
from cocotb.triggers import ReadOnly, RisingEdge

from ref.lfsr import GaloisLFSR
from sim.design import current_design
from sim.env import reset_and_count, test_rng, write_record
from sim.stream import StreamSink


async def take_draws(dut, test_name: str, count: int, stall: float) -> list[int]:
    config = current_design().config
    rng = test_rng(test_name)
    counter = await reset_and_count(dut)
    dut.i_seed__valid.value = 0
    sink = StreamSink(dut, "o_stream", unsigned(config.lfsr_width), clock=dut.clk, counter=counter,
                      rng=rng, stall_probability=stall)
    received = await sink.receive(count)
    draws = [r.payload for r in received]
    write_record(test_name, {"draws": draws, "cycles": [r.cycle for r in received]})
    return draws


@cocotb.test()
async def test_draws_equal_ref(dut):
    """After reset the unit emits GaloisLFSR(width, taps, seed)'s draws, one per cycle."""
    config = current_design().config
    model = GaloisLFSR(config.lfsr_width, config.lfsr_taps, config.lfsr_seed)
    draws = await take_draws(dut, "draws_equal_ref", 600, stall=0.0)
    expected = [model.draw() for _ in range(600)]
    matches = [a == b for a, b in zip(draws, expected, strict=True)]
    assert all(matches), f"first difference at draw {matches.index(False)}"


@cocotb.test()
async def test_draws_equal_ref_under_backpressure(dut):
    """Random ready stalls never skip or repeat a draw."""
    config = current_design().config
    model = GaloisLFSR(config.lfsr_width, config.lfsr_taps, config.lfsr_seed)
    draws = await take_draws(dut, "draws_under_backpressure", 400, stall=0.5)
    assert draws == [model.draw() for _ in range(400)]


@cocotb.test()
async def test_reseed(dut):
    """A seed transfer restarts the sequence from GaloisLFSR(seed=value); a zero seed is ignored."""
    config = current_design().config
    rng = test_rng("reseed")
    await reset_and_count(dut)
    dut.o_stream__ready.value = 1
    dut.i_seed__valid.value = 0
    seeds = [rng.randint(1, (1 << config.lfsr_width) - 1) for _ in range(3)] + [0]
    observed, expected = [], []
    model = GaloisLFSR(config.lfsr_width, config.lfsr_taps, config.lfsr_seed)
    for seed in seeds:
        dut.i_seed__payload.value = seed
        dut.i_seed__valid.value = 1
        await ReadOnly()
        assert int(dut.i_seed__ready.value) == 1
        expected.append(model.draw())  # the draw offered in the reseed cycle is consumed
        observed.append(int(dut.o_stream__payload.value))
        await RisingEdge(dut.clk)
        dut.i_seed__valid.value = 0
        if seed:
            model = GaloisLFSR(config.lfsr_width, config.lfsr_taps, seed)
        for _ in range(rng.randint(1, 20)):
            await ReadOnly()
            observed.append(int(dut.o_stream__payload.value))
            expected.append(model.draw())
            await RisingEdge(dut.clk)
    assert observed == expected
    write_record("reseed", {"draws": observed})
