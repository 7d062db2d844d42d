"""cocotb tests of the generated PE lane against its bit-exact model ``ref.pe_lane``.

Expected values come only from ``ref``. Every test records the values and the edge index of each
transfer (``sim.env.write_record``) so the Icarus and Verilator runs can be compared exactly.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import RisingEdge

from hw.layouts import mac_request_layout, mac_result_layout
from hw.pe_lane import PELane
from ref.pe_lane import MacRequest, run_pe_lane
from sim.design import current_design
from sim.env import reset_and_count, test_rng, write_record
from sim.stream import StreamSink, StreamSource


def random_requests(rng: random.Random, operand_bits: int, count: int, max_length: int) -> list[MacRequest]:
    """Random dot products of 1..max_length terms, ``count`` requests in all, ending on ``last``.

    Each dot product draws its own zero probability (0 to 0.9) so runs mix dense and sparse
    stretches; operands include the extremes ``-2**(b-1)`` and ``2**(b-1) - 1`` often.
    """
    low, high = -(1 << (operand_bits - 1)), (1 << (operand_bits - 1)) - 1

    def operand(zero_probability: float) -> int:
        if rng.random() < zero_probability:
            return 0
        return rng.choice((low, high)) if rng.random() < 0.2 else rng.randint(low, high)

    requests: list[MacRequest] = []
    while len(requests) < count:
        length = min(rng.randint(1, max_length), count - len(requests))
        zero_probability = rng.choice((0.0, 0.1, 0.5, 0.9))
        for i in range(length):
            requests.append(MacRequest(
                a=operand(zero_probability), b=operand(zero_probability),
                first=(i == 0), last=(i == length - 1),
            ))
    return requests


async def run_and_check(dut, test_name: str, requests: list[MacRequest], *,
                        idle: float, stall: float) -> dict:
    """Drive ``requests`` with the given stall rates; compare results and counters with ``ref``.

    Returns (and records) what was observed: values, transfer cycles, counters.
    """
    config = current_design().config
    rng = test_rng(test_name)
    counter = await reset_and_count(dut)
    source = StreamSource(dut, "i_stream", mac_request_layout(config.operand_bits), clock=dut.clk,
                          counter=counter, rng=rng, idle_probability=idle)
    sink = StreamSink(dut, "o_stream", mac_result_layout(config.acc_bits), clock=dut.clk,
                      counter=counter, rng=rng, stall_probability=stall)
    expected = run_pe_lane(requests, operand_bits=config.operand_bits, acc_bits=config.acc_bits,
                           counter_bits=config.counter_bits)
    cocotb.start_soon(source.send(vars(r) for r in requests))
    received = await sink.receive(len(expected.results))
    await RisingEdge(dut.clk)

    values = [r.payload.acc for r in received]
    for index, (got, want) in enumerate(zip(values, expected.results, strict=True)):
        assert got == want, f"{test_name}: result {index}: RTL {got}, ref {want}"
    issued, skipped = int(dut.macs_issued.value), int(dut.macs_skipped.value)
    assert (issued, skipped) == (expected.macs_issued, expected.macs_skipped), (
        f"{test_name}: counters RTL issued={issued} skipped={skipped}, "
        f"ref issued={expected.macs_issued} skipped={expected.macs_skipped}"
    )
    record = {
        "values": values,
        "result_cycles": [r.cycle for r in received],
        "accepted_cycles": source.accepted_at,
        "macs_issued": issued,
        "macs_skipped": skipped,
    }
    write_record(test_name, record)
    return record


@cocotb.test()
async def test_random_no_stalls(dut):
    """Random sparse dot products, source always valid and sink always ready."""
    config = current_design().config
    requests = random_requests(test_rng("stimulus_no_stalls"), config.operand_bits, 400, 24)
    await run_and_check(dut, "random_no_stalls", requests, idle=0.0, stall=0.0)


@cocotb.test()
async def test_random_with_stalls(dut):
    """The same kind of stimulus under random input starvation and output backpressure."""
    config = current_design().config
    requests = random_requests(test_rng("stimulus_with_stalls"), config.operand_bits, 400, 24)
    await run_and_check(dut, "random_with_stalls", requests, idle=0.3, stall=0.4)


@cocotb.test()
async def test_back_to_back_single_products(dut):
    """Every request is a one-term dot product: one result per cycle, fixed latency."""
    config = current_design().config
    rng = test_rng("stimulus_single")
    high = (1 << (config.operand_bits - 1)) - 1
    requests = [MacRequest(a=rng.randint(-high, high), b=rng.randint(-high, high), first=True, last=True)
                for _ in range(64)]
    await run_and_check(dut, "back_to_back_single_products", requests, idle=0.0, stall=0.0)


@cocotb.test()
async def test_latency_and_throughput(dut):
    """Without stalls a request is taken every cycle and a result leaves LATENCY edges later."""
    config = current_design().config
    requests = random_requests(test_rng("stimulus_timing"), config.operand_bits, 120, 6)
    record = await run_and_check(dut, "latency_and_throughput", requests, idle=0.0, stall=0.0)
    accepted = record["accepted_cycles"]
    assert accepted == list(range(accepted[0], accepted[0] + len(accepted))), "input was not taken every cycle"
    last_accepts = [accepted[i] for i, r in enumerate(requests) if r.last]
    latencies = {out - inp for out, inp in zip(record["result_cycles"], last_accepts, strict=True)}
    assert latencies == {PELane.LATENCY}, f"latencies {sorted(latencies)}, documented {PELane.LATENCY}"


@cocotb.test()
async def test_long_extreme_dot_product(dut):
    """A long dot product of the largest product, (-2**(b-1))**2.

    With more terms than ``max_reduction`` the sum leaves the accumulator's range and must wrap
    modulo ``2**acc_bits`` exactly as ``ref`` does (the tiny preset's 14-bit accumulator wraps
    several times; wide presets are capped at 5000 terms and check a long exact sum).
    """
    config = current_design().config
    low = -(1 << (config.operand_bits - 1))
    # (-2**(b-1))**2 is the largest product; enough of them overflow even the guard bits.
    length = min(config.max_reduction * 2 + 3, 5000)
    requests = [MacRequest(a=low, b=low, first=(i == 0), last=(i == length - 1)) for i in range(length)]
    await run_and_check(dut, "long_extreme_dot_product", requests, idle=0.0, stall=0.0)
