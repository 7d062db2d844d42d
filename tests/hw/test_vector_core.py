"""The vector core (hw.vector_core) in the Amaranth simulator against ref.contract.evaluate: random
programs in every sparsity mode, densities 0-100 %, accumulation over K tiles, output masks, raw,
requantized and top-K drains, random valid/ready stalls on every stream."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from amaranth import Value
from amaranth.sim import Simulator

from hw.vector_core import VectorCore, VectorCoreParams
from ref.contract.commands import Drain, Operand, Program, PruneSetting, TileGemm
from ref.contract.evaluate import evaluate
from ref.contract.random_programs import random_program, random_resprop_program
from ref.vector_cycle_model import predict_vector_cycles
from sim.core_amaranth import read_resprop_results, stream_source
from sim.vector_program import (
    decode_vector_drain,
    encode_vector_program,
    vector_resprop_inputs,
    vector_resprop_p_addresses,
)

SMALL = VectorCoreParams(lanes=2, vector=4, tile_m=6, tile_k=8, operand_bits=4, acc_bits=14, bus_elems=4)


def run_vector_core(program, params: VectorCoreParams, *, seed: int, stall: float, max_cycles: int = 200_000):
    """Simulate ``program``; the drained tiles, their mask bits, the counters (and the pruner's sum)
    and the cycle count. A program that prunes loads the pruner first, three cycles before any
    command (which the cycle count leaves out)."""
    enc = encode_vector_program(program, params)
    dut = VectorCore(params)
    rng = random.Random(seed)
    beats: list[int] = []
    out: dict = {}
    setting = program.prune
    lead = 0 if setting is None else 3
    # A ReSprop program begins its pass (resprop_load), then writes its P, one code per cycle;
    # afterwards a second load swaps in the stored P, which is read back.
    rs = program.resprop
    rs_addrs = [] if rs is None else vector_resprop_p_addresses(rs.rows_per_sample, rs.cols, params)
    if rs is not None:
        lead += 1 + len(rs_addrs) + 1

    async def commands(ctx):
        await stream_source(ctx, dut.i_cmd, enc.commands, rng=rng, stall=stall, lead=lead)

    async def data(ctx):
        await stream_source(ctx, dut.i_data, enc.data, rng=rng, stall=stall, lead=lead)

    async def sink(ctx):
        ctx.set(dut.topk_threshold, program.topk_threshold or 0)
        cycle = 0
        if setting is not None:
            ctx.set(dut.prune_tau, setting.tau)
            ctx.set(dut.prune_seed, setting.seed)
            ctx.set(dut.prune_load, 1)
            await ctx.tick()
            ctx.set(dut.prune_load, 0)
            cycle += 1
        if rs is not None:
            for name, value in vector_resprop_inputs(program, params).items():
                ctx.set(getattr(dut, f"resprop_{name}"), value)
            ctx.set(dut.resprop_load, 1)
            await ctx.tick()
            ctx.set(dut.resprop_load, 0)
            ctx.set(dut.resprop_p_we, 1)
            for addr, v in zip(rs_addrs, rs.p.flatten().tolist(), strict=True):
                ctx.set(dut.resprop_p_addr, addr)
                ctx.set(dut.resprop_p_wdata, v & ((1 << params.operand_bits) - 1))
                await ctx.tick()
            ctx.set(dut.resprop_p_we, 0)
            cycle += 1 + len(rs_addrs)
        cycle -= lead
        while len(beats) < enc.drains * enc.drain_beats or not ctx.get(dut.idle):
            ready = not (stall and rng.random() < stall)
            ctx.set(dut.o_data.ready, ready)
            await ctx.delay(1e-9)
            if ready and ctx.get(dut.o_data.valid):
                beats.append(ctx.get(Value.cast(dut.o_data.payload)))
                out["last"] = cycle
            await ctx.tick()
            cycle += 1
            assert cycle < max_cycles, f"core stalled with {len(beats)} result beats"
        out["macs_issued"] = ctx.get(dut.counters.macs_issued)
        out["macs_dense"] = ctx.get(dut.counters.macs_dense)
        out["prune_sum"] = ctx.get(dut.prune_sum) if setting is not None else None
        if rs is not None:
            out.update(await read_resprop_results(ctx, dut, rs.p.shape, rs_addrs, params.operand_bits))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(commands)
    sim.add_process(data)
    sim.add_testbench(sink)
    sim.run()
    drains = [decode_vector_drain(beats[i * enc.drain_beats:(i + 1) * enc.drain_beats], params)
              for i in range(enc.drains)]
    return drains, out


CASES = [
    # (mode, density, a_format, stall)
    ("a", 0.3, "bitmap", 0.0),
    ("a", 0.0, "bitmap", 0.3),
    ("all", 0.2, "bitmap", 0.4),
    ("mask", 0.5, "bitmap", 0.2),
    ("b", 0.5, "dense", 0.3),
    ("dense", 1.0, "dense", 0.0),
    ("all", 0.6, "bitmap", 0.0),
]


@pytest.mark.parametrize(("mode", "density", "a_format", "stall"), CASES)
@pytest.mark.parametrize(("sparse", "bus_elems"), [(True, 4), (False, 4), (True, 8)])
def test_vector_core_matches_ref(mode, density, a_format, stall, sparse, bus_elems):
    params = dataclasses.replace(SMALL, sparse=sparse, bus_elems=bus_elems)
    seed = 31 + int(100 * density) + 7 * CASES.index((mode, density, a_format, stall))
    print(f"seed {seed}")
    program = random_program(mode=mode, density=density, tile_m=params.tile_m, tile_n=params.vector,
                             tile_k=params.tile_k, operand_bits=params.operand_bits, acc_bits=params.acc_bits,
                             n_gemms=3, k_tiles=2, seed=seed, a_format=a_format, b_format="dense",
                             topk_threshold=3)
    want = evaluate(program)
    drains, counters = run_vector_core(program, params, seed=seed, stall=stall)
    assert len(drains) == len(want.tiles)
    for index, ((tile, mask), ref_tile, ref_mask) in enumerate(zip(drains, want.tiles, want.masks, strict=True)):
        assert (tile == ref_tile).all(), f"drain {index}:\n{tile}\nref\n{ref_tile}"
        assert (mask == ref_mask).all(), f"drain {index} mask bits"
    assert counters["macs_dense"] == want.dense_macs


@pytest.mark.parametrize(("mode", "sparse"), [("a", True), ("all", True), ("dense", False), ("mask", True)])
def test_result_path_pruner_matches_ref(mode, sparse):
    """Pruning drains (Dai et al. on the result path): every code, mask bit and the sum of |g| equal
    ref's, the LFSR running on across drains (one draw per element, row by row) and skipping the
    unpruned ones; tau = 0 bypasses; a tau above qmax substitutes qmax."""
    params = dataclasses.replace(SMALL, sparse=sparse)
    qmax = (1 << (params.operand_bits - 1)) - 1
    changed = 0
    for seed, density, tau in ((21, 0.7, 3), (22, 1.0, 5), (23, 0.5, 0), (24, 0.9, qmax + 4), (25, 1.0, 1)):
        print(f"mode={mode} sparse={sparse} density={density} tau={tau} seed={seed}")
        setting = PruneSetting(tau=tau, seed=1 + seed * 7 % 250, lfsr_width=params.lfsr_width,
                               lfsr_taps=params.lfsr_taps)
        program = random_program(mode=mode, density=density, tile_m=params.tile_m, tile_n=params.vector,
                                 tile_k=params.tile_k, operand_bits=params.operand_bits, acc_bits=params.acc_bits,
                                 n_gemms=4, k_tiles=2, seed=seed, a_format="bitmap" if sparse else "dense",
                                 b_format="dense", prune=setting)
        want = evaluate(program)
        drains, counters = run_vector_core(program, params, seed=seed, stall=0.3)
        for (tile, mask), ref_tile, ref_mask in zip(drains, want.tiles, want.masks, strict=True):
            assert (tile == ref_tile).all(), f"{tile}\nref\n{ref_tile}"
            assert (mask == ref_mask).all()
        assert counters["prune_sum"] == want.prune_sum
        unpruned = evaluate(dataclasses.replace(program, prune=None, commands=tuple(
            dataclasses.replace(c, prune=False) if isinstance(c, Drain) else c for c in program.commands)))
        changed += sum(int((a != b).sum()) for a, b in zip(want.tiles, unpruned.tiles, strict=True))
        if tau == 0:
            assert all((a == b).all() for a, b in zip(want.tiles, unpruned.tiles, strict=True))
    assert changed > 0   # the pruner changed codes: the comparison is not vacuous


@pytest.mark.parametrize("sparse", [True, False])
def test_result_path_resprop_matches_ref(sparse):
    """``resprop`` drains (ReSprop's difference on the result path), with P written through the
    core's P port and random stalls: every S and mask bit, the nonzero count, the exponent after the
    x2 / /2 step and the stored P read back after the next load equal ref's. The passes cover a
    sample straddling row tiles with ragged columns (the median threshold against a 90 % target:
    the exponent steps down), one row per sample storing none with T = floor(2**-1) = 0 (steps
    up), a dense pass (held), a threshold above every |D| (the core clamps T), and codes that
    saturate both ways."""
    params = dataclasses.replace(SMALL, sparse=sparse)
    tm, vec, ob = params.tile_m, params.vector, params.operand_bits
    plans = ((3, tm + 1, vec + 1, 1, None, 0, 9000, False, ob - 1, 0),
             (tm + 2, 1, vec - 1, tm + 2, 1, -1, 1500, False, ob - 1, 0),
             (2, 2, vec, 1, 0, 2, 0, True, ob, 0), (2, tm // 2 + 1, vec, 0, (1 << ob) - 1, 3, 0, False, ob, 0),
             (3, tm + 1, vec + 1, 2, None, 0, 9000, False, ob - 1, 2))
    kept = dropped = 0
    steps = []
    for i, (n, r, c, j, mant, exp, target, dense, out_bits, saturate_bits) in enumerate(plans):
        seed = 60 + i
        program = random_resprop_program(n_samples=n, rows_per_sample=r, cols=c, tile_m=tm, tile_n=vec,
                                         tile_k=params.tile_k, operand_bits=ob, acc_bits=params.acc_bits,
                                         out_bits=out_bits, sample=j, mant=mant, exp=exp, target_cp=target,
                                         dense=dense, k_tiles=2, saturate_bits=saturate_bits, seed=seed)
        print(f"n={n} r={r} c={c} j={j} threshold={program.resprop.mant}*2**{exp} target={target} dense={dense} "
              f"saturate_bits={saturate_bits} seed={seed}")
        want = evaluate(program)
        drains, out = run_vector_core(program, params, seed=seed, stall=0.3)
        for (tile, mask), ref_tile, ref_mask in zip(drains, want.tiles, want.masks, strict=True):
            assert (tile == ref_tile).all(), f"{tile}\nref\n{ref_tile}"
            assert (mask == ref_mask).all()
        assert out["resprop_nnz"] == want.resprop_nnz
        assert out["resprop_exp_next"] == want.resprop_exp_after
        assert torch.equal(out["resprop_p"], want.resprop_p)
        steps.append(want.resprop_exp_after - exp)
        if not dense and mant is None:
            kept, dropped = want.resprop_nnz, int((want.output == 0).sum())
        assert torch.equal(want.resprop_p, program.resprop.p) != (j < n)
    assert kept > 0 and dropped > 0   # the median threshold kept some differences and dropped others
    assert steps[:3] == [-1, 1, 0]    # the controller stepped both ways and held on the dense pass


@pytest.mark.parametrize("bus_elems", [1, 2])
def test_narrow_bus_splits_a_row_bitmap_over_beats(bus_elems):
    """A row's bitmap wider than a beat (``tile_k`` > bus bits) arrives over several beats, and its
    values over as many beats as its nonzeros need, down to one value per beat."""
    params = VectorCoreParams(lanes=2, vector=4, tile_m=5, tile_k=16, operand_bits=4, acc_bits=14,
                              bus_elems=bus_elems)
    for seed, density in ((61 + bus_elems, 0.3), (71 + bus_elems, 0.9), (81 + bus_elems, 0.05)):
        print(f"seed {seed}")
        program = random_program(mode="all", density=density, tile_m=params.tile_m, tile_n=params.vector,
                                 tile_k=params.tile_k, operand_bits=params.operand_bits,
                                 acc_bits=params.acc_bits, n_gemms=2, k_tiles=2, seed=seed, a_format="bitmap",
                                 b_format="dense")
        want = evaluate(program)
        drains, counters = run_vector_core(program, params, seed=seed, stall=0.2)
        for index, ((tile, mask), ref_tile, ref_mask) in enumerate(zip(drains, want.tiles, want.masks,
                                                                        strict=True)):
            assert (tile == ref_tile).all(), f"drain {index}:\n{tile}\nref\n{ref_tile}"
            assert (mask == ref_mask).all(), f"drain {index} mask bits"
        assert counters["macs_dense"] == want.dense_macs


@pytest.mark.parametrize(("field", "value", "message"), [
    ("bus_elems", 12, "bus_elems must be a power of two"),
    ("vector", 12, "vector must be a power of two"),
    ("tile_k", 18, "tile_k must be a multiple of bus_elems"),
])
def test_parameters_the_vector_core_cannot_build_are_rejected(field, value, message):
    base = dict(lanes=2, vector=4, tile_m=6, tile_k=48, operand_bits=4, acc_bits=14, bus_elems=4)
    with pytest.raises(ValueError, match=message):
        VectorCoreParams(**(base | {field: value}))


def test_pruning_programs_the_core_cannot_run_are_rejected():
    program = random_program(mode="a", density=0.5, tile_m=SMALL.tile_m, tile_n=SMALL.vector, tile_k=SMALL.tile_k,
                             operand_bits=SMALL.operand_bits, acc_bits=SMALL.acc_bits, seed=1,
                             prune=PruneSetting(tau=2, seed=3, lfsr_width=8, lfsr_taps=0xB8))
    with pytest.raises(ValueError, match="prune LFSR"):
        encode_vector_program(program, SMALL)
    wide = PruneSetting(tau=1 << SMALL.prune_tau_bits, seed=3, lfsr_width=SMALL.lfsr_width, lfsr_taps=SMALL.lfsr_taps)
    with pytest.raises(ValueError, match="tau"):
        encode_vector_program(dataclasses.replace(program, prune=wide), SMALL)


def test_vector_core_default_geometry_matches_ref():
    params = VectorCoreParams(lanes=4, vector=16, tile_m=16, tile_k=32, operand_bits=8, acc_bits=26, bus_elems=16)
    seed = 77
    print(f"seed {seed}")
    program = random_program(mode="all", density=0.3, tile_m=16, tile_n=16, tile_k=32, operand_bits=8,
                             acc_bits=26, n_gemms=2, k_tiles=2, seed=seed, a_format="bitmap", b_format="dense")
    want = evaluate(program)
    drains, _ = run_vector_core(program, params, seed=seed, stall=0.2)
    for (tile, mask), ref_tile, ref_mask in zip(drains, want.tiles, want.masks, strict=True):
        assert (tile == ref_tile).all()
        assert (mask == ref_mask).all()


def test_vector_core_masks_that_change_between_accumulating_gemms():
    """A row live from an earlier GEMM that a later accumulating GEMM masks: fully masked rows and
    partially masked rows without nonzeros must read 0 where masked, the rest unchanged."""
    params = SMALL
    gen = torch.Generator().manual_seed(5)
    print("seed 5")
    tm, vec, tk = params.tile_m, params.vector, params.tile_k

    def operand(density: float, rows: int, cols: int) -> torch.Tensor:
        values = torch.randint(-8, 8, (rows, cols), generator=gen)
        return values * (torch.rand((rows, cols), generator=gen) < density)

    a0, b0 = operand(0.9, tm, tk), operand(1.0, tk, vec)
    a1, b1 = operand(0.6, tm, tk), operand(1.0, tk, vec)
    a1[1] = 0
    a1[2] = 0                                         # rows without nonzeros in the second GEMM
    mask = torch.ones((tm, vec), dtype=torch.bool)
    mask[0] = False                                   # a fully masked row (with nonzeros)
    mask[1] = False                                   # a fully masked row without nonzeros
    mask[2, ::2] = False                              # partially masked, without nonzeros
    mask[3, 1] = False                                # partially masked, with nonzeros
    commands = (
        TileGemm(0, Operand.bitmap(a0), Operand.dense(b0)),
        TileGemm(0, Operand.bitmap(a1), Operand.dense(b1), mask, accumulate=True),
        Drain(0),
        TileGemm(1, Operand.bitmap(a1), Operand.dense(b1), mask),
        TileGemm(1, Operand.bitmap(a0), Operand.dense(b0), accumulate=True),
        Drain(1, shift=2, out_bits=4, relu=True),
        # Accumulator 0 again, not accumulating: its rows without nonzeros must read 0, not the
        # sums the first tile left there.
        TileGemm(0, Operand.bitmap(a1), Operand.dense(b1)),
        Drain(0),
    )
    program = Program(commands, params.acc_bits, tm, vec, tk)
    want = evaluate(program)
    # The cases the test is about: a masked row and an unmasked element of a partially masked
    # empty row after a live first GEMM; empty rows of a reused accumulator.
    assert not want.tiles[0][0].any() and want.tiles[0][2, 1]
    assert not want.tiles[2][1:3].any()
    for stall in (0.0, 0.3):
        drains, _ = run_vector_core(program, params, seed=9, stall=stall)
        for (tile, mask_bits), ref_tile, ref_mask in zip(drains, want.tiles, want.masks, strict=True):
            assert (tile == ref_tile).all(), f"{tile}\nref\n{ref_tile}"
            assert (mask_bits == ref_mask).all()


@pytest.mark.parametrize(("mode", "density", "a_format"), [
    ("a", 0.3, "bitmap"), ("a", 0.05, "bitmap"), ("all", 0.4, "bitmap"), ("mask", 0.3, "bitmap"),
    ("dense", 1.0, "dense"), ("a", 0.0, "bitmap"),
])
@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("bus_elems", [4, 8])
def test_cycle_model_equals_the_rtl(mode, density, a_format, sparse, bus_elems):
    """ref.vector_cycle_model predicts the core's cycles exactly when no stream stalls (also with a
    bus wider than a B row)."""
    params = dataclasses.replace(SMALL, sparse=sparse, bus_elems=bus_elems)
    seed = 500 + int(1000 * density)
    print(f"seed {seed}")
    program = random_program(mode=mode, density=density, tile_m=params.tile_m, tile_n=params.vector,
                             tile_k=params.tile_k, operand_bits=params.operand_bits, acc_bits=params.acc_bits,
                             n_gemms=4, k_tiles=3, seed=seed, a_format=a_format, b_format="dense")
    _, measured = run_vector_core(program, params, seed=seed, stall=0.0)
    predicted = predict_vector_cycles(program, lanes=params.lanes, vector=params.vector, tile_m=params.tile_m,
                                      tile_k=params.tile_k, bus_elems=params.bus_elems,
                                      operand_bits=params.operand_bits, sparse=sparse)
    assert predicted.total == measured["last"] + 1
    assert predicted.issued * params.vector == measured["macs_issued"]


@pytest.mark.parametrize("target", ["generic", "ecp5"])
def test_vector_core_verilog_is_lint_clean(tmp_path, target):
    """verilator -Wall: every warning covered by the project's waivers (none on a top port)."""
    from amaranth.back import verilog

    from hw.mac import MULT18X18D_MODEL
    from sim.lint import lint_module

    core = VectorCore(dataclasses.replace(SMALL, target=target))
    path = tmp_path / "vector_core.v"
    path.write_text(verilog.convert(core, name="vector_core", emit_src=False), encoding="utf-8")
    ports = {"clk", "rst"} | {name for name in path.read_text().split("module vector_core(")[1].split(");")[0]
                               .replace("\n", " ").replace(" ", "").split(",")}
    sources = [path, MULT18X18D_MODEL] if target == "ecp5" else [path]
    report = lint_module(sources, "vector_core", ports)
    assert report.clean, report.summary()


def test_gemm_waits_for_the_drain_of_its_accumulator():
    """A GEMM whose operands are stored while a drain still reads its accumulator must wait: it
    would clear the rows the drain has yet to read. A drain under a GEMM on the other accumulator
    overlaps it (fewer cycles than running them one after the other)."""
    params = SMALL
    gen = torch.Generator().manual_seed(11)
    print("seed 11")
    tm, vec, tk = params.tile_m, params.vector, params.tile_k
    dense_a = torch.randint(1, 8, (tm, tk), generator=gen)
    b = torch.randint(-8, 8, (tk, vec), generator=gen)
    sparse_a = torch.zeros((tm, tk), dtype=torch.int64)
    sparse_a[:, 0] = 3                                    # one nonzero per row: loads in few beats
    long_gemms = [TileGemm(0, Operand.dense(dense_a), Operand.dense(b), accumulate=i > 0) for i in range(3)]
    program = Program((*long_gemms, Drain(0), TileGemm(0, Operand.bitmap(sparse_a), Operand.dense(b)), Drain(0)),
                      params.acc_bits, tm, vec, tk)
    want = evaluate(program)
    drains, _ = run_vector_core(program, params, seed=3, stall=0.0)
    for (tile, _), ref_tile in zip(drains, want.tiles, strict=True):
        assert (tile == ref_tile).all(), f"{tile}\nref\n{ref_tile}"
    # Two output tiles on alternating accumulators: the first drain overlaps the second tile's GEMM.
    overlap = Program((long_gemms[0], Drain(0), TileGemm(1, Operand.dense(dense_a), Operand.dense(b)), Drain(1)),
                      params.acc_bits, tm, vec, tk)
    serial = Program((long_gemms[0], Drain(0), TileGemm(0, Operand.dense(dense_a), Operand.dense(b)), Drain(0)),
                     params.acc_bits, tm, vec, tk)
    _, fast = run_vector_core(overlap, params, seed=3, stall=0.0)
    _, slow = run_vector_core(serial, params, seed=3, stall=0.0)
    assert fast["last"] < slow["last"]


@pytest.mark.parametrize(("sparse", "bus_elems"), [(True, 4), (False, 4), (True, 8), (False, 8)])
def test_ragged_tiles_send_only_their_rows_and_k(sparse, bus_elems):
    """Lowered GEMMs whose edges do not fill the tiles: the core is sent only the rows and k that
    carry work (ref.vector_extent) and still equals ref, cycle-exactly predicted; accumulation over
    K tiles with a mask that covers padded rows."""
    from ref.contract.lowering import lower_gemm
    from ref.vector_extent import tile_extent

    params = dataclasses.replace(SMALL, sparse=sparse, bus_elems=bus_elems)
    gen = torch.Generator().manual_seed(23)
    print("seed 23")
    a = torch.randint(-8, 8, (10, 13), generator=gen) * (torch.rand((10, 13), generator=gen) < 0.5)
    b = torch.randint(-8, 8, (13, 7), generator=gen)
    mask = torch.rand((10, 7), generator=gen) < 0.7
    program = lower_gemm(a, b, out_mask=mask, a_format="bitmap" if sparse else "dense", b_format="dense",
                         tiles=(params.tile_m, params.vector, params.tile_k), acc_bits=params.acc_bits,
                         drain=Drain(0, shift=1, out_bits=5, relu=True))
    extents = [tile_extent(c, k_step=max(1, bus_elems // params.vector)) for c in program.commands
               if isinstance(c, TileGemm)]
    assert min(r for r, _ in extents) < params.tile_m and min(k for _, k in extents) < params.tile_k
    want = evaluate(program)
    for stall in (0.0, 0.3):
        drains, measured = run_vector_core(program, params, seed=4, stall=stall)
        for (tile, mask_bits), ref_tile, ref_mask in zip(drains, want.tiles, want.masks, strict=True):
            assert (tile == ref_tile).all(), f"{tile}\nref\n{ref_tile}"
            assert (mask_bits == ref_mask).all()
        if stall == 0.0:
            predicted = predict_vector_cycles(program, lanes=params.lanes, vector=params.vector,
                                              tile_m=params.tile_m, tile_k=params.tile_k, bus_elems=bus_elems,
                                              operand_bits=params.operand_bits, sparse=sparse)
            assert predicted.total == measured["last"] + 1
