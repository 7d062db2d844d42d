"""cocotb test of the AXI top level (``stag_<name>_axi``) through cocotbext-axi (``sim.axi_driver``).

Pauses on the AXI4-Lite port are cocotbext-axi pause generators on each of its five channels,
each drawing from its own generator seeded from the test's seed (``sim.env.test_rng``): idle
cycles before AW, W and AR (a write's AW and W then come in different cycles) and ready held low
on B and R.

``test_registers``: identification, configuration readback, reset values, SCRATCH with byte
strobes, the pruner's, top-K's and ReSprop's registers, SLVERR on unmapped addresses and ignored
writes to read-only registers, first on a free register port, then again from reset with every
AXI4-Lite channel paused at random (half the cycles; the paused pass must take more cycles); then,
still paused, the PAD_ERROR flag and the done/interrupt cycle (DONE, IRQ_EN, write-1-to-clear)
on a one-command run.

``test_programs``: every program of the ``STAG_VECTORS`` file (``sim.axi_cases``; expected beats and
MAC counts from ``ref.contract.evaluate``), each from a fresh reset with its own random input gaps
and result backpressure; a case with gaps also pauses every AXI4-Lite channel as often (its larger
gap probability), so all its register accesses (IRQ_EN, pruner, top-K and ReSprop setup, P writes
and read-back, STATUS polls, counters, the DONE clear) go through a paused port. Every result beat
is compared (padding bits included: they must be 0), TLAST must end every tile, the counters read
over AXI4-Lite must equal ``ref``'s MAC counts, and the interrupt must follow IRQ_EN: never raised
while disabled, raised after the last result while enabled, dropped by the write-1-to-clear.

``test_back_to_back``: the first two programs of the file that need no register setting, streamed
one right after the other with no reset and no idle cycle on the command and data streams between
them (each input TVALID falls once, after the second program's last beat); both programs' beats are
compared with ``ref``'s, and the counters, CMD_COUNT and TILE_COUNT must be the sums over the two.

Records (values, cycles of every tile end and interrupt edge, counters) go to ``STAG_RECORD_DIR``
for the cross-simulator comparison.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from hw import axi_registers as regs
from hw.config import StagConfig
from sim.axi_driver import AxiAccelerator, RegisterError, log_speed
from sim.core_vectors import load_vectors
from sim.design import current_design
from sim.env import test_rng, write_record


async def _expect_error(acc: AxiAccelerator, offset: int, *, write: bool) -> None:
    try:
        if write:
            await acc.write_reg(offset, 0xFFFF_FFFF)
        else:
            await acc.read_reg(offset)
    except RegisterError:
        return
    raise AssertionError(f"{'write' if write else 'read'} of {offset:#05x} did not answer SLVERR")


class _EdgeWatch:
    """Cycles of every ``edge`` (``RisingEdge`` or ``FallingEdge``) of a one-bit ``signal``
    (event-driven: no per-cycle Python)."""

    def __init__(self, acc: AxiAccelerator, signal: Any, edge: type = RisingEdge) -> None:
        self.acc = acc
        self.cycles: list[int] = []
        self._task = cocotb.start_soon(self._run(signal, edge))

    async def _run(self, signal: Any, edge: type) -> None:
        while True:
            await edge(signal)
            self.cycles.append(self.acc.cycle())

    def stop(self) -> None:
        self._task.cancel()


def _check_beats(name: str, got: list[int], expected: list[int], drain_beats: int) -> None:
    """Every result beat equals ``ref``'s, padding bits included; the first difference is named."""
    for position, (g, want) in enumerate(zip(got, expected, strict=True)):
        if g != want:
            drain, beat = divmod(position, drain_beats)
            raise AssertionError(f"{name}: drain {drain} beat {beat}: RTL {g:#x}, ref {want:#x}")


async def _register_checks(acc: AxiAccelerator, config: StagConfig) -> None:
    """Identification, reset values, byte strobes, the pruner's, top-K's and ReSprop's registers,
    read-only and unmapped addresses; from a reset, no program run since."""
    dut = acc.dut
    assert await acc.read_reg(regs.ID) == 0x5354_4147, "ID must read ASCII 'STAG'"
    assert await acc.read_reg(regs.VERSION) == 0x0001_0003
    reset_values = {name: await acc.read_reg(offset) for name, offset in (
        ("CTRL", regs.CTRL), ("STATUS", regs.STATUS), ("SNAPSHOT", regs.SNAPSHOT), ("SCRATCH", regs.SCRATCH),
        ("CMD_COUNT", regs.CMD_COUNT), ("TILE_COUNT", regs.TILE_COUNT))}
    assert reset_values == {"CTRL": 0, "STATUS": regs.STATUS_IDLE, "SNAPSHOT": 0, "SCRATCH": 0,
                            "CMD_COUNT": 0, "TILE_COUNT": 0}, reset_values
    counters = await acc.counters()
    assert counters == {"cycles": 0, "macs_issued": 0, "macs_dense": 0, "input_starved": 0, "output_stalled": 0,
                        "lane_busy": [0] * config.lanes}, counters
    assert int(dut.irq.value) == 0

    # SCRATCH keeps all 32 bits and honours byte strobes (cocotbext-axi sets WSTRB for a 1-byte write).
    await acc.write_reg(regs.SCRATCH, 0xDEAD_BEEF)
    assert await acc.read_reg(regs.SCRATCH) == 0xDEAD_BEEF
    await acc.regs.write(regs.SCRATCH + 2, b"\x5a")
    assert await acc.read_reg(regs.SCRATCH) == 0xDE5A_BEEF
    assert (await acc.regs.read(regs.SCRATCH + 1, 2)).data == b"\xbe\x5a"   # byte reads of a word
    # Read-only registers ignore writes (OKAY); unmapped words answer SLVERR.
    await acc.write_reg(regs.ID, 0)
    await acc.write_reg(regs.config_offset("lanes"), 0)
    assert await acc.read_reg(regs.ID) == 0x5354_4147
    assert await acc.read_reg(regs.config_offset("lanes")) == config.lanes
    last_counter = regs.counter_offset(len(regs.counter_names(config.lanes)) - 1, high=True)
    # The pruner's registers: PRUNE_TAU reads back; a zero seed is ignored (the LFSR would lock at
    # 0); a nonzero seed loads and reads back; PRUNE_SUM starts at 0.
    seed_mask = (1 << config.lfsr_width) - 1
    assert await acc.read_reg(regs.PRUNE_SEED) == config.lfsr_seed
    await acc.write_reg(regs.PRUNE_TAU, 5)
    assert await acc.read_reg(regs.PRUNE_TAU) == 5
    await acc.write_reg(regs.PRUNE_SEED, 0)
    assert await acc.read_reg(regs.PRUNE_SEED) == config.lfsr_seed, "a zero seed was taken"
    await acc.write_reg(regs.PRUNE_SEED, 0xA5A5_A5A5 & seed_mask)
    assert await acc.read_reg(regs.PRUNE_SEED) == 0xA5A5_A5A5 & seed_mask
    assert await acc.read_reg(regs.PRUNE_SUM) == 0
    # TOPK_THRESHOLD reads back its operand_bits bits.
    assert await acc.read_reg(regs.TOPK_THRESHOLD) == 0
    await acc.write_reg(regs.TOPK_THRESHOLD, 0xFFFF_FFFF)
    assert await acc.read_reg(regs.TOPK_THRESHOLD) == (1 << config.operand_bits) - 1
    await acc.write_reg(regs.TOPK_THRESHOLD, 0)
    # ReSprop's registers: the settings read back in their core input widths; P_DATA writes and
    # reads (sign-extended) step P_INDEX; RESPROP_NNZ starts at 0 and RESPROP_LOAD reads 0.
    for offset in regs.RESPROP_SETTINGS.values():
        assert await acc.read_reg(offset) == 0
    await acc.write_reg(regs.RESPROP_ROWS, 3)
    await acc.write_reg(regs.RESPROP_CTRL, 0xFFFF_FFFF)
    assert await acc.read_reg(regs.RESPROP_ROWS) == 3
    assert await acc.read_reg(regs.RESPROP_CTRL) == regs.RESPROP_CTRL_DENSE
    await acc.write_reg(regs.RESPROP_THR_MANT, 0xFFFF_FFFF)
    assert await acc.read_reg(regs.RESPROP_THR_MANT) == (1 << config.operand_bits) - 1
    await acc.write_reg(regs.RESPROP_THR_EXP, 0xFFFF_FFF9)                    # -7
    assert await acc.read_reg(regs.RESPROP_THR_EXP) == 0xFFFF_FFF9
    assert await acc.read_reg(regs.RESPROP_EXP_NEXT) == 0   # no load yet
    qmin, qmax = -(1 << (config.operand_bits - 1)), (1 << (config.operand_bits - 1)) - 1
    # Across a word boundary, inside the P bank (P_INDEX wraps at resprop_max_elems, a power of two).
    codes = [qmin, qmax, -1, 1, 0][:config.resprop_max_elems]
    first = min(2 * config.lanes + 1, config.resprop_max_elems - len(codes))
    addrs = [first + i for i in range(len(codes))]
    await acc.write_resprop_p(addrs, codes)
    assert await acc.read_reg(regs.RESPROP_P_INDEX) == (addrs[-1] + 1) % config.resprop_max_elems
    assert await acc.read_resprop_p(addrs) == codes
    assert await acc.read_reg(regs.RESPROP_P_INDEX) == (addrs[-1] + 1) % config.resprop_max_elems
    assert await acc.read_reg(regs.RESPROP_NNZ) == 0 and await acc.read_reg(regs.RESPROP_LOAD) == 0
    for offset in (regs.RESPROP_ROWS, regs.RESPROP_CTRL, regs.RESPROP_THR_MANT, regs.RESPROP_THR_EXP):
        await acc.write_reg(offset, 0)
    for offset in (0x030, 0x03C, regs.CONFIG_BASE + 4 * len(regs.CONFIG_FIELDS), regs.RESPROP_THR_MANT - 4,
                   regs.RESPROP_P_DATA + 4, last_counter + 4, 0xFFC):
        await _expect_error(acc, offset, write=False)
        await _expect_error(acc, offset, write=True)
    assert await acc.read_reg(regs.SCRATCH) == 0xDE5A_BEEF, "an erroring write changed SCRATCH"


@cocotb.test()
async def test_registers(dut):
    """Register map, reset values, byte strobes, error responses, padding flag and the interrupt cycle,
    the register checks once on a free bus and once with every AXI4-Lite channel paused at random."""
    config = current_design().config
    acc = AxiAccelerator(dut, config)
    readback = await acc.start()           # checks every configuration register against config
    record: dict[str, object] = {"config": readback}
    await _register_checks(acc, config)
    free_cycles = acc.cycle()
    # Again from reset with pauses on AW, W and AR (so a write's AW and W may come in different
    # cycles) and ready low at random on B and R: the same answers. The rest of the test keeps them.
    await acc.reset()
    acc.set_register_gaps(test_rng("registers"), 0.5)
    assert await acc.read_config() == readback, "configuration readback differs on a paused bus"
    await _register_checks(acc, config)
    paused_cycles = acc.cycle()
    # Both passes make the same accesses: if the paused one is not slower, the pauses never reached the bus.
    assert paused_cycles > free_cycles, f"paused pass took {paused_cycles} cycles, free pass {free_cycles}"
    record["register_check_cycles"] = [free_cycles, paused_cycles]

    # One raw DRAIN whose padding bits are set: PAD_ERROR rises, the tile still comes out with TLAST,
    # and the core's going idle afterwards sets DONE (the interrupt stays low: IRQ_EN is 0).
    widths = regs.stream_widths(config)
    drain = 1 | (1 << widths.cmd_bits)          # op = DRAIN, acc 0, raw, padding bit set
    watch = _EdgeWatch(acc, dut.irq)
    run = await acc.run_encoded([drain], [], 1)
    status = await acc.status()
    assert status == regs.STATUS_IDLE | regs.STATUS_DONE | regs.STATUS_PAD_ERROR, f"STATUS {status:#x}"
    assert watch.cycles == [] and int(dut.irq.value) == 0, "irq raised while IRQ_EN = 0"
    assert await acc.read_reg(regs.CMD_COUNT) == 1 and await acc.read_reg(regs.TILE_COUNT) == 1
    # Enabling the interrupt with DONE set raises irq (a level); W1C of DONE drops it; PAD_ERROR too.
    await acc.enable_irq()
    assert await acc.read_reg(regs.CTRL) == regs.CTRL_IRQ_EN
    assert int(dut.irq.value) == 1 and await acc.status() & regs.STATUS_IRQ
    await acc.write_reg(regs.STATUS, regs.STATUS_PAD_ERROR)       # clears only PAD_ERROR
    assert await acc.status() == regs.STATUS_IDLE | regs.STATUS_DONE | regs.STATUS_IRQ
    await acc.clear_done()
    assert int(dut.irq.value) == 0
    await ClockCycles(dut.clk, 20)
    assert await acc.status() == regs.STATUS_IDLE, "DONE set again without work"
    watch.stop()
    record.update(frames=run.frames, tile_end_cycles=run.tile_end_cycles, irq_rises=watch.cycles,
                  counters=run.counters)
    write_record("registers", record)


@cocotb.test()
async def test_programs(dut):
    """Every program of the vector file: bit-exact results, TLAST, counters, interrupt."""
    config = current_design().config
    cases = load_vectors(os.environ["STAG_VECTORS"])
    wrap = (1 << config.counter_bits) - 1
    acc = AxiAccelerator(dut, config)
    for index, case in enumerate(cases):
        rng = test_rng(case.name)
        if index == 0:
            await acc.start()
        else:
            await acc.reset()
        # A gapped case pauses the register port as often as its streams: every access of the
        # case (pruner and ReSprop setup, P writes and reads, STATUS polls, counters, DONE clear).
        acc.set_register_gaps(rng, max(case.idle, case.stall))
        irq_enabled = index % 2 == 0
        if irq_enabled:
            await acc.enable_irq()
        acc.set_gaps(rng, idle=case.idle, stall=case.stall)
        watch = _EdgeWatch(acc, dut.irq)
        drains = len(case.expected) // case.drain_beats
        prune = None if case.prune_tau is None else (case.prune_tau, case.prune_seed)
        resprop = None if case.resprop is None else (case.resprop, case.resprop_p_addrs, case.resprop_p)
        run = await acc.run_encoded(case.commands, case.data, drains, prune=prune,
                                    topk_threshold=case.topk_threshold, resprop=resprop)
        acc.set_gaps(None)
        log_speed(run, case.name)
        if os.environ.get("STAG_SPEED_FILE"):      # sim.axi_speed: wall-clock figures stay out of the records
            Path(os.environ["STAG_SPEED_FILE"]).write_text(json.dumps(
                {"cycles": run.cycles, "seconds": run.seconds, "cycles_per_second": run.cycles_per_second}))

        got = [beat for frame in run.frames for beat in frame]
        _check_beats(case.name, got, case.expected, case.drain_beats)
        if case.prune_sum is not None:
            assert run.prune_sum == case.prune_sum & 0xFFFF_FFFF, (
                f"{case.name}: PRUNE_SUM {run.prune_sum}, ref {case.prune_sum}")
        if case.resprop is not None:
            assert run.resprop_nnz == case.resprop_nnz & 0xFFFF_FFFF, (
                f"{case.name}: RESPROP_NNZ {run.resprop_nnz}, ref {case.resprop_nnz}")
            assert run.resprop_exp_next == case.resprop_exp_after, (
                f"{case.name}: RESPROP_EXP_NEXT {run.resprop_exp_next}, ref {case.resprop_exp_after}")
            assert run.resprop_p == case.resprop_p_next, (
                f"{case.name}: stored P {run.resprop_p}, ref {case.resprop_p_next}")
        ctr = run.counters
        issued_want = case.effectual_macs if config.sparse else case.dense_macs
        assert ctr["macs_issued"] == issued_want & wrap, (
            f"{case.name}: macs_issued {ctr['macs_issued']}, ref {issued_want}")
        assert ctr["macs_dense"] == case.dense_macs & wrap, (
            f"{case.name}: macs_dense {ctr['macs_dense']}, ref {case.dense_macs}")
        assert sum(ctr["lane_busy"]) & wrap == ctr["macs_issued"], f"{case.name}: lane_busy does not add up"
        assert await acc.read_reg(regs.CMD_COUNT) == len(case.commands)
        assert await acc.read_reg(regs.TILE_COUNT) == drains

        status = await acc.status()
        assert status & regs.STATUS_DONE, f"{case.name}: DONE not set after the run (STATUS {status:#x})"
        assert not status & regs.STATUS_PAD_ERROR
        if irq_enabled:
            assert int(dut.irq.value) == 1 and watch.cycles, f"{case.name}: irq low after the run with IRQ_EN = 1"
            if not case.idle:
                # Without gaps the command stream keeps the core busy to the end: one rise, after the
                # last result. (A gap in s_axis_cmd may let the core run dry and set DONE early;
                # docs/interface.md says so.)
                assert len(watch.cycles) == 1 and watch.cycles[0] > run.tile_end_cycles[-1], (
                    f"{case.name}: irq rose at cycles {watch.cycles}, last result at {run.tile_end_cycles[-1]}")
        else:
            assert watch.cycles == [] and int(dut.irq.value) == 0, f"{case.name}: irq raised with IRQ_EN = 0"
        await acc.clear_done()
        assert int(dut.irq.value) == 0 and not await acc.status() & regs.STATUS_DONE
        acc.set_register_gaps(None)
        watch.stop()
        write_record(case.name, {"values": got, "tile_end_cycles": run.tile_end_cycles, "counters": ctr,
                                 "prune_sum": run.prune_sum, "resprop_nnz": run.resprop_nnz,
                                 "resprop_exp_next": run.resprop_exp_next,
                                 "resprop_p": run.resprop_p,
                                 "cycles": run.cycles, "irq_rises": watch.cycles})
        cocotb.log.info("%s: %d result beats match ref; %d MACs issued of %d dense", case.name, len(got),
                        ctr["macs_issued"], ctr["macs_dense"])


@cocotb.test()
async def test_back_to_back(dut):
    """Two programs of the vector file streamed back to back, with no reset and no idle cycle on
    the input streams between them: both bit-exact, the counters the sums of the two."""
    config = current_design().config
    wrap = (1 << config.counter_bits) - 1
    # Programs that need no register setting (TOPK_THRESHOLD 0 is its reset value): the pruner's,
    # top-K's and ReSprop's hold for a whole program, so they could not change between two
    # programs on the streams.
    plain = [case for case in load_vectors(os.environ["STAG_VECTORS"])
             if case.prune_tau is None and not case.topk_threshold and case.resprop is None]
    assert len(plain) >= 2, f"{len(plain)} programs without register settings in the vector file, need 2"
    pair = plain[:2]
    drains = [len(case.expected) // case.drain_beats for case in pair]
    acc = AxiAccelerator(dut, config)
    await acc.start()
    # An input stream's TVALID falls only when its model runs out of beats: once, after the second
    # program's last beat, unless a cycle between the programs went idle.
    falls = {name: _EdgeWatch(acc, getattr(dut, f"s_axis_{name}_tvalid"), FallingEdge) for name in ("cmd", "data")}
    run = await acc.stream_programs([(case.commands, case.data, n) for case, n in zip(pair, drains, strict=True)])
    for watch in falls.values():
        watch.stop()
    for name, watch in falls.items():
        assert len(watch.cycles) == 1, f"s_axis_{name}_tvalid fell at cycles {watch.cycles}: idle between programs"

    got = [beat for frame in run.frames for beat in frame]
    split = len(pair[0].expected)
    for case, beats in zip(pair, (got[:split], got[split:]), strict=True):
        _check_beats(case.name, beats, case.expected, case.drain_beats)
    # Nothing resets the counters between programs: each is the sum over both.
    ctr = run.counters
    issued_want = sum(case.effectual_macs if config.sparse else case.dense_macs for case in pair)
    dense_want = sum(case.dense_macs for case in pair)
    assert ctr["macs_issued"] == issued_want & wrap, f"macs_issued {ctr['macs_issued']}, ref {issued_want}"
    assert ctr["macs_dense"] == dense_want & wrap, f"macs_dense {ctr['macs_dense']}, ref {dense_want}"
    assert sum(ctr["lane_busy"]) & wrap == ctr["macs_issued"], "lane_busy does not add up"
    assert await acc.read_reg(regs.CMD_COUNT) == sum(len(case.commands) for case in pair)
    assert await acc.read_reg(regs.TILE_COUNT) == sum(drains)
    status = await acc.status()
    assert status == regs.STATUS_IDLE | regs.STATUS_DONE, f"STATUS {status:#x} after both programs"
    write_record("back_to_back", {"programs": [case.name for case in pair], "values": got,
                                  "tile_end_cycles": run.tile_end_cycles, "counters": ctr, "cycles": run.cycles,
                                  "tvalid_falls": {name: watch.cycles for name, watch in falls.items()}})
    cocotb.log.info("back to back %s: %d result beats match ref; %d MACs issued of %d dense",
                    " + ".join(case.name for case in pair), len(got), ctr["macs_issued"], ctr["macs_dense"])
