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
    """Load both B buffers, stream ``rows`` (ks, values, buf), collect the results and the cycle
    count from the first row taken to the last result taken."""
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
        sent, cycle = 0, 0
        while len(got) < len(rows):
            valid = sent < len(rows) and rng.random() >= stall_in
            if valid:
                index, (ks, values, buf) = sent, rows[sent]
                ctx.set(lane.i_row.payload.row, index % lane.rows)
                ctx.set(lane.i_row.payload.buf, buf)
                ctx.set(lane.i_row.payload.bitmap, sum(1 << k for k in ks))
                ctx.set(lane.i_row.payload.count, len(ks))
                for j in range(lane.tile_k):
                    ctx.set(lane.i_row.payload.values[j], values[j] if j < len(values) else 0)
            ctx.set(lane.i_row.valid, valid)
            ready = rng.random() >= stall_out
            ctx.set(lane.o_sums.ready, ready)
            if valid and ctx.get(lane.i_row.ready):
                cycles.setdefault("first", cycle)
                sent += 1
            if ready and ctx.get(lane.o_sums.valid):
                payload = ctx.get(lane.o_sums.payload)
                got.append((payload.row, [int(payload.sums[v]) for v in range(lane.vector)]))
                cycles["last"] = cycle
            await ctx.tick()
            cycle += 1
            assert cycle < 100_000, "lane stalled"

    sim = Simulator(lane)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, cycles


@pytest.mark.parametrize(("vector", "tile_k", "bits", "stall_in", "stall_out"), [
    (4, 8, 4, 0.3, 0.3),
    (16, 64, 8, 0.0, 0.0),
    (16, 64, 8, 0.4, 0.5),
    (3, 5, 6, 0.2, 0.7),
])
def test_vector_lane_sums_match_python(vector, tile_k, bits, stall_in, stall_out):
    seed = SEED + vector * 1000 + tile_k
    print(f"seed {seed}")
    rng = random.Random(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    blocks = [[[rng.choice([lo, hi, 0, rng.randint(lo, hi)]) for _ in range(vector)] for _ in range(tile_k)]
              for _ in range(2)]
    rows = [(*_row(rng, tile_k, bits, rng.choice([0.05, 0.3, 1.0])), rng.randrange(2)) for _ in range(40)]
    acc_bits = 2 * bits + tile_k.bit_length()
    lane = VectorLane(vector=vector, tile_k=tile_k, operand_bits=bits, acc_bits=acc_bits, rows=64)
    got, _ = _run(lane, blocks, rows, stall_in=stall_in, stall_out=stall_out, seed=seed)
    for index, ((ks, values, buf), (row, sums)) in enumerate(zip(rows, got, strict=True)):
        want = [_wrap(sum(a * blocks[buf][k][v] for k, a in zip(ks, values, strict=True)), acc_bits)
                for v in range(vector)]
        assert (row, sums) == (index % 64, want), f"row {index}"


def test_vector_lane_issues_one_nonzero_per_cycle_across_rows():
    """With no stall the lane spends exactly one cycle per nonzero: no bubble between rows, and the
    last sums appear RESULT_LATENCY cycles after the last issue."""
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    blocks = [[[rng.randint(-8, 7) for _ in range(8)] for _ in range(16)] for _ in range(2)]
    rows = [(*_row(rng, 16, 4, rng.choice([0.0, 0.2, 1.0])), 0) for _ in range(30)]
    lane = VectorLane(vector=8, tile_k=16, operand_bits=4, acc_bits=14, rows=32)
    got, cycles = _run(lane, blocks, rows, stall_in=0.0, stall_out=0.0, seed=SEED)
    assert len(got) == len(rows)
    nonzeros = sum(len(ks) for ks, _, _ in rows)
    # Row 0 transfers in cycle 0 and issues from cycle 2; the last of all nonzeros issues in cycle
    # 2 + nonzeros - 1, and its row's sums are taken RESULT_LATENCY cycles later.
    assert cycles["last"] - cycles["first"] == 2 + nonzeros - 1 + VectorLane.RESULT_LATENCY


def test_vector_lane_rejects_bad_parameters():
    with pytest.raises(ValueError, match=r"vector must be an integer in 1\.\.64"):
        VectorLane(vector=0, tile_k=8, operand_bits=8, acc_bits=24, rows=4)
    with pytest.raises(ValueError, match=r"acc_bits must be an integer in 16\.\.64"):
        VectorLane(vector=4, tile_k=8, operand_bits=8, acc_bits=12, rows=4)
    with pytest.raises(ValueError, match="target must be one of"):
        VectorLane(vector=4, tile_k=8, operand_bits=8, acc_bits=24, rows=4, target="asic")
