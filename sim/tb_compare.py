"""cocotb testbench behind ``stag compare``: replay layer programs on the AXI top level and record
what came out, for the comparison with ``ref`` in :mod:`sim.compare`.

``STAG_VECTORS`` names a :mod:`sim.core_vectors` file, one case per (layer, pass). Each case runs
from a fresh reset with no input gaps and no result backpressure (these runs measure cycles),
through cocotbext-axi (:class:`sim.axi_driver.AxiAccelerator`). The testbench does not judge the
values: it records every result beat, the cycle of each tile's first and last beat, the cycle of the
first command's handshake and the performance counters, and :mod:`sim.compare` compares them with ``ref``
and locates the first mismatch. Because the records also hold every cycle number, runs on Icarus
and Verilator are compared record for record.

Optional: ``STAG_PROGRESS_FILE`` gets one JSON line per finished case (name, cycles, wall
seconds) so the caller can show progress while the simulator runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.triggers import RisingEdge, SimTimeoutError, with_timeout

from sim.axi_driver import CLOCK_PERIOD_NS, AxiAccelerator
from sim.core_vectors import load_vectors
from sim.design import current_design
from sim.env import write_record


async def _first_command_cycle(acc: AxiAccelerator) -> int:
    """The cycle of the first ``s_axis_cmd`` handshake (a few cycles of per-edge Python, once)."""
    dut = acc.dut
    while True:
        await RisingEdge(dut.clk)
        if int(dut.s_axis_cmd_tvalid.value) and int(dut.s_axis_cmd_tready.value):
            return acc.cycle()


@cocotb.test()
async def test_replay(dut):
    """Every program of the vector file, recorded beat for beat with cycle numbers."""
    config = current_design().config
    cases = load_vectors(os.environ["STAG_VECTORS"])
    progress = os.environ.get("STAG_PROGRESS_FILE")
    acc = AxiAccelerator(dut, config)
    await acc.start()
    for case in cases:
        # Reset before every case, the first included, so a case's cycle numbers do not depend on
        # what ran before it (a rerun of one case for its waveform sees the same cycles).
        await acc.reset()
        started = time.perf_counter()
        drains = len(case.expected) // case.drain_beats
        first_command = cocotb.start_soon(_first_command_cycle(acc))
        # A watchdog, so that a hung design fails the case instead of hanging the run: far more
        # cycles than any program needs (every MAC on one lane, every beat twice over).
        limit = 4 * (case.dense_macs + len(case.commands) + len(case.data) + len(case.expected)) + 10_000
        try:
            prune = None if case.prune_tau is None else (case.prune_tau, case.prune_seed)
            run = await with_timeout(acc.run_encoded(case.commands, case.data, drains, prune=prune),
                                     limit * CLOCK_PERIOD_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"{case.name}: no end after {limit} cycles (the design hangs)") from None
        record = {
            "values": [beat for frame in run.frames for beat in frame],
            "first_command_cycle": await first_command,
            "tile_first_cycles": run.tile_start_cycles,
            "tile_end_cycles": run.tile_end_cycles,
            "counters": run.counters,
            "prune_sum": run.prune_sum,
        }
        write_record(case.name, record)
        seconds = time.perf_counter() - started
        if progress:
            with Path(progress).open("a", encoding="utf-8") as f:
                f.write(json.dumps({"name": case.name, "cycles": run.cycles, "seconds": seconds}) + "\n")
        cocotb.log.info("%s: %d cycles in %.2f s", case.name, run.cycles, seconds)
