"""cocotb test of the vector core (``hw.vector_core``): programs from a vector file, against ``ref``.

``STAG_VECTORS`` names a JSON file written by :func:`sim.vector_cases.write_vector_cases`: per case
the command words, the data beats, the result beats ``ref`` expects, the top-K threshold and the
probabilities of input idle cycles and output stalls. Each case runs from a fresh reset; every
``o_data`` beat is compared; the record (values and the cycle of every result beat) lets the
Icarus and Verilator runs be compared value for value and cycle for cycle.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.triggers import RisingEdge

from sim.env import reset_and_count, test_rng, write_record
from sim.stream import StreamSink, StreamSource


@cocotb.test()
async def test_programs(dut):
    """Every program of the vector file, bit-exact against ref."""
    spec = json.loads(open(os.environ["STAG_VECTORS"], encoding="utf-8").read())
    for index, case in enumerate(spec["cases"]):
        rng = test_rng(case["name"])
        dut.topk_threshold.value = case["topk_threshold"]   # registered: set before any command
        counter = await reset_and_count(dut, start_clock=index == 0)
        cmd_source = StreamSource(dut, "i_cmd", spec["cmd_bits"], clock=dut.clk, counter=counter, rng=rng,
                                  idle_probability=case["idle"])
        data_source = StreamSource(dut, "i_data", spec["bus_bits"], clock=dut.clk, counter=counter, rng=rng,
                                   idle_probability=case["idle"])
        sink = StreamSink(dut, "o_data", spec["result_bits"], clock=dut.clk, counter=counter, rng=rng,
                          stall_probability=case["stall"])
        cocotb.start_soon(cmd_source.send(case["commands"]))
        cocotb.start_soon(data_source.send(case["data"]))
        received = await sink.receive(len(case["expected"]))
        while not int(dut.idle.value):
            await RisingEdge(dut.clk)
        got = [int(r.payload) for r in received]
        for position, (g, want) in enumerate(zip(got, case["expected"], strict=True)):
            if g != want:
                drain, row = divmod(position, spec["drain_beats"])
                raise AssertionError(f"{case['name']}: drain {drain} row {row}: RTL {g:#x}, ref {want:#x}")
        # Cycles count from the first command's transfer (cycle 0 of ref.vector_cycle_model).
        first = cmd_source.accepted_at[0] if cmd_source.accepted_at else 0
        write_record(case["name"], {"values": got, "result_cycles": [r.cycle - first for r in received]})
        cocotb.log.info("%s: %d result beats match ref; last at cycle %d", case["name"], len(got),
                        received[-1].cycle if received else 0)
