"""cocotb tests of the generated mask-apply unit against ``ref.relu_mask_codes``.

Expected beats come only from ``ref``. Each test records the beats and the cycle of every transfer
so the Icarus and Verilator runs can be compared exactly. ``STAG_RELU_MASK_TRACE`` names a JSON
file of real digits-trace vectors (``sim.relu_mask_vectors``); without it the trace test is skipped.
"""

from __future__ import annotations

import os

import cocotb
from amaranth import unsigned
from cocotb.triggers import RisingEdge

from ref.relu_mask_codes import apply_stream, bitmap_beats, pack_codes, unpack_codes
from sim.design import current_design
from sim.env import reset_and_count, test_rng, write_record
from sim.relu_mask_vectors import load_relu_vectors, random_code_vectors, random_masks
from sim.stream import StreamSink, StreamSource

TRACE_ENV = "STAG_RELU_MASK_TRACE"


async def apply_and_check(dut, test_name: str, vectors: list[list[int]], masks: list[list[bool]], *,
                          idle: float, stall: float) -> dict:
    """Stream dX ``vectors`` and their ``masks``; compare the output with ``ref``; record and return."""
    config = current_design().config
    ob, be = config.operand_bits, config.bus_elems
    rng = test_rng(test_name)
    counter = await reset_and_count(dut)
    beat = unsigned(config.bus_bits)
    data = StreamSource(dut, "i_data", beat, clock=dut.clk, counter=counter, rng=rng, idle_probability=idle)
    # The mask port drops the bits past a vector shorter than one beat (hw.relu_mask).
    mask_beat = unsigned(min(config.bus_bits, config.tile_k))
    mask = StreamSource(dut, "i_mask", mask_beat, clock=dut.clk, counter=counter, rng=rng, idle_probability=idle)
    sink = StreamSink(dut, "o_data", beat, clock=dut.clk, counter=counter, rng=rng, stall_probability=stall)
    expected = apply_stream(vectors, masks, bus_elems=be, operand_bits=ob)
    cocotb.start_soon(data.send(b for v in vectors for b in pack_codes(v, be, ob)))
    cocotb.start_soon(mask.send(b for k in masks for b in bitmap_beats(k, config.bus_bits)))
    got = await sink.receive(len(expected))
    await RisingEdge(dut.clk)
    values = [r.payload for r in got]
    for index, (g, w) in enumerate(zip(values, expected, strict=True)):
        assert g == w, f"{test_name}: o_data beat {index}: RTL {g:#x}, ref {w:#x}"
    record = {
        "data": values,
        "data_cycles": [r.cycle for r in got],
        "accepted_data_cycles": data.accepted_at,
        "accepted_mask_cycles": mask.accepted_at,
    }
    write_record(test_name, record)
    return record


def _stimulus(test_name: str) -> tuple[list[list[int]], list[list[bool]]]:
    config = current_design().config
    rng = test_rng(test_name)
    vectors = random_code_vectors(rng, config.operand_bits, config.tile_k, 30)
    return vectors, random_masks(rng, config.tile_k, 30)


@cocotb.test()
async def test_random_no_stalls(dut):
    """Edge-case vectors and masks, always valid and ready: one beat per cycle after the first
    mask beat, latency 1."""
    vectors, masks = _stimulus("stimulus_no_stalls")
    record = await apply_and_check(dut, "random_no_stalls", vectors, masks, idle=0.0, stall=0.0)
    accepted = record["accepted_data_cycles"]
    assert accepted[0] == record["accepted_mask_cycles"][0] + 1
    assert accepted == list(range(accepted[0], accepted[0] + len(accepted))), "a bubble between data beats"
    assert record["data_cycles"] == [c + 1 for c in accepted]


@cocotb.test()
async def test_random_with_stalls(dut):
    """The same kind of stimulus under random starvation of both inputs and output backpressure."""
    vectors, masks = _stimulus("stimulus_with_stalls")
    await apply_and_check(dut, "random_with_stalls", vectors, masks, idle=0.3, stall=0.4)


@cocotb.test(skip=TRACE_ENV not in os.environ)
async def test_digits_trace(dut):
    """Dense dX of a real digits trace masked with the recorded forward mask: exactly 0 where the
    mask is 0, and within one code of the recorded (ReLU-backpropagated) gradient everywhere."""
    config = current_design().config
    vec = load_relu_vectors(os.environ[TRACE_ENV])
    assert (vec["operand_bits"], vec["vector_elems"]) == (config.operand_bits, config.tile_k)
    record = await apply_and_check(dut, "digits_trace", vec["dx"], vec["recorded_mask"], idle=0.2, stall=0.3)
    dz = unpack_codes(record["data"], config.bus_elems, config.operand_bits)
    recorded = [c for v in vec["dy_prev"] for c in v]
    keep = [k for m in vec["recorded_mask"] for k in m]
    assert all(d == 0 and r == 0 for d, r, k in zip(dz, recorded, keep, strict=True) if not k)
    assert max(abs(d - r) for d, r in zip(dz, recorded, strict=True)) <= 1
