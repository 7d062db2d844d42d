# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the AXI top's register file: a 40-bit-counter configuration (the HI
words), every mapped word answering OKAY and the rest SLVERR, and the counter snapshot holding
still while the live counters run. The cocotb tests (tests/sim/test_axi_cosim.py) cover the
streams, the results and the interrupt on the presets."""

from __future__ import annotations

import dataclasses

from amaranth.sim import Simulator

from hw import axi_registers as regs
from hw.axi_top import AxiTop
from hw.config import preset

OKAY, SLVERR = 0, 2


async def _read(ctx, top, offset):
    ctx.set(top.s_axil_araddr, offset)
    ctx.set(top.s_axil_arvalid, 1)
    ctx.set(top.s_axil_rready, 1)
    while not ctx.get(top.s_axil_arready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(top.s_axil_arvalid, 0)
    if offset == regs.RESPROP_P_DATA:   # the one register that answers a cycle later
        assert not ctx.get(top.s_axil_rvalid)
        await ctx.tick()
    assert ctx.get(top.s_axil_rvalid)
    value, resp = ctx.get(top.s_axil_rdata), ctx.get(top.s_axil_rresp)
    await ctx.tick()
    return value, resp


async def _write(ctx, top, offset, value, strobe=0xF):
    ctx.set(top.s_axil_awaddr, offset)
    ctx.set(top.s_axil_wdata, value)
    ctx.set(top.s_axil_wstrb, strobe)
    ctx.set(top.s_axil_awvalid, 1)
    ctx.set(top.s_axil_wvalid, 1)
    ctx.set(top.s_axil_bready, 1)
    while not ctx.get(top.s_axil_awready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(top.s_axil_awvalid, 0)
    ctx.set(top.s_axil_wvalid, 0)
    assert ctx.get(top.s_axil_bvalid)
    resp = ctx.get(top.s_axil_bresp)
    await ctx.tick()
    return resp


def _simulate(top, bench):
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_register_file_with_wide_counters():
    config = dataclasses.replace(preset("tiny"), counter_bits=40, units=())
    top = AxiTop(config)
    mapped = set(regs.mapped_offsets(config.lanes))
    seen = {}

    async def bench(ctx):
        ctx.set(top.m_axis_result_tready, 1)
        for offset in range(0, 0x400, 4):
            value, resp = await _read(ctx, top, offset)
            assert resp == (OKAY if offset in mapped else SLVERR), hex(offset)
            seen[offset] = value
        # Keep the core busy: a DRAIN command offered continuously is taken and runs; while it and
        # the next ones run, the live cycle counter advances but the snapshot must not.
        drain_word = 1                                   # op = DRAIN, acc 0, raw
        ctx.set(top.s_axis_cmd_tdata, drain_word)
        ctx.set(top.s_axis_cmd_tvalid, 1)
        for _ in range(5):
            await ctx.tick()
        assert await _write(ctx, top, regs.SNAPSHOT, regs.SNAPSHOT_TAKE) == OKAY
        first = [(await _read(ctx, top, regs.counter_offset(i, high)))[0] for i in range(2) for high in (0, 1)]
        for _ in range(10):
            await ctx.tick()
        again = [(await _read(ctx, top, regs.counter_offset(i, high)))[0] for i in range(2) for high in (0, 1)]
        assert again == first, "the snapshot changed without a snapshot write"
        assert await _write(ctx, top, regs.SNAPSHOT, regs.SNAPSHOT_TAKE) == OKAY
        later = (await _read(ctx, top, regs.counter_offset(0)))[0]
        assert later > first[0] > 0, (first, later)
        assert first[1] == 0, "HI word of a small 40-bit count"
        print("cycles snapshot", first, later)

    _simulate(top, bench)
    assert seen[regs.ID] == regs.ID_VALUE
    assert seen[regs.config_offset("counter_bits")] == 40
    assert seen[regs.config_offset("counters")] == 5 + config.lanes
    assert seen[regs.STATUS] == regs.STATUS_IDLE


def test_pruning_program_through_the_registers():
    """PRUNE_TAU and PRUNE_SEED load the result-path pruner; a pruning program's result beats (values
    and mask bits) equal ref's, and PRUNE_SUM reads ref's sum of |g|."""
    from sim.core_regression import prune_cases

    config = dataclasses.replace(preset("tiny"), units=())
    top = AxiTop(config)
    case = prune_cases(config, 1)[0]
    print(f"case {case.name}: tau={case.prune_tau} seed={case.prune_seed}")
    got: list[int] = []

    async def bench(ctx):
        ctx.set(top.m_axis_result_tready, 1)
        assert await _write(ctx, top, regs.PRUNE_TAU, case.prune_tau) == OKAY
        assert await _write(ctx, top, regs.PRUNE_SEED, case.prune_seed) == OKAY
        commands, data = list(case.commands), list(case.data)
        for _ in range(20 * (len(case.expected) + len(data)) + 2000):
            ctx.set(top.s_axis_cmd_tvalid, bool(commands))
            ctx.set(top.s_axis_cmd_tdata, commands[0] if commands else 0)
            ctx.set(top.s_axis_data_tvalid, bool(data))
            ctx.set(top.s_axis_data_tdata, data[0] if data else 0)
            await ctx.delay(1e-9)
            cmd_taken = commands and ctx.get(top.s_axis_cmd_tready)
            data_taken = data and ctx.get(top.s_axis_data_tready)
            if ctx.get(top.m_axis_result_tvalid):
                got.append(ctx.get(top.m_axis_result_tdata))
            await ctx.tick()
            if cmd_taken:
                commands.pop(0)
            if data_taken:
                data.pop(0)
            if len(got) == len(case.expected):
                break
        ctx.set(top.s_axis_cmd_tvalid, 0)
        ctx.set(top.s_axis_data_tvalid, 0)
        for _ in range(5):
            await ctx.tick()
        value, resp = await _read(ctx, top, regs.PRUNE_SUM)
        assert resp == OKAY and value == case.prune_sum, (value, case.prune_sum)

    _simulate(top, bench)
    assert got == case.expected
