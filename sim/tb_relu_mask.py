"""cocotb tests of the generated ReLU + mask emit unit against ``ref.relu_mask_codes``.

Expected beats come only from ``ref``. Each test records the beats and the cycle of every transfer
so the Icarus and Verilator runs can be compared exactly. ``STAG_RELU_MASK_TRACE`` names a JSON
file of real digits-trace vectors (``sim.relu_mask_vectors``); without it the trace test is skipped.
"""

from __future__ import annotations

import os

import cocotb
from amaranth import unsigned
from cocotb.triggers import RisingEdge

from ref.relu_mask_codes import emit_stream, pack_codes, unpack_bitmap
from sim.design import current_design
from sim.env import reset_and_count, test_rng, write_record
from sim.relu_mask_vectors import load_relu_vectors, random_code_vectors
from sim.stream import StreamSink, StreamSource

TRACE_ENV = "STAG_RELU_MASK_TRACE"


async def emit_and_check(dut, test_name: str, vectors: list[list[int]], *, idle: float, stall: float) -> dict:
    """Stream ``vectors`` through the unit; compare both outputs with ``ref``; record and return."""
    config = current_design().config
    ob, be = config.operand_bits, config.bus_elems
    rng = test_rng(test_name)
    counter = await reset_and_count(dut)
    beat = unsigned(config.bus_bits)
    source = StreamSource(dut, "i_stream", beat, clock=dut.clk, counter=counter, rng=rng, idle_probability=idle)
    act_sink = StreamSink(dut, "o_act", beat, clock=dut.clk, counter=counter, rng=rng, stall_probability=stall)
    # The mask port drops the bits past a vector shorter than one beat (hw.relu_mask).
    mask_beat = unsigned(min(config.bus_bits, config.tile_k))
    mask_sink = StreamSink(dut, "o_mask", mask_beat, clock=dut.clk, counter=counter, rng=rng,
                           stall_probability=stall)
    act, mask = emit_stream(vectors, bus_elems=be, operand_bits=ob)
    cocotb.start_soon(source.send(b for v in vectors for b in pack_codes(v, be, ob)))
    mask_task = cocotb.start_soon(mask_sink.receive(len(mask)))
    got_act = await act_sink.receive(len(act))
    got_mask = await mask_task
    await RisingEdge(dut.clk)
    for name, got, want in (("o_act", got_act, act), ("o_mask", got_mask, mask)):
        values = [r.payload for r in got]
        for index, (g, w) in enumerate(zip(values, want, strict=True)):
            assert g == w, f"{test_name}: {name} beat {index}: RTL {g:#x}, ref {w:#x}"
    record = {
        "act": [r.payload for r in got_act],
        "act_cycles": [r.cycle for r in got_act],
        "mask": [r.payload for r in got_mask],
        "mask_cycles": [r.cycle for r in got_mask],
        "accepted_cycles": source.accepted_at,
    }
    write_record(test_name, record)
    return record


@cocotb.test()
async def test_random_no_stalls(dut):
    """Edge-case and random vectors, always valid and ready: one beat per cycle, latency 1."""
    config = current_design().config
    vectors = random_code_vectors(test_rng("stimulus_no_stalls"), config.operand_bits, config.tile_k, 30)
    record = await emit_and_check(dut, "random_no_stalls", vectors, idle=0.0, stall=0.0)
    accepted = record["accepted_cycles"]
    assert accepted == list(range(accepted[0], accepted[0] + len(accepted))), "input was not taken every cycle"
    assert record["act_cycles"] == [c + 1 for c in accepted]


@cocotb.test()
async def test_random_with_stalls(dut):
    """The same kind of stimulus under random input starvation and output backpressure."""
    config = current_design().config
    vectors = random_code_vectors(test_rng("stimulus_with_stalls"), config.operand_bits, config.tile_k, 30)
    await emit_and_check(dut, "random_with_stalls", vectors, idle=0.3, stall=0.4)


@cocotb.test(skip=TRACE_ENV not in os.environ)
async def test_digits_trace(dut):
    """Pre-activations of a real digits trace; the mask also matches the recorded policy mask
    wherever the code did not round to 0."""
    config = current_design().config
    vec = load_relu_vectors(os.environ[TRACE_ENV])
    assert (vec["operand_bits"], vec["vector_elems"]) == (config.operand_bits, config.tile_k)
    record = await emit_and_check(dut, "digits_trace", vec["pre"], idle=0.2, stall=0.3)
    per_vector = -(-config.tile_k // config.bus_bits)
    for v, (z, keep) in enumerate(zip(vec["pre"], vec["recorded_mask"], strict=True)):
        got = unpack_bitmap(record["mask"][v * per_vector:(v + 1) * per_vector], config.tile_k, config.bus_bits)
        assert got == [k and c != 0 for k, c in zip(keep, z, strict=True)], f"vector {v}"
