"""cocotb test of the generated sparse core: programs from a vector file, checked against ``ref``.

``STAG_VECTORS`` names a file written by :mod:`sim.core_vectors` (expected values come only from
``ref``). Each case is run from a fresh reset with its own random input starvation and output
backpressure; every ``o_data`` beat is compared, then the MAC counters against ``ref``'s counts of
dense and effectual MACs. The record of each case (values, cycle of every result beat, counters)
lets the Icarus and Verilator runs be compared value for value and cycle for cycle.
"""

from __future__ import annotations

import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from hw.core import counters_layout
from hw.layouts import core_command_layout_for
from sim.core_vectors import load_vectors
from sim.design import current_design
from sim.env import reset_and_count, test_rng, write_record
from sim.stream import StreamSink, StreamSource

COUNTERS = ("cycles", "macs_issued", "macs_dense", "input_starved", "output_stalled")
RESPROP_INPUTS = ("mant", "exp", "target", "rows", "cols", "row_words", "samples", "sample", "dense")


def _signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) & 1 else v


async def _pulse(dut, signal) -> None:
    """Hold ``signal`` high for one clock edge."""
    signal.value = 1
    await RisingEdge(dut.clk)
    signal.value = 0


def _counters(dut, config) -> dict[str, int | list[int]]:
    """Decode the flattened ``counters`` port through ``hw.core.counters_layout`` (no hand offsets)."""
    view = counters_layout(config.counter_bits, config.lanes).from_bits(int(dut.counters.value))
    out: dict[str, int | list[int]] = {name: int(getattr(view, name)) for name in COUNTERS}
    out["lane_busy"] = [int(view.lane_busy[j]) for j in range(config.lanes)]
    return out


@cocotb.test()
async def test_programs(dut):
    """Every program of the vector file, bit-exact, with the MAC counters checked."""
    config = current_design().config
    cases = load_vectors(os.environ["STAG_VECTORS"])
    wrap = (1 << config.counter_bits) - 1
    for index, case in enumerate(cases):
        rng = test_rng(case.name)
        dut.prune_load.value = 0        # the pruner's inputs are driven in every case (no X in Icarus)
        dut.prune_tau.value = 0
        dut.prune_seed.value = 1
        dut.topk_threshold.value = case.topk_threshold   # registered: set before any command
        for name in RESPROP_INPUTS:   # as unsigned bits of the port (resprop_exp is signed)
            port = getattr(dut, f"resprop_{name}")
            port.value = 0 if case.resprop is None else case.resprop[name] & ((1 << len(port)) - 1)
        dut.resprop_load.value = 0
        dut.resprop_p_we.value = 0
        dut.resprop_p_addr.value = 0
        dut.resprop_p_wdata.value = 0
        counter = await reset_and_count(dut, start_clock=index == 0)
        # Commands go in as raw bits (already packed by sim.core_program).
        cmd_source = StreamSource(dut, "i_cmd", core_command_layout_for(config).size, clock=dut.clk,
                                  counter=counter, rng=rng, idle_probability=case.idle)
        data_source = StreamSource(dut, "i_data", config.bus_bits, clock=dut.clk, counter=counter, rng=rng,
                                   idle_probability=case.idle)
        sink = StreamSink(dut, "o_data", config.result_bits, clock=dut.clk, counter=counter,
                          rng=rng, stall_probability=case.stall)
        if case.resprop is not None:
            # Begin the ReSprop pass, then write its P into the read bank through the host port
            # (the sources above hold valid low meanwhile).
            await _pulse(dut, dut.resprop_load)
            dut.resprop_p_we.value = 1
            for addr, code in zip(case.resprop_p_addrs, case.resprop_p, strict=True):
                dut.resprop_p_addr.value = addr
                dut.resprop_p_wdata.value = code & ((1 << config.operand_bits) - 1)
                await RisingEdge(dut.clk)
            dut.resprop_p_we.value = 0
        if case.prune_tau is not None:
            # Load the result-path pruner: tau, seed, then two cycles before the first command.
            dut.prune_tau.value = case.prune_tau
            dut.prune_seed.value = case.prune_seed
            dut.prune_load.value = 1
            await RisingEdge(dut.clk)
            dut.prune_load.value = 0
            await RisingEdge(dut.clk)
            await RisingEdge(dut.clk)
        cocotb.start_soon(cmd_source.send(case.commands))
        cocotb.start_soon(data_source.send(case.data))
        received = await sink.receive(len(case.expected))
        while not int(dut.idle.value):
            await RisingEdge(dut.clk)
        await RisingEdge(dut.clk)
        got = [r.payload for r in received]     # values and their ReLU mask bits
        for position, (g, want) in enumerate(zip(got, case.expected, strict=True)):
            if g != want:
                drain, beat = divmod(position, case.drain_beats)
                row = beat * config.lanes // config.tile_n
                raise AssertionError(f"{case.name}: drain {drain} beat {beat} (row {row}): RTL {g:#x}, ref {want:#x}")
        counters = _counters(dut, config)
        if case.prune_sum is not None:
            got_sum = int(dut.prune_sum.value)
            assert got_sum == case.prune_sum, f"{case.name}: prune_sum {got_sum}, ref {case.prune_sum}"
        resprop_record = {}
        if case.resprop is not None:
            got_nnz = int(dut.resprop_nnz.value)
            assert got_nnz == case.resprop_nnz, f"{case.name}: resprop_nnz {got_nnz}, ref {case.resprop_nnz}"
            got_exp = _signed(int(dut.resprop_exp_next.value), len(dut.resprop_exp_next))
            assert got_exp == case.resprop_exp_after, f"{case.name}: exponent {got_exp}, ref {case.resprop_exp_after}"
            # The next load swaps in the P this pass stored; read it back through the host port.
            await _pulse(dut, dut.resprop_load)
            p_next = []
            for addr in case.resprop_p_addrs:
                dut.resprop_p_addr.value = addr
                await RisingEdge(dut.clk)
                await ReadOnly()
                p_next.append(_signed(int(dut.resprop_p_rdata.value), config.operand_bits))
                await RisingEdge(dut.clk)
            assert p_next == case.resprop_p_next, f"{case.name}: stored P {p_next}, ref {case.resprop_p_next}"
            resprop_record = {"resprop_nnz": got_nnz, "resprop_exp_next": got_exp, "resprop_p_next": p_next}
        issued_want = case.effectual_macs if config.sparse else case.dense_macs
        assert counters["macs_issued"] == issued_want & wrap, (
            f"{case.name}: macs_issued {counters['macs_issued']}, ref {issued_want}")
        assert counters["macs_dense"] == case.dense_macs & wrap, (
            f"{case.name}: macs_dense {counters['macs_dense']}, ref {case.dense_macs}")
        assert sum(counters["lane_busy"]) == counters["macs_issued"], f"{case.name}: lane_busy does not add up"
        write_record(case.name, {
            "values": got,
            "result_cycles": [r.cycle for r in received],
            "counters": counters,
            **resprop_record,
        })
        cocotb.log.info("%s: %d result beats match ref; %d cycles, %d MACs issued of %d dense",
                        case.name, len(got), received[-1].cycle if received else 0,
                        counters["macs_issued"], counters["macs_dense"])
