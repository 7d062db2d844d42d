"""Run an encoded program on :class:`hw.core.SparseCore` in the Amaranth simulator.

The fast path for unit tests of the core (no Verilog, no external simulator): the same
:mod:`sim.core_program` beats as the cocotb testbench, with optional random valid/ready stalls
on all three streams. Returns the drained tiles, the cycle count and the counters.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import torch
from amaranth import Value
from amaranth.sim import Simulator

from hw.config import StagConfig
from hw.core import SparseCore
from ref.contract import Program
from sim.core_program import (
    decode_drain,
    decode_drain_mask,
    encode_program,
    resprop_inputs,
    resprop_p_addresses,
)

__all__ = ["CoreRun", "run_core_amaranth"]


@dataclass(frozen=True)
class CoreRun:
    """What the core produced: drained tiles in order, cycles from the first command to the last
    result beat (inclusive), the counter values at the end, each drained tile's ReLU mask bits and
    the raw ``o_data`` beats of each drain; ``prune_sum`` the pruner's sum (programs that prune);
    ``resprop_nnz`` and ``resprop_p`` the ReSprop nonzero count and the P the next pass reads, read
    back through the core's P port (programs with a ReSpropSetting)."""

    tiles: list[torch.Tensor]
    cycles: int
    counters: dict[str, int | list[int]]
    masks: list[torch.Tensor]
    beats: list[list[int]]
    prune_sum: int | None = None
    resprop_nnz: int | None = None
    resprop_p: torch.Tensor | None = None


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


def run_core_amaranth(program: Program, config: StagConfig, *, seed: int = 0, stall: float = 0.0,
                      max_cycles: int = 2_000_000, data: list[int] | None = None) -> CoreRun:
    """Simulate ``program`` on the core of ``config``.

    ``stall`` is the probability that a source withholds ``valid`` (or the sink ``ready``) in a
    cycle, drawn from ``random.Random(seed)``. ``data`` replaces the encoded data beats (same
    count), e.g. with mask rows the core itself drained.
    """
    enc = encode_program(program, config)
    if data is not None:
        if len(data) != len(enc.data):
            raise ValueError(f"data has {len(data)} beats, the program needs {len(enc.data)}")
        enc = replace(enc, data=tuple(data))
    dut = SparseCore(config)
    rng = random.Random(seed)
    out_beats: list[int] = []
    expected = enc.drains * enc.drain_beats
    result: dict[str, object] = {}

    # A program that prunes loads the pruner first (tau, seed), two cycles before any command.
    setting = program.prune
    lead = 0 if setting is None else 3
    # A ReSprop program begins a pass (resprop_load), then writes its P into the read bank, one
    # code per cycle; afterwards a second load swaps in the stored P, which is read back.
    rs = program.resprop
    rs_addrs = [] if rs is None else resprop_p_addresses(rs.rows_per_sample, rs.cols, config)
    if rs is not None:
        lead += 1 + len(rs_addrs) + 1

    async def source(ctx, port, items):
        if lead:
            await ctx.tick().repeat(lead)
        for item in items:
            while stall and rng.random() < stall:
                ctx.set(port.valid, 0)
                await ctx.tick()
            ctx.set(port.valid, 1)
            ctx.set(Value.cast(port.payload), item)
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def cmd_source(ctx):
        await source(ctx, dut.i_cmd, enc.commands)

    async def data_source(ctx):
        await source(ctx, dut.i_data, enc.data)

    async def sink(ctx):
        # SWAT's stored threshold: registered by the core, so set before the first command.
        ctx.set(dut.topk_threshold, program.topk_threshold or 0)
        if setting is not None:
            ctx.set(dut.prune_tau, setting.tau)
            ctx.set(dut.prune_seed, setting.seed)
            ctx.set(dut.prune_load, 1)
            await ctx.tick()
            ctx.set(dut.prune_load, 0)
        if rs is not None:
            for name, value in resprop_inputs(program, config).items():
                ctx.set(getattr(dut, f"resprop_{name}"), value)
            ctx.set(dut.resprop_load, 1)
            await ctx.tick()
            ctx.set(dut.resprop_load, 0)
            ctx.set(dut.resprop_p_we, 1)
            for addr, v in zip(rs_addrs, rs.p.flatten().tolist(), strict=True):
                ctx.set(dut.resprop_p_addr, addr)
                ctx.set(dut.resprop_p_wdata, v & ((1 << config.operand_bits) - 1))
                await ctx.tick()
            ctx.set(dut.resprop_p_we, 0)
        cycle = -lead + (1 if setting is not None else 0) + (0 if rs is None else 1 + len(rs_addrs))
        while len(out_beats) < expected or not ctx.get(dut.idle):
            ready = not (stall and rng.random() < stall)
            ctx.set(dut.o_data.ready, ready)
            await ctx.delay(1e-9)  # let combinational logic settle before sampling
            if ready and ctx.get(dut.o_data.valid):
                out_beats.append(ctx.get(Value.cast(dut.o_data.payload)))
                result["last"] = cycle
            await ctx.tick()
            cycle += 1
            if cycle > max_cycles:
                raise RuntimeError(f"core did not finish within {max_cycles} cycles "
                                   f"({len(out_beats)}/{expected} result beats)")
        result["counters"] = {
            name: ctx.get(getattr(dut.counters, name))
            for name in ("cycles", "macs_issued", "macs_dense", "input_starved", "output_stalled")
        }
        result["counters"]["lane_busy"] = [ctx.get(dut.counters.lane_busy[j]) for j in range(config.lanes)]
        result["prune_sum"] = ctx.get(dut.prune_sum) if setting is not None else None
        if rs is not None:
            result["resprop_nnz"] = ctx.get(dut.resprop_nnz)
            ctx.set(dut.resprop_load, 1)
            await ctx.tick()
            ctx.set(dut.resprop_load, 0)
            codes = []
            for addr in rs_addrs:
                ctx.set(dut.resprop_p_addr, addr)
                await ctx.tick()
                codes.append(_signed(ctx.get(dut.resprop_p_rdata), config.operand_bits))
            result["resprop_p"] = torch.tensor(codes, dtype=torch.int64).reshape(rs.p.shape)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(cmd_source)
    sim.add_process(data_source)
    sim.add_testbench(sink)
    sim.run()
    tiles = [decode_drain(out_beats[i * enc.drain_beats:(i + 1) * enc.drain_beats], config)
             for i in range(enc.drains)]
    masks = [decode_drain_mask(out_beats[i * enc.drain_beats:(i + 1) * enc.drain_beats], config)
             for i in range(enc.drains)]
    return CoreRun(tiles=tiles, cycles=int(result.get("last", -1)) + 1, counters=result["counters"], masks=masks,
                   beats=[out_beats[i * enc.drain_beats:(i + 1) * enc.drain_beats] for i in range(enc.drains)],
                   prune_sum=result["prune_sum"], resprop_nnz=result.get("resprop_nnz"),
                   resprop_p=result.get("resprop_p"))
