# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the PE lane against ``ref.pe_lane``, with and without random stalls."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hw.pe_lane import PELane
from ref.pe_lane import MacRequest, run_pe_lane

SEEDS = (11, 12, 13)


def random_requests(rng: random.Random, bits: int, count: int) -> list[MacRequest]:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    requests = []
    while len(requests) < count:
        length = rng.randint(1, 10)
        zero_probability = rng.choice((0.0, 0.5, 0.9))
        for i in range(length):
            a = 0 if rng.random() < zero_probability else rng.choice((low, high, rng.randint(low, high)))
            b = 0 if rng.random() < zero_probability else rng.choice((low, high, rng.randint(low, high)))
            requests.append(MacRequest(a, b, first=i == 0, last=i == length - 1))
    requests[-1] = MacRequest(requests[-1].a, requests[-1].b, requests[-1].first, True)
    return requests


def simulate(lane: PELane, requests: list[MacRequest], rng: random.Random, *, idle: float, stall: float):
    """Run ``requests`` through ``lane``; returns (results, issued, skipped, result edge indices)."""
    results: list[int] = []
    result_edges: list[int] = []
    expected_count = sum(r.last for r in requests)
    counters: dict[str, int] = {}

    async def producer(ctx):
        for request in requests:
            while rng.random() < idle:
                ctx.set(lane.i_stream.valid, 0)
                await ctx.tick()
            ctx.set(lane.i_stream.payload, vars(request))
            ctx.set(lane.i_stream.valid, 1)
            await ctx.tick().until(lane.i_stream.ready)
        ctx.set(lane.i_stream.valid, 0)

    async def consumer(ctx):
        edge = 0
        while len(results) < expected_count:
            ready = rng.random() >= stall
            ctx.set(lane.o_stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(lane.o_stream.valid, lane.o_stream.payload)
            edge += 1
            if valid and ready:
                results.append(payload.acc)
                result_edges.append(edge)
        await ctx.tick()
        counters["issued"] = ctx.get(lane.macs_issued)
        counters["skipped"] = ctx.get(lane.macs_skipped)

    sim = Simulator(lane)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return results, counters["issued"], counters["skipped"], result_edges


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.4)], ids=["no_stalls", "random_stalls"])
@pytest.mark.parametrize("bits,acc_bits", [(4, 14), (8, 32), (3, 6)], ids=["int4", "int8", "int3_wrapping"])
def test_lane_matches_ref(seed, stalls, bits, acc_bits):
    print(f"seed={seed}")
    rng = random.Random(seed)
    requests = random_requests(rng, bits, 300)
    lane = PELane(operand_bits=bits, acc_bits=acc_bits, counter_bits=8)  # 8-bit counters wrap at 256
    results, issued, skipped, _ = simulate(lane, requests, rng, idle=stalls[0], stall=stalls[1])
    expected = run_pe_lane(requests, operand_bits=bits, acc_bits=acc_bits, counter_bits=8)
    assert results == expected.results, f"seed={seed}"
    assert (issued, skipped) == (expected.macs_issued, expected.macs_skipped), f"seed={seed}"


def test_zero_operand_is_skipped_and_counted():
    lane = PELane(operand_bits=8, acc_bits=20, counter_bits=16)
    requests = [MacRequest(3, 4, first=True), MacRequest(0, 9), MacRequest(-7, 0), MacRequest(-2, 5, last=True)]
    results, issued, skipped, _ = simulate(lane, requests, random.Random(0), idle=0.0, stall=0.0)
    assert results == [3 * 4 + -2 * 5]
    assert (issued, skipped) == (2, 2)


def test_first_restarts_and_last_emits_each_dot_product():
    lane = PELane(operand_bits=8, acc_bits=20, counter_bits=16)
    requests = [MacRequest(2, 3, first=True), MacRequest(4, 5, last=True),
                MacRequest(-1, 1, first=True, last=True), MacRequest(7, 7, first=True), MacRequest(1, 1, last=True)]
    results, *_ = simulate(lane, requests, random.Random(0), idle=0.0, stall=0.0)
    assert results == [2 * 3 + 4 * 5, -1, 7 * 7 + 1]


def test_latency_is_documented_value():
    lane = PELane(operand_bits=8, acc_bits=20, counter_bits=16)
    # One single-term request transferred on edge 1: the result transfers LATENCY edges later.
    _, _, _, edges = simulate(lane, [MacRequest(5, 6, first=True, last=True)], random.Random(0),
                              idle=0.0, stall=0.0)
    assert edges == [1 + PELane.LATENCY]


@pytest.mark.parametrize("kwargs,message", [
    ({"operand_bits": 1, "acc_bits": 8, "counter_bits": 8}, "operand_bits must be an integer in 2..32, not 1"),
    ({"operand_bits": 8, "acc_bits": 15, "counter_bits": 8}, "acc_bits must be an integer >= 2 \\* operand_bits = 16"),
    ({"operand_bits": 8, "acc_bits": 16, "counter_bits": 4}, "counter_bits must be an integer in 8..64, not 4"),
    ({"operand_bits": True, "acc_bits": 16, "counter_bits": 8}, "operand_bits must be an integer"),
])
def test_invalid_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PELane(**kwargs)
