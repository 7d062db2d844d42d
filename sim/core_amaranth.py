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

__all__ = ["CoreRun", "run_core_amaranth", "run_core_passes", "stream_source"]


@dataclass(frozen=True)
class CoreRun:
    """What the core produced: drained tiles in order, cycles from the first command to the last
    result beat (inclusive), the counter values at the end, each drained tile's ReLU mask bits and
    the raw ``o_data`` beats of each drain; ``prune_sum`` the pruner's sum (programs that prune);
    ``resprop_nnz``, ``resprop_exp_next`` and ``resprop_p`` the ReSprop nonzero count, the exponent
    after the controller's step and the P the next pass reads, read back through the core's P port
    (programs with a ReSpropSetting)."""

    tiles: list[torch.Tensor]
    cycles: int
    counters: dict[str, int | list[int]]
    masks: list[torch.Tensor]
    beats: list[list[int]]
    prune_sum: int | None = None
    resprop_nnz: int | None = None
    resprop_exp_next: int | None = None
    resprop_p: torch.Tensor | None = None


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


async def stream_source(ctx, port, items, *, rng: random.Random, stall: float, lead: int = 0) -> None:
    """Amaranth-simulator source for a stream port: after ``lead`` cycles, offers each item (raw
    payload bits) until taken, withholding ``valid`` for a cycle with probability ``stall`` first."""
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



async def read_resprop_results(ctx, dut, p_shape, p_addresses: list[int], operand_bits: int) -> dict:
    """After a ReSprop drain: the core's ``resprop_nnz`` and ``resprop_exp_next``, then (after a
    ``resprop_load`` pulse that turns the drained pass into the stored one) the P codes read back
    at ``p_addresses`` (one cycle each), shaped ``p_shape``. Works on either core's result path."""
    out = {"resprop_nnz": ctx.get(dut.resprop_nnz), "resprop_exp_next": ctx.get(dut.resprop_exp_next)}
    ctx.set(dut.resprop_load, 1)
    await ctx.tick()
    ctx.set(dut.resprop_load, 0)
    codes = []
    for addr in p_addresses:
        ctx.set(dut.resprop_p_addr, addr)
        await ctx.tick()
        codes.append(_signed(ctx.get(dut.resprop_p_rdata), operand_bits))
    out["resprop_p"] = torch.tensor(codes, dtype=torch.int64).reshape(p_shape)
    return out

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

    async def cmd_source(ctx):
        await stream_source(ctx, dut.i_cmd, enc.commands, rng=rng, stall=stall, lead=lead)

    async def data_source(ctx):
        await stream_source(ctx, dut.i_data, enc.data, rng=rng, stall=stall, lead=lead)

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
            await _begin_resprop_pass(ctx, dut, program, config, write_p=True)
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
            result.update(await read_resprop_results(ctx, dut, rs.p.shape, rs_addrs, config.operand_bits))

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
                   resprop_exp_next=result.get("resprop_exp_next"),
                   resprop_p=result.get("resprop_p"))


async def _begin_resprop_pass(ctx, dut: SparseCore, program: Program, config: StagConfig, *, write_p: bool) -> None:
    """Begin ``program``'s ReSprop pass: its settings with ``resprop_load`` (one cycle), then, if
    ``write_p``, its P into the read bank through the P port (one code per cycle)."""
    rs = program.resprop
    for name, value in resprop_inputs(program, config).items():
        ctx.set(getattr(dut, f"resprop_{name}"), value)
    ctx.set(dut.resprop_load, 1)
    await ctx.tick()
    ctx.set(dut.resprop_load, 0)
    if write_p:
        ctx.set(dut.resprop_p_we, 1)
        for addr, v in zip(resprop_p_addresses(rs.rows_per_sample, rs.cols, config), rs.p.flatten().tolist(),
                           strict=True):
            ctx.set(dut.resprop_p_addr, addr)
            ctx.set(dut.resprop_p_wdata, v & ((1 << config.operand_bits) - 1))
            await ctx.tick()
        ctx.set(dut.resprop_p_we, 0)


def run_core_passes(programs: list[Program], config: StagConfig, *, write_p: list[bool], seed: int = 0,
                    stall: float = 0.0, max_cycles: int = 2_000_000) -> list[CoreRun]:
    """Run ReSprop passes back to back on one core, keeping its P memory between them.

    Each program needs a ReSpropSetting. Before a program: ``resprop_load`` (which swaps in the P
    the previous pass stored), then, where ``write_p[i]``, the setting's P through the P port;
    where not, the pass reads what the core holds (the setting's P must then be what ref says the
    core holds). After it come the result tiles, ``resprop_nnz`` and ``resprop_exp_next``; the P the
    next load would see is not read here (that would swap); ``CoreRun.resprop_p`` is None. One
    process drives all three streams cycle by cycle, with ``stall`` as in :func:`run_core_amaranth`;
    ``cycles`` counts from the first command offered to the last result beat of that program.
    """
    if len(write_p) != len(programs):
        raise ValueError(f"write_p has {len(write_p)} entries for {len(programs)} programs")
    encoded = [encode_program(p, config) for p in programs]
    for i, p in enumerate(programs):
        if p.resprop is None:
            raise ValueError(f"programs[{i}] has no ReSpropSetting")
        if p.prune is not None:
            raise ValueError(f"programs[{i}] prunes; run_core_passes runs ReSprop passes only")
    dut = SparseCore(config)
    rng = random.Random(seed)
    runs: list[CoreRun] = []

    async def bench(ctx):
        for program, enc, write in zip(programs, encoded, write_p, strict=True):
            ctx.set(dut.topk_threshold, program.topk_threshold or 0)
            await _begin_resprop_pass(ctx, dut, program, config, write_p=write)
            await ctx.tick()
            beats: list[int] = []
            expected = enc.drains * enc.drain_beats
            ci = di = cycle = 0
            last = -1
            while len(beats) < expected or ci < len(enc.commands) or not ctx.get(dut.idle):
                cmd_valid = ci < len(enc.commands) and not (stall and rng.random() < stall)
                data_valid = di < len(enc.data) and not (stall and rng.random() < stall)
                ready = not (stall and rng.random() < stall)
                ctx.set(dut.i_cmd.valid, cmd_valid)
                if cmd_valid:
                    ctx.set(Value.cast(dut.i_cmd.payload), enc.commands[ci])
                ctx.set(dut.i_data.valid, data_valid)
                if data_valid:
                    ctx.set(Value.cast(dut.i_data.payload), enc.data[di])
                ctx.set(dut.o_data.ready, ready)
                cmd_taken = cmd_valid and ctx.get(dut.i_cmd.ready)
                data_taken = data_valid and ctx.get(dut.i_data.ready)
                if ready and ctx.get(dut.o_data.valid):
                    beats.append(ctx.get(Value.cast(dut.o_data.payload)))
                    last = cycle
                await ctx.tick()
                ci += cmd_taken
                di += data_taken
                cycle += 1
                if cycle > max_cycles:
                    raise RuntimeError(f"pass {len(runs)} did not finish within {max_cycles} cycles")
            ctx.set(dut.i_cmd.valid, 0)
            ctx.set(dut.i_data.valid, 0)
            per = enc.drain_beats
            drains = [beats[i * per:(i + 1) * per] for i in range(enc.drains)]
            runs.append(CoreRun(tiles=[decode_drain(b, config) for b in drains], cycles=last + 1, counters={},
                                masks=[decode_drain_mask(b, config) for b in drains], beats=drains,
                                resprop_nnz=ctx.get(dut.resprop_nnz),
                                resprop_exp_next=ctx.get(dut.resprop_exp_next)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return runs
