"""cocotb driver for the AXI top level (``stag_<name>_axi``, :class:`hw.axi_top.AxiTop`).

Built on cocotbext-axi's bus models: :class:`AxiStreamSource` for the command and data streams,
:class:`AxiStreamSink` for the result stream, :class:`AxiLiteMaster` for the registers. Register
offsets come from :mod:`hw.axi_registers`; the wire format of the streams from
:mod:`sim.core_program` (docs/core.md, docs/interface.md).

Speed: a program goes out as one AXI4-Stream frame per input stream (``send_nowait``, no await per
beat) and results come back one frame per drained tile (``TLAST``), so the Python work per cycle is
only cocotbext-axi's own bus loops. Each stream model is built with ``byte_lanes=1``: one list
element is one whole ``tdata`` word, so beats are plain ints. Random gaps and backpressure, when
asked for, are cocotbext-axi pause generators, on the streams (:meth:`AxiAccelerator.set_gaps`) and
on each AXI4-Lite channel (:meth:`AxiAccelerator.set_register_gaps`).

Typical use (see docs/interface.md for a complete test)::

    acc = AxiAccelerator(dut, config)
    await acc.start()                       # clock, reset, configuration readback checked
    result = await acc.run_program(program) # a ref.contract Program -> drained tiles + counters
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import convert, get_sim_time
from cocotb.triggers import RisingEdge
from cocotbext.axi import (
    AxiLiteBus,
    AxiLiteMaster,
    AxiResp,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)

from hw import axi_registers as regs
from hw.config import StagConfig
from hw.layouts import core_command_layout_for

__all__ = ["AxiAccelerator", "AxiRun", "ConfigMismatch", "RegisterError", "expected_config"]

#: Clock period the driver starts (only cycle counts matter).
CLOCK_PERIOD_NS = 10


class RegisterError(AssertionError):
    """An AXI4-Lite access did not answer OKAY."""


class ConfigMismatch(AssertionError):
    """The configuration read back over AXI4-Lite differs from the expected configuration."""


@dataclass
class AxiRun:
    """What one program run observed.

    ``frames``: the result ``tdata`` words of each drained tile (one list per TLAST-delimited
    frame). ``tile_end_cycles``: cycle (since the last reset) of each frame's TLAST transfer.
    ``counters``: the performance counters (snapshot taken after the core went idle), by name,
    with ``lane_busy`` as a list. ``cycles``: simulated cycles from the first beat offered to the
    core being idle; ``seconds``: wall-clock time of the same span. ``prune_sum``: PRUNE_SUM after
    a program that loaded the pruner. ``resprop_nnz`` / ``resprop_exp_next`` / ``resprop_p``:
    RESPROP_NNZ and RESPROP_EXP_NEXT after a ReSprop pass, and the P it stored, read back through
    RESPROP_P_DATA after the next RESPROP_LOAD.
    """

    frames: list[list[int]]
    tile_end_cycles: list[int]
    counters: dict[str, Any]
    cycles: int
    seconds: float
    tiles: list[Any] = field(default_factory=list)
    masks: list[Any] = field(default_factory=list)
    prune_sum: int | None = None
    tile_start_cycles: list[int] = field(default_factory=list)
    resprop_nnz: int | None = None
    resprop_exp_next: int | None = None
    resprop_p: list[int] | None = None

    @property
    def cycles_per_second(self) -> float:
        return self.cycles / self.seconds if self.seconds > 0 else float("inf")


def _pauses(rng: random.Random, probability: float) -> Iterator[bool]:
    """One pause decision per clock: pause with ``probability``."""
    return (rng.random() < probability for _ in itertools.count())


def _set_pauses(model: Any, rng: random.Random | None, probability: float) -> None:
    """Pause ``model`` (a cocotbext-axi source or sink) with ``probability`` per clock, drawing from its
    own generator seeded from ``rng`` (so the runs are reproducible from the seed); none when ``rng``
    is ``None`` or ``probability`` is 0."""
    model.set_pause_generator(_pauses(random.Random(rng.random()), probability) if rng and probability > 0
                              else None)
    # cocotbext-axi stops the old generator's task without clearing ``pause``: a stream removed
    # from gaps during a pause stayed paused for good (a gapped case, then an ungapped one, hung on
    # the commands).
    model.pause = False


def expected_config(config: StagConfig, dut: Any) -> dict[str, int]:
    """What the configuration registers must read for ``config``, worked out independently of the
    RTL's own table: from the configuration's fields and the ``tdata`` port widths of ``dut``."""
    cmd_bits = core_command_layout_for(config).size
    return {
        "operand_bits": config.operand_bits, "acc_bits": config.acc_bits, "max_reduction": config.max_reduction,
        "lanes": config.lanes, "tile_m": config.tile_m, "tile_n": config.tile_n, "tile_k": config.tile_k,
        "bus_elems": config.bus_elems, "accumulators": config.accumulators, "sparse": int(config.sparse),
        "counter_bits": config.counter_bits, "acc_index_bits": config.acc_index_bits,
        "cmd_bits": cmd_bits, "cmd_tdata_bits": len(dut.s_axis_cmd_tdata),
        "data_bits": config.bus_elems * config.operand_bits, "data_tdata_bits": len(dut.s_axis_data_tdata),
        "result_bits": config.lanes * (config.acc_bits + 1), "result_tdata_bits": len(dut.m_axis_result_tdata),
        "drain_beats": config.tile_m * config.tile_n // config.lanes, "counters": 5 + config.lanes,
    }


class AxiAccelerator:
    """The accelerator as a host sees it: three AXI4-Stream ports and a register file.

    ``config`` is the configuration the design was generated from (``sim.design.current_design()``).
    """

    def __init__(self, dut: Any, config: StagConfig) -> None:
        self.dut = dut
        self.config = config
        self.cmd = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_cmd"), dut.clk, dut.rst, byte_lanes=1)
        self.data = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_data"), dut.clk, dut.rst, byte_lanes=1)
        self.result = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_result"), dut.clk, dut.rst, byte_lanes=1)
        self.regs = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        # The models log every frame at INFO, formatting whole frames: keep that off the hot path.
        for model in (self.cmd, self.data, self.result, self.regs.write_if, self.regs.read_if):
            model.log.setLevel(logging.WARNING)
        self._clock_started = False
        self._reset_time_ns = 0.0
        self.readback: dict[str, int] = {}

    # ---- time ----------------------------------------------------------------------------------------
    def cycle(self, sim_steps: int | None = None) -> int:
        """Cycles since the end of the last reset, at ``sim_steps`` (default: now)."""
        ns = get_sim_time("ns") if sim_steps is None else convert(sim_steps, "step", to="ns")
        return round((ns - self._reset_time_ns) / CLOCK_PERIOD_NS)

    async def start(self, *, check_config: bool = True) -> dict[str, int]:
        """Start the clock, reset, and read the configuration back (checked against ``config``)."""
        if not self._clock_started:
            Clock(self.dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
            self._clock_started = True
        await self.reset()
        self.readback = await self.read_config()
        if check_config:
            self.check_config(self.readback)
        return self.readback

    async def reset(self, cycles: int = 2) -> None:
        """Hold the synchronous reset for ``cycles`` rising edges (the bus models flush with it)."""
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        self._reset_time_ns = get_sim_time("ns")

    def set_gaps(self, rng: random.Random | None, idle: float = 0.0, stall: float = 0.0) -> None:
        """Random gaps on both input streams (``idle`` per cycle) and backpressure on the results
        (``stall`` per cycle); each stream draws from its own generator seeded from ``rng``."""
        for model, p in ((self.cmd, idle), (self.data, idle), (self.result, stall)):
            _set_pauses(model, rng, p)

    def set_register_gaps(self, rng: random.Random | None, probability: float = 0.0) -> None:
        """Random pauses on every AXI4-Lite channel, each ``probability`` per cycle from its own
        generator seeded from ``rng``: idle cycles before AW, W and AR (so AW and W of one write
        may arrive in different cycles) and backpressure (ready low) on B and R. ``None`` removes
        them."""
        write, read = self.regs.write_if, self.regs.read_if
        for channel in (write.aw_channel, write.w_channel, write.b_channel, read.ar_channel, read.r_channel):
            _set_pauses(channel, rng, probability)

    # ---- registers ---------------------------------------------------------------------------------
    async def read_reg(self, offset: int) -> int:
        resp = await self.regs.read(offset, 4)
        if resp.resp != AxiResp.OKAY:
            raise RegisterError(f"read of {offset:#05x} answered {resp.resp!r}")
        return int.from_bytes(resp.data, "little")

    async def read_regs(self, offset: int, count: int) -> list[int]:
        """``count`` consecutive registers in one burst of reads (several outstanding)."""
        resp = await self.regs.read(offset, 4 * count)
        if resp.resp != AxiResp.OKAY:
            raise RegisterError(f"read of {count} registers at {offset:#05x} answered {resp.resp!r}")
        return [int.from_bytes(resp.data[4 * i:4 * i + 4], "little") for i in range(count)]

    async def write_reg(self, offset: int, value: int) -> None:
        resp = await self.regs.write(offset, value.to_bytes(4, "little"))
        if resp.resp != AxiResp.OKAY:
            raise RegisterError(f"write of {value:#x} to {offset:#05x} answered {resp.resp!r}")

    async def read_config(self) -> dict[str, int]:
        """Every configuration readback register, by field name."""
        values = await self.read_regs(regs.CONFIG_BASE, len(regs.CONFIG_FIELDS))
        return dict(zip(regs.CONFIG_FIELDS, values, strict=True))

    def check_config(self, readback: dict[str, int]) -> None:
        """Raise :class:`ConfigMismatch` naming every field that differs from ``config``."""
        want = expected_config(self.config, self.dut)
        for name in ("cmd", "data", "result"):  # tdata is the payload rounded up to whole bytes
            want_tdata = 8 * -(-want[f"{name}_bits"] // 8)
            if want[f"{name}_tdata_bits"] != want_tdata:
                raise ConfigMismatch(f"{name} tdata is {want[f'{name}_tdata_bits']} bits, expected {want_tdata}")
        wrong = [f"{k}: read {readback.get(k)}, expected {v}" for k, v in want.items() if readback.get(k) != v]
        if wrong:
            raise ConfigMismatch("configuration readback differs: " + "; ".join(wrong))

    async def status(self) -> int:
        return await self.read_reg(regs.STATUS)

    async def wait_idle(self) -> None:
        """Poll STATUS until the core is idle."""
        while not await self.status() & regs.STATUS_IDLE:
            pass

    async def counters(self) -> dict[str, Any]:
        """Snapshot every performance counter (one write), then read them in one burst."""
        await self.write_reg(regs.SNAPSHOT, regs.SNAPSHOT_TAKE)
        names = regs.counter_names(self.config.lanes)
        words = await self.read_regs(regs.COUNTER_BASE, 2 * len(names))
        values = [words[2 * i] | words[2 * i + 1] << 32 for i in range(len(names))]
        out: dict[str, Any] = dict(zip(names[:5], values[:5], strict=True))
        out["lane_busy"] = values[5:]
        return out

    # ---- programs ----------------------------------------------------------------------------------
    async def load_pruner(self, tau: int, seed: int) -> None:
        """Set the result-path pruner for the next program: PRUNE_TAU, then PRUNE_SEED (which loads
        both and clears PRUNE_SUM). Only between programs (the core idle)."""
        await self.write_reg(regs.PRUNE_TAU, tau)
        await self.write_reg(regs.PRUNE_SEED, seed)

    async def begin_resprop(self, settings: dict[str, int]) -> None:
        """Begin a ReSprop pass: the RESPROP_* settings (``sim.core_program.resprop_inputs``), then
        RESPROP_LOAD (swaps in the P the last pass stored, clears RESPROP_NNZ). Core idle only."""
        for name, offset in regs.RESPROP_SETTINGS.items():
            await self.write_reg(offset, settings[name] & 0xFFFF_FFFF)   # THR_EXP may be negative
        await self.write_reg(regs.RESPROP_LOAD, regs.RESPROP_LOAD_GO)

    async def write_resprop_p(self, addrs: Sequence[int], codes: Sequence[int]) -> None:
        """Write P codes at element addresses (``sim.core_program.resprop_p_addresses``) of the read
        bank; consecutive addresses need one P_INDEX write, as P_DATA steps the index."""
        index = None
        mask = (1 << self.config.operand_bits) - 1
        for addr, code in zip(addrs, codes, strict=True):
            if addr != index:
                await self.write_reg(regs.RESPROP_P_INDEX, addr)
            await self.write_reg(regs.RESPROP_P_DATA, code & mask)
            index = addr + 1

    async def read_resprop_p(self, addrs: Sequence[int]) -> list[int]:
        """The P codes (signed) at element addresses of the read bank."""
        index, out = None, []
        for addr in addrs:
            if addr != index:
                await self.write_reg(regs.RESPROP_P_INDEX, addr)
            word = await self.read_reg(regs.RESPROP_P_DATA)
            out.append(word - (1 << 32) if word >> 31 else word)
            index = addr + 1
        return out

    async def run_encoded(self, commands: Sequence[int], data: Sequence[int], drains: int, *,
                          prune: tuple[int, int] | None = None, topk_threshold: int | None = None,
                          resprop: tuple[dict[str, int], Sequence[int], Sequence[int]] | None = None) -> AxiRun:
        """Stream encoded commands and data (``sim.core_program.encode_program``) concurrently, collect
        ``drains`` result tiles, wait for the core to go idle and read the counters. ``prune``:
        (tau, seed) loaded into the result-path pruner first; ``AxiRun.prune_sum`` then holds PRUNE_SUM.
        ``topk_threshold``: written to TOPK_THRESHOLD first (the ``topk`` drains' comparator).
        ``resprop``: (settings, P addresses, P codes): the pass is begun and its P written first;
        afterwards ``AxiRun.resprop_nnz`` holds RESPROP_NNZ and ``resprop_p`` the stored P, read back
        after a second RESPROP_LOAD."""
        if resprop is not None:
            await self.begin_resprop(resprop[0])
            await self.write_resprop_p(resprop[1], resprop[2])
        if prune is not None:
            await self.load_pruner(*prune)
        if topk_threshold is not None:
            await self.write_reg(regs.TOPK_THRESHOLD, topk_threshold)
        run = await self.stream_programs([(commands, data, drains)])
        if prune is not None:
            run.prune_sum = await self.read_reg(regs.PRUNE_SUM)
        if resprop is not None:
            run.resprop_nnz = await self.read_reg(regs.RESPROP_NNZ)
            word = await self.read_reg(regs.RESPROP_EXP_NEXT)
            run.resprop_exp_next = word - (1 << 32) if word >> 31 else word
            await self.write_reg(regs.RESPROP_LOAD, regs.RESPROP_LOAD_GO)
            run.resprop_p = await self.read_resprop_p(resprop[1])
        return run

    async def stream_programs(self, programs: Sequence[tuple[Sequence[int], Sequence[int], int]]) -> AxiRun:
        """Stream encoded programs, each (commands, data, drains), back to back: every program's
        commands and data are queued at once, one frame per program on each stream, and the models
        drive a frame's first beat as soon as the last beat of the one before is taken, so neither
        input stream idles between programs. Collects every program's result tiles in order, waits for the core
        to go idle and reads the counters (they then cover all the programs: nothing resets them)."""
        drain_beats = self.config.tile_m * self.config.tile_n // self.config.lanes
        start_cycle, started = self.cycle(), time.perf_counter()
        # The models drive a beat per cycle with no Python await per beat.
        for commands, data, _ in programs:
            if commands:
                self.cmd.send_nowait(AxiStreamFrame(list(commands)))
            if data:
                self.data.send_nowait(AxiStreamFrame(list(data)))
        frames, starts, ends = [], [], []
        for i in range(sum(drains for _, _, drains in programs)):
            frame = await self.result.recv()
            if len(frame.tdata) != drain_beats:
                raise AssertionError(f"result tile {i}: TLAST after {len(frame.tdata)} beats, "
                                     f"expected {drain_beats}")
            frames.append(list(frame.tdata))
            starts.append(self.cycle(frame.sim_time_start))
            ends.append(self.cycle(frame.sim_time_end))
        await self.cmd.wait()
        await self.data.wait()
        await self.wait_idle()
        cycles, seconds = self.cycle() - start_cycle, time.perf_counter() - started
        return AxiRun(frames=frames, tile_end_cycles=ends, counters=await self.counters(), cycles=cycles,
                      seconds=seconds, tile_start_cycles=starts)

    async def run_program(self, program: Any) -> AxiRun:
        """Run a ``ref.contract.Program``; ``AxiRun.tiles`` holds the drained ``[tile_m, tile_n]`` tiles and
        ``AxiRun.masks`` their mask bits (ReLU, or top-K keep bits on ``topk`` drains)."""
        # sim.core_program imports torch: only when asked for.
        from sim.core_program import (
            decode_drain,
            decode_drain_mask,
            encode_program,
            resprop_inputs,
            resprop_p_addresses,
        )

        encoded = encode_program(program, self.config)
        prune = None if program.prune is None else (program.prune.tau, program.prune.seed)
        rs = program.resprop
        resprop = None if rs is None else (
            resprop_inputs(program, self.config),
            resprop_p_addresses(rs.rows_per_sample, rs.cols, self.config),
            [int(v) for v in rs.p.flatten().tolist()])
        run = await self.run_encoded(encoded.commands, encoded.data, encoded.drains, prune=prune,
                                     topk_threshold=program.topk_threshold, resprop=resprop)
        mask = (1 << self.config.result_bits) - 1  # drop tdata's padding bits
        run.tiles = [decode_drain([beat & mask for beat in frame], self.config) for frame in run.frames]
        run.masks = [decode_drain_mask([beat & mask for beat in frame], self.config) for frame in run.frames]
        return run

    # ---- interrupt ---------------------------------------------------------------------------------
    async def enable_irq(self, enable: bool = True) -> None:
        await self.write_reg(regs.CTRL, regs.CTRL_IRQ_EN if enable else 0)

    async def clear_done(self) -> None:
        """Write 1 to STATUS.DONE (clears it and the interrupt)."""
        await self.write_reg(regs.STATUS, regs.STATUS_DONE)


def log_speed(run: AxiRun, name: str) -> None:
    cocotb.log.info("%s: %d cycles in %.3f s wall = %.0f simulated cycles/s", name, run.cycles, run.seconds,
                    run.cycles_per_second)
