# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the AXI top's register file: a 40-bit-counter configuration (the HI
words), every mapped word answering OKAY and the rest SLVERR, and the counter snapshot holding
still while the live counters run; a pruning program through the registers; and reset (one edge
mid-program, then every bus used in the first cycle, as docs/interface.md "Reset" states). The
cocotb tests (tests/sim/test_axi_cosim.py) cover the streams, the results and the interrupt on the
presets."""

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


def _example_program(config):
    """docs/core.md's worked example: a bitmap GEMM with an output mask, a raw and a requantized drain."""
    import torch

    from ref.contract import Drain, Operand, Program, TileGemm

    a = torch.tensor([[0, 3, 0, 0, -2, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0],
                      [5, -1, 2, 0, 7, -8, 0, 4], [0, 0, 0, 0, 0, 0, 0, -3]])
    b = torch.tensor([[1, 0, -1, 2], [2, 1, 0, -1], [0, 3, 1, 0], [-4, 0, 2, 1],
                      [1, -2, 0, 3], [0, 1, 1, -1], [3, 0, -2, 0], [-1, 2, 0, 1]])
    mask = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 1, 1], [1, 0, 1, 1]], dtype=torch.bool)
    return Program((TileGemm(0, Operand.bitmap(a), Operand.dense(b), out_mask=mask), Drain(0),
                    Drain(0, shift=1, out_bits=4, rounding="half_even", relu=True)),
                   config.acc_bits, config.tile_m, config.tile_n, config.tile_k)


def test_one_cycle_reset_mid_program_then_every_bus_at_once():
    """docs/interface.md, "Reset": one rising edge with ``rst`` high resets everything, even in the
    middle of a program (a GEMM computing, drains queued, a result beat waiting, registers written),
    and every bus may be used in the first cycle after it: the next program's first command, a
    register read and a register write are all taken at the first rising edge with ``rst`` low, and
    the program's results and counts are those of a fresh design."""
    from amaranth import ClockDomain, Module

    from ref.contract import evaluate
    from sim.core_program import decode_drain, encode_program

    config = dataclasses.replace(preset("tiny"), units=())
    program = _example_program(config)
    enc = encode_program(program, config)
    top = AxiTop(config)
    m = Module()
    m.domains.sync = sync = ClockDomain()
    m.submodules.top = top
    got: list[int] = []

    async def stream(ctx, commands, data, cycles, *, first_cycle=None):
        """Offer ``commands`` and ``data`` (and take every result) for ``cycles`` cycles or until
        every result beat of the program arrived; ``first_cycle(ctx)`` runs in the first cycle."""
        commands, data = list(commands), list(data)
        for cycle in range(cycles):
            ctx.set(top.s_axis_cmd_tvalid, bool(commands))
            ctx.set(top.s_axis_cmd_tdata, commands[0] if commands else 0)
            ctx.set(top.s_axis_data_tvalid, bool(data))
            ctx.set(top.s_axis_data_tdata, data[0] if data else 0)
            ctx.set(top.m_axis_result_tready, 1)
            if cycle == 0 and first_cycle is not None:
                first_cycle(ctx)
            cmd_taken = commands and ctx.get(top.s_axis_cmd_tready)
            data_taken = data and ctx.get(top.s_axis_data_tready)
            if ctx.get(top.m_axis_result_tvalid):
                got.append(ctx.get(top.m_axis_result_tdata))
            if cycle == 0 and first_cycle is not None:
                # Taken at the first rising edge: the first command, the read and the write.
                assert cmd_taken and ctx.get(top.s_axil_arready) and ctx.get(top.s_axil_awready)
            await ctx.tick()
            if cycle == 0 and first_cycle is not None:
                ctx.set(top.s_axil_arvalid, 0)
                ctx.set(top.s_axil_awvalid, 0)
                ctx.set(top.s_axil_wvalid, 0)
                assert ctx.get(top.s_axil_rvalid) and ctx.get(top.s_axil_rdata) == regs.ID_VALUE
                assert ctx.get(top.s_axil_bvalid) and ctx.get(top.s_axil_bresp) == OKAY
            if cmd_taken:
                commands.pop(0)
            if data_taken:
                data.pop(0)
            if len(got) == enc.drains * enc.drain_beats:
                break
        ctx.set(top.s_axis_cmd_tvalid, 0)
        ctx.set(top.s_axis_data_tvalid, 0)

    def read_id_and_write_scratch(ctx):
        ctx.set(top.s_axil_araddr, regs.ID)
        ctx.set(top.s_axil_arvalid, 1)
        ctx.set(top.s_axil_rready, 1)
        ctx.set(top.s_axil_awaddr, regs.SCRATCH)
        ctx.set(top.s_axil_wdata, 0x5A5A)
        ctx.set(top.s_axil_wstrb, 0xF)
        ctx.set(top.s_axil_awvalid, 1)
        ctx.set(top.s_axil_wvalid, 1)
        ctx.set(top.s_axil_bready, 1)

    async def bench(ctx):
        # Before the reset: registers changed from their reset values, and the program stopped in
        # the middle: its GEMM computing (MACs issued), both drains queued, the first result beat
        # waiting (result tready low from cycle 40 on).
        assert await _write(ctx, top, regs.SCRATCH, 0x1234) == OKAY
        assert await _write(ctx, top, regs.CTRL, regs.CTRL_IRQ_EN) == OKAY
        assert await _write(ctx, top, regs.PRUNE_TAU, 3) == OKAY
        assert await _write(ctx, top, regs.TOPK_THRESHOLD, 5) == OKAY
        await stream(ctx, enc.commands, enc.data, 40)
        ctx.set(top.m_axis_result_tready, 0)
        await ctx.tick().repeat(25)
        assert ctx.get(top.m_axis_result_tvalid), "the first result beat should be waiting"
        assert ctx.get(top.s_axil_arready)
        got.clear()
        # One rising edge with rst high; every valid low meanwhile.
        ctx.set(sync.rst, 1)
        await ctx.tick()
        ctx.set(sync.rst, 0)
        assert not ctx.get(top.m_axis_result_tvalid) and not ctx.get(top.irq)
        # The first cycle after the reset: the program's first command, a read and a write.
        await stream(ctx, enc.commands, enc.data, 400, first_cycle=read_id_and_write_scratch)
        await ctx.tick().repeat(3)
        for offset, want in ((regs.CMD_COUNT, len(enc.commands)), (regs.TILE_COUNT, enc.drains),
                             (regs.SCRATCH, 0x5A5A), (regs.CTRL, 0), (regs.PRUNE_TAU, 0), (regs.TOPK_THRESHOLD, 0),
                             (regs.STATUS, regs.STATUS_IDLE | regs.STATUS_DONE)):
            value, resp = await _read(ctx, top, offset)
            assert resp == OKAY and value == want, (hex(offset), value, want)
        assert await _write(ctx, top, regs.SNAPSHOT, regs.SNAPSHOT_TAKE) == OKAY
        names = regs.counter_names(config.lanes)
        counters = {name: (await _read(ctx, top, regs.counter_offset(f)))[0] for f, name in enumerate(names)}
        effectual = sum(c.effectual_macs for c in evaluate(program).counts)
        assert counters["macs_issued"] == effectual and counters["macs_dense"] == 128, counters
        assert sum(counters[f"lane_busy{j}"] for j in range(config.lanes)) == effectual, counters

    sim = Simulator(m)
    sim.add_clock(1e-8, domain="sync")
    sim.add_testbench(bench)
    sim.run()
    expected = evaluate(program)
    tiles = [decode_drain(got[i * enc.drain_beats:(i + 1) * enc.drain_beats], config) for i in range(enc.drains)]
    for tile, want in zip(tiles, expected.tiles, strict=True):
        assert tile.tolist() == want.tolist()
