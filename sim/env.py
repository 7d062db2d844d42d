"""Common testbench set-up for cocotb tests of generated designs: clock, reset, seed, records.

Environment variables set by :mod:`sim.runner`:

``STAG_DESIGN_DIR``
    the generated design under test (see :mod:`sim.design`);
``STAG_SEED``
    the seed of every random choice in the test (stimulus and stalls), printed at the start;
``STAG_RECORD_DIR``
    where each test writes a JSON record of what it observed (values and cycle numbers), so that
    runs on Icarus and Verilator can be compared value for value and cycle for cycle.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from sim.stream import ClockCounter

__all__ = ["CLOCK_PERIOD_NS", "reset_and_count", "test_rng", "write_record"]

#: Simulated clock period. Only cycle counts matter; the value is arbitrary but fixed.
CLOCK_PERIOD_NS = 10


def test_rng(test_name: str) -> random.Random:
    """A random generator for one test, seeded from ``STAG_SEED`` and the test's name."""
    seed = int(os.environ.get("STAG_SEED", "1"))
    cocotb.log.info("%s: STAG_SEED=%d (rerun with this seed to reproduce)", test_name, seed)
    return random.Random(f"{seed}:{test_name}")


async def reset_and_count(dut: Any, *, start_clock: bool = True) -> ClockCounter:
    """Start the clock (unless it runs already), hold the synchronous reset for two edges, then
    count edges from zero."""
    if start_clock:
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    counter = ClockCounter(dut.clk)
    cocotb.start_soon(counter.run())
    return counter


def write_record(test_name: str, record: dict[str, Any]) -> None:
    """Save what ``test_name`` observed, for the cross-simulator comparison (if requested)."""
    directory = os.environ.get("STAG_RECORD_DIR")
    if directory:
        path = Path(directory) / f"{test_name}.json"
        path.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
