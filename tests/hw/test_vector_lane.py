# amaranth: UnusedElaboratable=no
"""The vector lane (hw.vector_lane) in the Amaranth simulator: dot products against a Python sum
over the row's nonzeros, random valid/ready stalls, and one nonzero per cycle across rows."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hw.vector_lane import VectorLane

SEED = 4127


def _row(rng: random.Random, tile_k: int, bits: int, density: float) -> tuple[list[int], list[int]]:
    """A random nonempty row: its nonzero positions (ascending) and their values."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    ks = [k for k in range(tile_k) if rng.random() < density] or [rng.randrange(tile_k)]
    values = [rng.choice([v for v in (lo, hi, rng.randint(lo, hi)) if v != 0]) for _ in ks]
    return ks, values


def _wrap(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _run(lane: VectorLane, blocks, rows, *, stall_in: float, stall_out: float, seed: int):
    """Load both B buffers, send ``rows`` (ks, values, buf) down the dispatch chain by the lane's
    credit protocol as the core does (a row tagged for the lane only while the credit is held; the
    credit back the second cycle after ``o_took`` pulsed), and offer result slots of which a fraction
    ``stall_out`` is already taken upstream; the lane's results (the slots it filled) and the cycles of
    the first row sent and the last result out."""
    rng = random.Random(seed)
    got: list[tuple[int, list[int]]] = []
    cycles: dict[str, int] = {}

    async def bench(ctx):
        for buf, block in enumerate(blocks):
            for k, brow in enumerate(block):
                ctx.set(lane.b_en, 1)
                ctx.set(lane.b_buf, buf)
                ctx.set(lane.b_k, k)
                for v, value in enumerate(brow):
                    ctx.set(lane.b_data[v], value)
                await ctx.tick()
        ctx.set(lane.b_en, 0)
        sent, cycle, credit, credit_back, offered_empty = 0, 0, True, None, False
        while len(got) < len(rows):
            if offered_empty and ctx.get(lane.o_slot.valid):
                slot = ctx.get(lane.o_slot)
                got.append((slot.row, [int(slot.sums[v]) for v in range(lane.vector)]))
                cycles["last"] = cycle
            push = credit and sent < len(rows) and rng.random() >= stall_in
            if push:
                ks, values, buf = rows[sent]
                ctx.set(lane.i_chain.row.row, sent % lane.rows)
                ctx.set(lane.i_chain.row.buf, buf)
                ctx.set(lane.i_chain.row.bitmap, sum(1 << k for k in ks))
                ctx.set(lane.i_chain.row.count, len(ks))
                for j in range(lane.tile_k):
                    ctx.set(lane.i_chain.row.values[j], values[j] if j < len(values) else 0)
                cycles.setdefault("first", cycle)
                sent, credit = sent + 1, False
            ctx.set(lane.i_chain.valid, push)
            ctx.set(lane.i_chain.target, 1 << lane.position)
            # An upstream lane's result in the slot: the lane must let it pass.
            offered_empty = rng.random() >= stall_out
            ctx.set(lane.i_slot.valid, not offered_empty)
            ctx.set(lane.i_slot.row, 0)
            if credit_back == cycle:
                credit = True
            if ctx.get(lane.o_took):
                credit_back = cycle + 1        # the core's credit register, then its pick
            await ctx.tick()
            cycle += 1
            assert cycle < 100_000, "lane stalled"

    sim = Simulator(lane)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, cycles


@pytest.mark.parametrize(("vector", "tile_k", "bits", "stall_in", "stall_out", "depth"), [
    (4, 8, 4, 0.3, 0.3, 16),
    (16, 64, 8, 0.0, 0.0, 16),
    (16, 64, 8, 0.4, 0.5, 16),
    (3, 5, 6, 0.2, 0.7, 16),
    (4, 8, 4, 0.0, 0.8, 2),      # result slots run out: issue waits for them
    (5, 12, 5, 0.2, 0.5, 3),     # a depth that is not a power of two
])
def test_vector_lane_sums_match_python(vector, tile_k, bits, stall_in, stall_out, depth):
    seed = SEED + vector * 1000 + tile_k
    print(f"seed {seed}")
    rng = random.Random(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    blocks = [[[rng.choice([lo, hi, 0, rng.randint(lo, hi)]) for _ in range(vector)] for _ in range(tile_k)]
              for _ in range(2)]
    rows = [(*_row(rng, tile_k, bits, rng.choice([0.05, 0.3, 1.0])), rng.randrange(2)) for _ in range(40)]
    acc_bits = 2 * bits + tile_k.bit_length()
    lane = VectorLane(vector=vector, tile_k=tile_k, operand_bits=bits, acc_bits=acc_bits, rows=64,
                      result_depth=depth)
    got, _ = _run(lane, blocks, rows, stall_in=stall_in, stall_out=stall_out, seed=seed)
    for index, ((ks, values, buf), (row, sums)) in enumerate(zip(rows, got, strict=True)):
        want = [_wrap(sum(a * blocks[buf][k][v] for k, a in zip(ks, values, strict=True)), acc_bits)
                for v in range(vector)]
        assert (row, sums) == (index % 64, want), f"row {index}"


def test_vector_lane_issues_one_nonzero_per_cycle_across_rows():
    """With no stall, and rows of at least four nonzeros (enough to cover the credit's round
    trip), the lane spends exactly one cycle per nonzero: no bubble between rows, and the last
    result leaves the cycle after it is stored, RESULT_LATENCY cycles after the last issue."""
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    blocks = [[[rng.randint(-8, 7) for _ in range(8)] for _ in range(16)] for _ in range(2)]
    rows = []
    while len(rows) < 30:
        ks, values = _row(rng, 16, 4, rng.choice([0.4, 1.0]))
        if len(ks) >= 4:
            rows.append((ks, values, 0))
    lane = VectorLane(vector=8, tile_k=16, operand_bits=4, acc_bits=14, rows=32)
    got, cycles = _run(lane, blocks, rows, stall_in=0.0, stall_out=0.0, seed=SEED)
    assert len(got) == len(rows)
    nonzeros = sum(len(ks) for ks, _, _ in rows)
    # Row 0 is on the chain in cycle 0 and issues from cycle 2; the last of all nonzeros issues in
    # cycle 2 + nonzeros - 1, its result is stored RESULT_LATENCY cycles later, goes into the slot
    # the cycle after and is on o_slot the cycle after that.
    assert cycles["last"] - cycles["first"] == 2 + nonzeros - 1 + VectorLane.RESULT_LATENCY + 2


def test_vector_lane_rejects_bad_parameters():
    with pytest.raises(ValueError, match=r"vector must be an integer in 1\.\.64"):
        VectorLane(vector=0, tile_k=8, operand_bits=8, acc_bits=24, rows=4)
    with pytest.raises(ValueError, match=r"acc_bits must be an integer in 16\.\.64"):
        VectorLane(vector=4, tile_k=8, operand_bits=8, acc_bits=12, rows=4)
    with pytest.raises(ValueError, match=r"result_depth must be an integer in 2\.\.16"):
        VectorLane(vector=4, tile_k=8, operand_bits=8, acc_bits=24, rows=4, result_depth=1)
    with pytest.raises(ValueError, match="target must be one of"):
        VectorLane(vector=4, tile_k=8, operand_bits=8, acc_bits=24, rows=4, target="asic")


def test_vector_lane_passes_rows_and_slots_of_other_lanes_on():
    """Lane 1 of 3: a row tagged for lane 2 and a result slot from upstream leave a cycle later,
    unchanged, and the lane neither takes the row nor overwrites the slot."""
    lane = VectorLane(vector=4, tile_k=8, operand_bits=4, acc_bits=12, rows=8, position=1, chain_lanes=3)
    seen: dict[str, object] = {}

    async def bench(ctx):
        ctx.set(lane.i_chain.valid, 1)
        ctx.set(lane.i_chain.target, 0b100)
        ctx.set(lane.i_chain.row.row, 5)
        ctx.set(lane.i_chain.row.bitmap, 0b1010)
        ctx.set(lane.i_chain.row.count, 2)
        ctx.set(lane.i_slot.valid, 1)
        ctx.set(lane.i_slot.row, 6)
        ctx.set(lane.i_slot.sums[2], -7)
        await ctx.tick()
        ctx.set(lane.i_chain.valid, 0)
        ctx.set(lane.i_slot.valid, 0)
        seen["chain"] = (ctx.get(lane.o_chain.valid), ctx.get(lane.o_chain.target), ctx.get(lane.o_chain.row.row),
                         ctx.get(lane.o_chain.row.bitmap))
        seen["slot"] = (ctx.get(lane.o_slot.valid), ctx.get(lane.o_slot.row), ctx.get(lane.o_slot.sums[2]))
        for _ in range(12):
            await ctx.tick()
            assert not ctx.get(lane.issued) and not ctx.get(lane.o_slot.valid)
        seen["busy"] = ctx.get(lane.busy)

    sim = Simulator(lane)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"chain": (1, 0b100, 5, 0b1010), "slot": (1, 6, -7), "busy": 0}
