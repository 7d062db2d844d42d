"""cocotb test of the vector core (``hw.vector_core``): programs from a vector file, against ``ref``.

``STAG_VECTORS`` names a JSON file written by :func:`sim.vector_cases.write_vector_cases`: per case
the command words, the data beats, the result beats ``ref`` expects, the top-K threshold, the
pruner's setting and expected sum (for a program that prunes) and the probabilities of input
idle cycles and output stalls. Each case runs from a fresh reset; every
``o_data`` beat is compared; the record (values and the cycle of every result beat) lets the
Icarus and Verilator runs be compared value for value and cycle for cycle.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from sim.env import reset_and_count, test_rng, write_record
from sim.stream import StreamSink, StreamSource


@cocotb.test()
async def test_programs(dut):
    """Every program of the vector file, bit-exact against ref."""
    spec = json.loads(open(os.environ["STAG_VECTORS"], encoding="utf-8").read())
    for index, case in enumerate(spec["cases"]):
        rng = test_rng(case["name"])
        dut.topk_threshold.value = case["topk_threshold"]   # registered: set before any command
        prune = case["prune"]
        dut.prune_load.value = 0          # the pruner's inputs are driven in every case (no X on Icarus)
        dut.prune_tau.value = 0 if prune is None else prune["tau"]
        dut.prune_seed.value = 1 if prune is None else prune["seed"]
        rs = case["resprop"]
        dut.resprop_load.value = 0
        dut.resprop_p_we.value = 0
        dut.resprop_p_addr.value = 0
        dut.resprop_p_wdata.value = 0
        for name in ("mant", "exp", "target", "rows", "cols", "row_words", "samples", "sample", "dense"):
            value = 0 if rs is None else rs["inputs"][name]
            getattr(dut, f"resprop_{name}").value = value & ((1 << len(getattr(dut, f"resprop_{name}"))) - 1)
        counter = await reset_and_count(dut, start_clock=index == 0)
        if rs is not None:
            # Begin the pass (its settings with resprop_load), then write its P, one code per cycle.
            dut.resprop_load.value = 1
            await RisingEdge(dut.clk)
            dut.resprop_load.value = 0
            dut.resprop_p_we.value = 1
            for addr, code in zip(rs["p_addresses"], rs["p"], strict=True):
                dut.resprop_p_addr.value = addr
                dut.resprop_p_wdata.value = code
                await RisingEdge(dut.clk)
            dut.resprop_p_we.value = 0
        if prune is not None:
            # Load the pruner (tau, seed), then two cycles before the first command.
            dut.prune_load.value = 1
            await RisingEdge(dut.clk)
            dut.prune_load.value = 0
            for _ in range(2):
                await RisingEdge(dut.clk)
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
        if rs is not None:
            width = len(dut.resprop_exp_next)
            exp_raw = int(dut.resprop_exp_next.value)
            nnz, exp_next = int(dut.resprop_nnz.value), exp_raw - (exp_raw >> (width - 1) << width)
            assert (nnz, exp_next) == (rs["nnz"], rs["exp_next"]), \
                f"{case['name']}: resprop nnz, exp_next {nnz}, {exp_next}; ref {rs['nnz']}, {rs['exp_next']}"
            # The next load swaps in the P the pass stored; read it back through the port.
            dut.resprop_load.value = 1
            await RisingEdge(dut.clk)
            dut.resprop_load.value = 0
            stored = []
            for addr in rs["p_addresses"]:
                dut.resprop_p_addr.value = addr
                await RisingEdge(dut.clk)
                await ReadOnly()
                stored.append(int(dut.resprop_p_rdata.value))
                await RisingEdge(dut.clk)
            assert stored == rs["p_after"], f"{case['name']}: stored P {stored}, ref {rs['p_after']}"
        if prune is not None:
            got_sum = int(dut.prune_sum.value)
            assert got_sum == prune["sum"], f"{case['name']}: prune_sum {got_sum}, ref {prune['sum']}"
        # Cycles count from the first command's transfer (cycle 0 of ref.vector_cycle_model).
        first = cmd_source.accepted_at[0] if cmd_source.accepted_at else 0
        write_record(case["name"], {"values": got, "result_cycles": [r.cycle - first for r in received],
                                    "prune_sum": None if prune is None else int(dut.prune_sum.value),
                                    "resprop_stored_p": None if rs is None else stored})
        cocotb.log.info("%s: %d result beats match ref; last at cycle %d", case["name"], len(got),
                        received[-1].cycle if received else 0)
