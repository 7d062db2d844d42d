# amaranth: UnusedElaboratable=no
"""The design-study slices (benchmarks/slices.py): each elaborates and converts to Verilog at small
sizes, and each computes the right sums in the Amaranth simulator (generic multipliers) on random
data. No synthesis here: `python benchmarks/slices.py` does that."""

from __future__ import annotations

import importlib.util
import itertools
import random
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

ROOT = Path(__file__).resolve().parents[2]


def _load_slices():
    spec = importlib.util.spec_from_file_location("benchmark_slices", ROOT / "benchmarks" / "slices.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slices = _load_slices()

SMALL = {
    "dense_array": {"rows": 4, "cols": 2},
    "vector_lane": {"width": 4, "tile_k": 16},
    "match_pe": {"matches": 2, "tile_k": 16},
}
SEEDS = (1, 2)


def int8(rng: random.Random) -> int:
    return rng.choice((-128, 127, rng.randint(-128, 127), rng.randint(-128, 127)))


def sparse_vector(rng: random.Random, length: int, density: float) -> list[int]:
    return [int8(rng) or 1 if rng.random() < density else 0 for _ in range(length)]


@pytest.mark.parametrize("target", ["ecp5", "generic"])
@pytest.mark.parametrize("name", list(SMALL))
def test_slice_converts_to_verilog(name, target):
    dut = slices.build_slice(name, target=target, **SMALL[name])
    text = verilog.convert(dut, name=f"slice_{name}", emit_src=False)
    assert f"module slice_{name}" in text
    assert ("MULT18X18D" in text) == (target == "ecp5")
    assert text.count("MULT18X18D #(") == (dut.multipliers if target == "ecp5" else 0)


def test_measured_parameters():
    for name, (cls, params) in slices.SLICES.items():
        # Built here, not through build_slice, so this file's UnusedElaboratable=no applies.
        assert cls(**params).multipliers == {"dense_array": 128, "vector_lane": 16, "match_pe": 4}[name]


async def load_row(ctx, dut, row: list[int]) -> None:
    """Write a row's packed nonzeros one per cycle while ``row_ready``, committing its bitmap with
    the last value (an empty row: the commit alone)."""
    values = [x for x in row if x]
    bitmap = sum(1 << k for k, x in enumerate(row) if x)
    for i, value in enumerate(values or [None]):
        while not ctx.get(dut.row_ready):
            ctx.set(dut.a_we, 0)
            ctx.set(dut.row_valid, 0)
            await ctx.tick()
        ctx.set(dut.a_we, value is not None)
        ctx.set(dut.a_data, value or 0)
        last = i == max(len(values), 1) - 1
        ctx.set(dut.row_valid, last)
        ctx.set(dut.row_bitmap, bitmap if last else 0)
        await ctx.tick()
    ctx.set(dut.a_we, 0)
    ctx.set(dut.row_valid, 0)


@pytest.mark.parametrize("seed", SEEDS)
def test_vector_lane_matches_dot_products(seed):
    """Random B tile; rows of several densities (one empty) pushed back to back; each result is
    the row's dot product with every B column."""
    print(f"seed={seed}")
    rng = random.Random(seed)
    width, tile_k = SMALL["vector_lane"]["width"], SMALL["vector_lane"]["tile_k"]
    dut = slices.build_slice("vector_lane", target="generic", width=width, tile_k=tile_k)
    tile = [[int8(rng) for _ in range(width)] for _ in range(tile_k)]
    rows = [sparse_vector(rng, tile_k, d) for d in (0.5, 0.0, 1.0, 0.2, 0.8, 0.05)]
    expected = [[sum(row[k] * tile[k][v] for k in range(tile_k)) for v in range(width)] for row in rows]
    results: list[list[int]] = []
    busy_cycles = sum(max(1, sum(1 for x in row if x)) for row in rows)

    async def producer(ctx):
        for k in range(tile_k):
            ctx.set(dut.b_we, 1)
            ctx.set(dut.b_addr, k)
            ctx.set(dut.b_data, tile[k])
            await ctx.tick()
        ctx.set(dut.b_we, 0)
        for row in rows:
            await load_row(ctx, dut, row)

    async def consumer(ctx):
        while len(results) < len(rows):
            _, _, valid, values = await ctx.tick().sample(dut.o_valid, dut.o_data)
            if valid:
                results.append([int(values[v]) for v in range(width)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until((tile_k + 2 * busy_cycles + 100) * 1e-8)
    assert results == expected, f"seed {seed}"


@pytest.mark.parametrize("seed", SEEDS)
def test_vector_lane_sustains_one_nonzero_per_cycle(seed):
    """With the next row loaded while one computes, rows follow each other without a bubble: the
    results of back-to-back dense rows come nnz = tile_k cycles apart."""
    print(f"seed={seed}")
    rng = random.Random(100 + seed)
    width, tile_k = SMALL["vector_lane"]["width"], SMALL["vector_lane"]["tile_k"]
    dut = slices.build_slice("vector_lane", target="generic", width=width, tile_k=tile_k)
    rows = [[int8(rng) or 1 for _ in range(tile_k)] for _ in range(3)]
    edges: list[int] = []

    async def producer(ctx):
        for row in rows:
            await load_row(ctx, dut, row)

    async def consumer(ctx):
        cycle = 0
        while len(edges) < len(rows):
            _, _, valid = await ctx.tick().sample(dut.o_valid)
            cycle += 1
            if valid:
                edges.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(20 * tile_k * 1e-8)
    # Each row is loaded (nnz cycles, commit with the last value) while the previous one computes.
    assert [b - a for a, b in itertools.pairwise(edges)] == [tile_k, tile_k], edges


@pytest.mark.parametrize("seed", SEEDS)
def test_match_pe_matches_sparse_dot_products(seed):
    print(f"seed={seed}")
    rng = random.Random(seed)
    matches, tile_k = SMALL["match_pe"]["matches"], SMALL["match_pe"]["tile_k"]
    dut = slices.build_slice("match_pe", target="generic", matches=matches, tile_k=tile_k)
    pairs = [(sparse_vector(rng, tile_k, da), sparse_vector(rng, tile_k, db))
             for da, db in ((0.5, 0.5), (0.0, 0.9), (1.0, 1.0), (0.3, 0.8), (1.0, 0.1))]
    expected = [sum(x * y for x, y in zip(a, b, strict=True)) for a, b in pairs]
    results: list[int] = []

    def packed(vector):
        values = [x for x in vector if x]
        return values + [0] * (tile_k - len(values)), sum(1 << k for k, x in enumerate(vector) if x)

    async def producer(ctx):
        for a, b in pairs:
            while not ctx.get(dut.ready):
                await ctx.tick()
            (a_values, a_bitmap), (b_values, b_bitmap) = packed(a), packed(b)
            ctx.set(dut.a_values, a_values)
            ctx.set(dut.a_bitmap, a_bitmap)
            ctx.set(dut.b_values, b_values)
            ctx.set(dut.b_bitmap, b_bitmap)
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)

    async def consumer(ctx):
        while len(results) < len(pairs):
            _, _, valid, value = await ctx.tick().sample(dut.o_valid, dut.o_sum)
            if valid:
                results.append(int(value))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(len(pairs) * (tile_k + 30) * 1e-8)
    assert results == expected, f"seed {seed}"


@pytest.mark.parametrize("seed", SEEDS)
def test_dense_array_accumulates_outer_products(seed):
    print(f"seed={seed}")
    rng = random.Random(seed)
    rows, cols = SMALL["dense_array"]["rows"], SMALL["dense_array"]["cols"]
    dut = slices.build_slice("dense_array", target="generic", rows=rows, cols=cols)
    steps = 7
    a = [[int8(rng) for _ in range(rows)] for _ in range(steps)]
    b = [[int8(rng) for _ in range(cols)] for _ in range(steps)]
    # Step 0 restarts (first); step 3 is not valid and must not count.
    valid = [1, 1, 1, 0, 1, 1, 1]
    expected = [[sum(a[t][r] * b[t][c] for t in range(steps) if valid[t]) for c in range(cols)]
                for r in range(rows)]
    read: list[list[int]] = []

    async def bench(ctx):
        for _ in range(3):  # garbage accumulation before the first `first`
            ctx.set(dut.valid, 1)
            ctx.set(dut.a, [5] * rows)
            ctx.set(dut.b, [7] * cols)
            await ctx.tick()
        for t in range(steps):
            ctx.set(dut.a, a[t])
            ctx.set(dut.b, b[t])
            ctx.set(dut.valid, valid[t])
            ctx.set(dut.first, int(t == 0))
            await ctx.tick()
        ctx.set(dut.valid, 0)
        ctx.set(dut.first, 0)
        for _ in range(6):
            await ctx.tick()
        for r in range(rows):
            ctx.set(dut.rd_row, r)
            await ctx.tick().repeat(3)
            values = ctx.get(dut.rd_data)
            read.append([int(values[c]) for c in range(cols)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert read == expected, f"seed {seed}"


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("dense_array", {"rows": 1}, r"DenseArray rows must be an integer in 2\.\.64, not 1"),
    ("vector_lane", {"width": 0}, r"VectorLane width must be an integer in 1\.\.64, not 0"),
    ("match_pe", {"matches": 3}, r"MatchPE matches must be one of 1, 2, 4, 8"),
    ("match_pe", {"tile_k": 30}, r"MatchPE tile_k must be a multiple of 4 in 8\.\.256, not 30"),
])
def test_invalid_parameters_are_rejected(name, kwargs, message):
    cls, params = slices.SLICES[name]
    with pytest.raises(ValueError, match=message):
        cls(**{**params, **kwargs})
