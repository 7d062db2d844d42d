"""The sparse core in the Amaranth simulator: results against ``ref``, counters, dense mode, stalls.

Fast checks of the RTL before any Verilog is written; the cocotb tests (tests/sim/test_core_cosim.py)
run the generated Verilog on Icarus and Verilator.
"""

from __future__ import annotations

import dataclasses
import random
from statistics import NormalDist

import pytest
import torch
from amaranth.sim import Simulator

from hw.config import preset
from hw.layouts import ROUNDING_CODES
from hw.requantize import Requantizer
from ref.contract import Drain, Operand, Program, PruneSetting, TileGemm, drain_keep_mask, evaluate
from ref.contract.random_programs import random_program, random_resprop_program
from ref.lfsr import DEFAULT_TAPS, GaloisLFSR
from ref.numerics import requantize
from ref.stochastic_prune_codes import mean_deviation_bound
from ref.topk_codes import apply_threshold
from sim.core_amaranth import run_core_amaranth, run_core_passes
from sim.core_program import ProgramMismatch, acc_buffers, encode_program, mask_beats_from_drain


def _program(cfg, mode, density, seed, **kw):
    return random_program(mode=mode, density=density, tile_m=cfg.tile_m, tile_n=cfg.tile_n, tile_k=cfg.tile_k,
                          operand_bits=cfg.operand_bits, acc_bits=cfg.acc_bits, seed=seed, **kw)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("mode", ["a", "b", "mask", "all", "dense"])
def test_tiny_core_matches_ref_under_stalls(mode, sparse):
    cfg = dataclasses.replace(preset("tiny"), sparse=sparse)
    mask_bits, mask_elems = [], 0
    for seed, density in ((11, 0.0), (12, 0.3), (13, 0.7), (14, 1.0)):
        print(f"mode={mode} sparse={sparse} density={density} seed={seed}")
        program = _program(cfg, mode, density, seed)
        expected = evaluate(program)
        run = run_core_amaranth(program, cfg, seed=seed, stall=0.3)
        assert len(run.tiles) == len(expected.tiles)
        for got, want in zip(run.tiles, expected.tiles, strict=True):
            assert torch.equal(got, want)
        for got, want in zip(run.masks, expected.masks, strict=True):  # the ReLU mask on the result path
            assert torch.equal(got, want)
        mask_bits += [int(m.sum()) for m in run.masks]
        mask_elems += sum(m.numel() for m in run.masks)
        dense = sum(c.dense_macs for c in expected.counts)
        effectual = sum(c.effectual_macs for c in expected.counts)
        assert run.counters["macs_dense"] == dense
        assert run.counters["macs_issued"] == (effectual if sparse else dense)
        assert sum(run.counters["lane_busy"]) == run.counters["macs_issued"]
    # The mask comparison was not vacuous: the drains had both set and clear mask bits.
    assert 0 < sum(mask_bits) < mask_elems, mask_bits


@pytest.mark.parametrize("preset_name", ["tiny", "default"])
def test_drained_mask_is_the_next_gemms_output_mask_as_is(preset_name):
    """A forward drain's ReLU mask bits, concatenated per row, are bit for bit the mask rows the core
    takes for a masked GEMM (Sarma et al.: the FWD mask becomes the next layer's BWI output mask),
    and a GEMM fed those beats equals ref with ``out_mask = drain_mask``."""
    cfg = preset(preset_name)
    seed = 31
    print(f"preset={preset_name} seed={seed}")
    gen = torch.Generator().manual_seed(seed)
    lim = 1 << (cfg.operand_bits - 1)
    a = torch.randint(-lim + 1, lim, (cfg.tile_m, cfg.tile_k), generator=gen)
    b = torch.randint(-lim + 1, lim, (cfg.tile_k, cfg.tile_n), generator=gen)
    fwd = Program((TileGemm(0, Operand.bitmap(a), Operand.dense(b)),
                   Drain(0, shift=cfg.acc_bits // 3, out_bits=cfg.operand_bits, relu=True)),
                  cfg.acc_bits, cfg.tile_m, cfg.tile_n, cfg.tile_k)
    run = run_core_amaranth(fwd, cfg, seed=seed)
    want = evaluate(fwd)
    assert torch.equal(run.tiles[0], want.tiles[0]) and torch.equal(run.masks[0], want.masks[0])
    assert 0 < int(want.masks[0].sum()) < want.masks[0].numel()
    mask_beats = mask_beats_from_drain(run.beats[0], cfg)
    # The same GEMM with that output mask, encoded by the host from ref's mask: its last data beats.
    masked = Program((TileGemm(0, Operand.bitmap(a), Operand.dense(b), out_mask=want.masks[0]), Drain(0)),
                     cfg.acc_bits, cfg.tile_m, cfg.tile_n, cfg.tile_k)
    encoded = encode_program(masked, cfg)
    assert list(encoded.data[-len(mask_beats):]) == mask_beats
    # Feed the RTL's own mask beats (not the host encoding) to the core.
    data = list(encoded.data[:-len(mask_beats)]) + mask_beats
    (tile,) = run_core_amaranth(masked, cfg, seed=seed, data=data).tiles
    assert torch.equal(tile, evaluate(masked).tiles[0])


def test_sparse_core_spends_cycles_only_on_effectual_work():
    """At 10 % A density the sparse core needs far fewer cycles than the dense core (same program)."""
    cfg = preset("tiny")
    program = _program(cfg, "a", 0.1, 5, n_gemms=4)
    sparse = run_core_amaranth(program, cfg)
    dense = run_core_amaranth(program, dataclasses.replace(cfg, sparse=False))
    eff = sum(c.effectual_macs for c in evaluate(program).counts)
    # Lanes issue one MAC per cycle: the dense core can never beat dense_macs / lanes cycles.
    assert dense.cycles >= dense.counters["macs_dense"] // cfg.lanes
    assert sparse.cycles >= eff // cfg.lanes
    assert sparse.cycles < dense.cycles / 2


def test_masked_output_clears_an_accumulated_value():
    """Accumulating GEMM with a mask: masked outputs read 0 even though the first GEMM wrote them."""
    cfg = preset("tiny")
    ones = torch.ones(cfg.tile_m, cfg.tile_k, dtype=torch.int64)
    b = torch.ones(cfg.tile_k, cfg.tile_n, dtype=torch.int64)
    mask = torch.zeros(cfg.tile_m, cfg.tile_n, dtype=torch.bool)
    mask[0, 1] = mask[2, 3] = True
    program = Program((TileGemm(0, Operand.dense(ones), Operand.dense(b)),
                       TileGemm(0, Operand.bitmap(ones), Operand.dense(b), out_mask=mask, accumulate=True),
                       Drain(0)), cfg.acc_bits, cfg.tile_m, cfg.tile_n, cfg.tile_k)
    (tile,) = run_core_amaranth(program, cfg).tiles
    want = torch.where(mask, 2 * cfg.tile_k, 0)
    assert torch.equal(tile, want)


def test_requantizer_matches_ref_numerics():
    acc_bits = 10
    rng = random.Random(7)
    print("seed=7")
    values = [0, 1, -1, 2, -2, 3, -3, 5, -5, (1 << (acc_bits - 1)) - 1, -(1 << (acc_bits - 1))]
    values += [rng.randint(-(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1) for _ in range(40)]
    cases = []
    for shift in (0, 1, 2, 3, acc_bits - 1, acc_bits, acc_bits + 1, acc_bits + 2, 62):
        for out_bits in (0, 2, 3, 8, acc_bits, 32):
            for rounding in ROUNDING_CODES:
                for relu in (False, True):
                    if out_bits == 0 and shift:
                        continue
                    cases.append((shift, out_bits, rounding, relu))
    dut = Requantizer(acc_bits)
    failures = []

    async def bench(ctx):
        ctx.set(dut.en, 1)
        for shift, out_bits, rounding, relu in cases:
            ctx.set(dut.i_shift, shift)
            ctx.set(dut.i_out_bits, out_bits)
            ctx.set(dut.i_rounding, ROUNDING_CODES[rounding])
            ctx.set(dut.i_relu, relu)
            t = torch.tensor(values, dtype=torch.int64)
            want = t if out_bits == 0 else requantize(t, shift, out_bits, rounding)
            if relu:
                want = want.clamp(min=0)
            for v, w in zip(values, want.tolist(), strict=True):
                ctx.set(dut.i_value, v)
                await ctx.tick().repeat(2)  # latency 2: the value's code appears after the second edge
                got = ctx.get(dut.o_value)
                positive = ctx.get(dut.o_mask)
                if got != w or positive != (w > 0):
                    failures.append((v, shift, out_bits, rounding, relu, got, w, positive))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert failures == []


def test_requantizer_topk_mask_is_swat_keep_rule():
    """With ``i_topk`` the mask bit is |code| >= thr (ties kept), written out here with
    ``ref.topk_codes.apply_threshold``; the code itself is unchanged. Thresholds from 0 (keep all)
    to above the largest code (keep none), with and without ReLU, saturating shifts included."""
    acc_bits, operand_bits = 10, 4
    rng = random.Random(9)
    print("seed=9")
    values = [0, 1, -1, 7, -7, 8, -8, 40, -40, (1 << (acc_bits - 1)) - 1, -(1 << (acc_bits - 1))]
    values += [rng.randint(-(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1) for _ in range(30)]
    dut = Requantizer(acc_bits, code_bits=operand_bits, thr_bits=operand_bits)
    failures, kept, dropped = [], 0, 0

    async def bench(ctx):
        nonlocal kept, dropped
        ctx.set(dut.en, 1)
        ctx.set(dut.i_topk, 1)
        ctx.set(dut.i_out_bits, operand_bits)
        for shift in (0, 2, 4):
            for relu in (False, True):
                for thr in range(1 << operand_bits):
                    ctx.set(dut.i_shift, shift)
                    ctx.set(dut.i_relu, relu)
                    ctx.set(dut.i_thr_m1, (thr - 1) % (1 << operand_bits))
                    ctx.set(dut.i_thr_zero, thr == 0)
                    want = requantize(torch.tensor(values, dtype=torch.int64), shift, operand_bits, "half_away")
                    if relu:
                        want = want.clamp(min=0)
                    keep, _ = apply_threshold(want.tolist(), thr)
                    for v, w, k in zip(values, want.tolist(), keep, strict=True):
                        ctx.set(dut.i_value, v)
                        await ctx.tick().repeat(2)
                        got, bit = ctx.get(dut.o_value), ctx.get(dut.o_mask)
                        kept, dropped = kept + k, dropped + (not k)
                        if got != w or bit != k:
                            failures.append((v, shift, relu, thr, got, w, bit, k))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert failures == []
    assert kept > 0 and dropped > 0


@pytest.mark.parametrize("sparse", [True, False])
def test_result_path_topk_matches_ref(sparse):
    """``topk`` drains (SWAT's comparator on the result path): every code and mask bit equals ref's,
    for a mid threshold (the median magnitude of the compared codes), 1, above every code (8 > qmax)
    and 0; the other drains keep their ReLU masks."""
    cfg = dataclasses.replace(preset("tiny"), sparse=sparse)
    differs = 0
    for seed, (mode, density, thr) in enumerate((("a", 0.7, None), ("all", 1.0, 1), ("b", 0.5, 8), ("dense", 1.0, 0))):
        print(f"mode={mode} sparse={sparse} density={density} threshold={thr} seed={30 + seed}")
        program = _program(cfg, mode, density, 30 + seed, n_gemms=4, topk_threshold=thr or 0)
        if thr is None:  # a mid threshold: the median magnitude of the comparator's codes
            codes = torch.cat([t.flatten() for c, t in zip([c for c in program.commands if isinstance(c, Drain)],
                                                          evaluate(program).tiles, strict=True) if c.topk])
            program = dataclasses.replace(program, topk_threshold=int(codes.abs().median()))
        expected = evaluate(program)
        run = run_core_amaranth(program, cfg, seed=30 + seed, stall=0.3)
        drains = [c for c in program.commands if isinstance(c, Drain)]
        for cmd, got, want, got_mask, want_mask in zip(drains, run.tiles, expected.tiles, run.masks, expected.masks,
                                                       strict=True):
            assert torch.equal(got, want) and torch.equal(got_mask, want_mask)
            if cmd.topk:
                assert torch.equal(want_mask, drain_keep_mask(want, program.topk_threshold))
                differs += int((want_mask != (want > 0)).sum())
    assert differs > 0  # the keep bits differed from the ReLU bits somewhere: the check is not vacuous


def test_program_that_does_not_fit_the_core_is_rejected_with_the_field():
    cfg = preset("tiny")
    program = random_program(mode="a", density=0.5, tile_m=cfg.tile_m, tile_n=cfg.tile_n, tile_k=2 * cfg.tile_k,
                             operand_bits=cfg.operand_bits, acc_bits=cfg.acc_bits, seed=1)
    with pytest.raises(ProgramMismatch, match="program tile_k = 16 but the core has tile_k = 8"):
        encode_program(program, cfg)
    wide = _program(dataclasses.replace(cfg, operand_bits=8, max_reduction=64), "dense", 1.0, 2)
    with pytest.raises(ProgramMismatch, match="acc_bits"):
        encode_program(wide, cfg)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("mode", ["a", "all", "dense"])
def test_result_path_pruner_matches_ref(mode, sparse):
    """Pruning drains (Dai et al. on the result path): every code, mask bit and the sum of |g| equal
    ref's, with the LFSR draws running on across drains and skipping the unpruned drains; tau = 0
    bypasses; a saturating tau (above qmax) substitutes qmax."""
    cfg = dataclasses.replace(preset("tiny"), sparse=sparse)
    qmax = (1 << (cfg.operand_bits - 1)) - 1
    changed = 0
    for seed, density, tau in ((21, 0.7, 3), (22, 1.0, 5), (23, 0.5, 0), (24, 0.9, qmax + 4), (25, 1.0, 1)):
        print(f"mode={mode} sparse={sparse} density={density} tau={tau} seed={seed}")
        setting = PruneSetting(tau=tau, seed=1 + seed * 7 % 250, lfsr_width=cfg.lfsr_width, lfsr_taps=cfg.lfsr_taps)
        program = _program(cfg, mode, density, seed, n_gemms=4, prune=setting)
        expected = evaluate(program)
        run = run_core_amaranth(program, cfg, seed=seed, stall=0.3)
        for got, want in zip(run.tiles, expected.tiles, strict=True):
            assert torch.equal(got, want)
        for got, want in zip(run.masks, expected.masks, strict=True):
            assert torch.equal(got, want)
        assert run.prune_sum == expected.prune_sum
        unpruned = evaluate(dataclasses.replace(program, prune=None, commands=tuple(
            dataclasses.replace(c, prune=False) if isinstance(c, Drain) else c for c in program.commands)))
        changed += sum(int((a != b).sum()) for a, b in zip(expected.tiles, unpruned.tiles, strict=True))
        if tau == 0:
            assert all(torch.equal(a, b) for a, b in zip(expected.tiles, unpruned.tiles, strict=True))
    assert changed > 0 and expected.prune_sum > 0  # the pruner changed codes: the comparison is not vacuous


def test_result_path_pruner_outputs_are_unbiased():
    """The core's own pruned drains are unbiased (Dai et al.): E[g_hat] = g within the
    discrete-uniform bias bound, over 3000 draws per code.

    One GEMM puts every code of ``values`` into a tiny-core tile (A = identity, B = the codes), and
    750 pruning drains read that tile again (a drain leaves the accumulator as it is), each with
    fresh LFSR draws (16-bit, so the draws do not repeat within the run). Tolerance:
    ``mean_deviation_bound`` with z = 4.0 per code (false alarm below 4 * 6.3e-5). The outputs are
    also checked against ref's ``prune_codes`` draw for draw, and the same statistic on outputs of
    a deliberately biased rule (the draws cut to their top 3 bits) from the same draws must fail.
    """
    cfg = dataclasses.replace(preset("tiny"), lfsr_width=16, lfsr_taps=DEFAULT_TAPS[16])
    tau, drains, seed = 7, 750, 0x5EED
    values = [1, -2, 3, -5]  # all below tau = qmax, so outputs are 0 or sign(g) * tau
    print(f"tau={tau} drains={drains} lfsr seed={seed:#x}")
    b = torch.tensor([[values[(r + c) % len(values)] for c in range(cfg.tile_n)] for r in range(cfg.tile_k)])
    a = torch.eye(cfg.tile_m, cfg.tile_k, dtype=torch.int64)
    tile = a @ b  # each code appears tile_m * tile_n / len(values) times per drain
    drain = Drain(acc=0, out_bits=cfg.operand_bits, prune=True)
    program = Program(commands=(TileGemm(0, Operand.dense(a), Operand.dense(b)),) + (drain,) * drains,
                      acc_bits=cfg.acc_bits, tile_m=cfg.tile_m, tile_n=cfg.tile_n, tile_k=cfg.tile_k,
                      prune=PruneSetting(tau=tau, seed=seed, lfsr_width=cfg.lfsr_width, lfsr_taps=cfg.lfsr_taps))
    run = run_core_amaranth(program, cfg, seed=3, stall=0.1)
    assert all(torch.equal(got, want) for got, want in zip(run.tiles, evaluate(program).tiles, strict=True))

    z = -NormalDist().inv_cdf(6.3e-5 / 2)
    assert round(z, 1) == 4.0
    outs = torch.stack(run.tiles).reshape(drains, -1)
    draws = torch.tensor(GaloisLFSR(cfg.lfsr_width, cfg.lfsr_taps, seed).draw_many(outs.numel()).tolist())
    coarse = (draws >> 13) << 13
    biased = torch.where((tile.abs().reshape(1, -1).expand(drains, -1).reshape(-1) << 16) < coarse * tau,
                         0, tau * tile.sign().reshape(1, -1).expand(drains, -1).reshape(-1)).reshape(drains, -1)

    def failures(outputs: torch.Tensor) -> list[str]:
        found = []
        for g in values:
            mine = outputs[:, (tile == g).reshape(-1)].reshape(-1)
            assert mine.numel() == 3000
            bound = mean_deviation_bound(g, tau, lfsr_width=cfg.lfsr_width, count=mine.numel(), z=z)
            mean = mine.double().mean().item()
            if abs(mean - g) > bound:
                found.append(f"g={g}: mean {mean:.3f} off by {abs(mean - g):.3f} > {bound:.3f}")
        return found

    assert set(outs.unique().tolist()) <= {0, tau, -tau}
    assert failures(outs) == []
    assert len(failures(biased)) >= 2  # the statistic can fail


@pytest.mark.parametrize("sparse", [True, False])
def test_result_path_resprop_matches_ref(sparse):
    """``resprop`` drains (ReSprop's difference on the result path), with P written through the
    core's P port and random stalls: every S and mask bit, the nonzero count, the exponent after the
    x2 / /2 step and the stored P read back after the next load equal ref's. The passes cover a
    sample straddling row tiles with ragged columns (about half kept against a 90 % target: the
    exponent steps down), one row per sample storing none with T = floor(2**-1) = 0 (steps up), a
    dense pass (kept), a threshold ``qmax * 2**3`` above every |D| (the core clamps T), and a pass
    whose codes saturate both ways (the difference is decided beside the saturation, per case)."""
    cfg = dataclasses.replace(preset("tiny"), sparse=sparse)
    tm, tn, ob = cfg.tile_m, cfg.tile_n, cfg.operand_bits
    plans = ((3, tm + 1, tn + 1, 1, None, 0, 9000, False, ob - 1, 0),
             (tm + 2, 1, tn - 1, tm + 2, 1, -1, 1500, False, ob - 1, 0),
             (2, 2, tn, 1, 0, 2, 0, True, ob, 0), (2, tm // 2 + 1, tn, 0, (1 << ob) - 1, 3, 0, False, ob, 0),
             (3, tm + 1, tn + 1, 2, None, 0, 9000, False, ob - 1, 2))
    kept = dropped = 0
    steps = []
    for i, (n, r, c, j, mant, exp, target, dense, out_bits, saturate_bits) in enumerate(plans):
        seed = 60 + i
        program = random_resprop_program(n_samples=n, rows_per_sample=r, cols=c, tile_m=tm, tile_n=tn,
                                         tile_k=cfg.tile_k, operand_bits=ob, acc_bits=cfg.acc_bits, out_bits=out_bits,
                                         sample=j, mant=mant, exp=exp, target_cp=target, dense=dense, k_tiles=2,
                                         saturate_bits=saturate_bits, seed=seed)
        print(f"n={n} r={r} c={c} j={j} threshold={program.resprop.mant}*2**{exp} target={target} dense={dense} "
              f"saturate_bits={saturate_bits} seed={seed}")
        expected = evaluate(program)
        if saturate_bits:
            # The dense pass of the same program emits the codes g themselves.
            codes = evaluate(dataclasses.replace(program, resprop=dataclasses.replace(program.resprop, dense=True)))
            qmax = (1 << (out_bits - 1)) - 1
            assert (codes.output == qmax).any() and (codes.output == -qmax).any()
            assert ((codes.output.abs() < qmax) & (codes.output != 0)).any()
        run = run_core_amaranth(program, cfg, seed=seed, stall=0.3)
        for got, want, got_mask, want_mask in zip(run.tiles, expected.tiles, run.masks, expected.masks, strict=True):
            assert torch.equal(got, want) and torch.equal(got_mask, want_mask)
        assert run.resprop_nnz == expected.resprop_nnz
        assert run.resprop_exp_next == expected.resprop_exp_after
        steps.append(expected.resprop_exp_after - exp)
        assert torch.equal(run.resprop_p, expected.resprop_p)
        if not dense and mant is None:
            kept, dropped = expected.resprop_nnz, int((expected.output == 0).sum())
        stored_any = j < n
        assert torch.equal(expected.resprop_p, program.resprop.p) != stored_any
    assert kept > 0 and dropped > 0   # the median threshold kept some differences and dropped others
    assert steps[:3] == [-1, 1, 0]    # the controller stepped both ways and held on the dense pass


def test_resprop_program_that_does_not_fit_is_rejected_with_the_field():
    cfg = preset("tiny")   # 64-code P banks: 32 words of 2 codes; rows padded to tile_n = 4 columns

    def make(**kw):
        args = dict(n_samples=2, rows_per_sample=4, cols=4, tile_m=cfg.tile_m, tile_n=cfg.tile_n, tile_k=cfg.tile_k,
                    operand_bits=cfg.operand_bits, acc_bits=cfg.acc_bits, out_bits=cfg.operand_bits, sample=0,
                    mant=1, seed=5) | kw
        return random_resprop_program(**args)

    encode_program(make(rows_per_sample=16), cfg)   # 16 rows x 2 words: exactly one bank
    with pytest.raises(ProgramMismatch, match="resprop_max_elems = 64"):
        encode_program(make(rows_per_sample=17), cfg)
    with pytest.raises(ProgramMismatch, match="resprop_max_elems = 64"):
        encode_program(make(rows_per_sample=9, cols=5), cfg)   # 5 columns take two tiles: 4 words a row
    with pytest.raises(ProgramMismatch, match="resprop_max_batch = 8"):
        encode_program(make(n_samples=9, rows_per_sample=1), cfg)
    with pytest.raises(ProgramMismatch, match="mant = 16"):
        encode_program(make(mant=16), cfg)
    good = make()
    wide = dataclasses.replace(good, commands=tuple(dataclasses.replace(c, out_bits=cfg.operand_bits + 1)
                                                    if isinstance(c, Drain) else c for c in good.commands))
    with pytest.raises(ProgramMismatch, match="out_bits <= operand_bits"):
        encode_program(wide, cfg)
    with pytest.raises(ProgramMismatch, match="resprop p"):
        encode_program(dataclasses.replace(good, resprop=dataclasses.replace(good.resprop, p=good.resprop.p * 4)), cfg)


@pytest.mark.parametrize("sparse", [True, False])
def test_resprop_p_stays_on_chip_between_passes(sparse):
    """Four ReSprop passes on one core, P written through the port only before the first: a dense
    pass storing sample 1; a sparse pass reading the P the core kept (and storing sample 0); a pass
    storing none; a pass reading the P kept through it. Each pass equals ref run with the P that
    ref's previous pass left (``ProgramResult.resprop_p``), under random stalls."""
    cfg = dataclasses.replace(preset("tiny"), sparse=sparse)
    tm, tn, ob = cfg.tile_m, cfg.tile_n, cfg.operand_bits
    n = 3
    plans = ((1, True), (0, False), (n, False), (2, False))   # (stored sample, dense)
    programs, expected, p = [], [], None
    for i, (j, dense) in enumerate(plans):
        program = random_resprop_program(n_samples=n, rows_per_sample=tm + 1, cols=tn + 1, tile_m=tm, tile_n=tn,
                                         tile_k=cfg.tile_k, operand_bits=ob, acc_bits=cfg.acc_bits, out_bits=ob - 1,
                                         sample=j, mant=0, dense=dense, seed=80 + i)
        if p is not None:   # the P the previous pass left on chip, and the median |D| against it
            at_zero = dataclasses.replace(program, resprop=dataclasses.replace(program.resprop, p=p))
            thr = int(evaluate(at_zero).output.abs().flatten().median())
            program = dataclasses.replace(at_zero, resprop=dataclasses.replace(at_zero.resprop, mant=thr))
        result = evaluate(program)
        print(f"pass {i}: sample={j} dense={dense} threshold={program.resprop.mant} seed={80 + i} "
              f"nnz={result.resprop_nnz}")
        programs.append(program)
        expected.append(result)
        p = result.resprop_p
    assert torch.equal(programs[3].resprop.p, programs[2].resprop.p)   # the third pass stored none
    runs = run_core_passes(programs, cfg, write_p=[True, False, False, False], seed=90, stall=0.3)
    for run, want in zip(runs, expected, strict=True):
        for got, exp, got_mask, exp_mask in zip(run.tiles, want.tiles, run.masks, want.masks, strict=True):
            assert torch.equal(got, exp) and torch.equal(got_mask, exp_mask)
        assert run.resprop_nnz == want.resprop_nnz


@pytest.mark.parametrize("fields", [
    dict(lanes=2, tile_m=4, tile_n=6, tile_k=8),
    dict(lanes=4, tile_m=5, tile_n=12, tile_k=24, operand_bits=6, bus_elems=8, resprop_max_elems=256),
], ids=["lanes2_n6", "lanes4_n12"])
def test_core_with_tile_n_not_a_power_of_two_matches_ref(fields):
    """Issue 19: whenever ``tile_n`` (so ``tile_n / lanes``) is not a power of two, the sparse core
    drained wrong values. The loader wrote the lanes' B-bitmap copies at ``set * tile_n + n`` and
    the lanes read them at ``Cat(n, set)`` (``set * 2**ceil(log2 tile_n) + n``), so every GEMM on
    buffer set 1 used other columns' bitmaps (or none). Every operand mode with a pruning and a
    top-K drain, two GEMMs per set at least, and a ReSprop pass with ragged columns, under stalls."""
    cfg = dataclasses.replace(preset("tiny"), **fields)
    setting = PruneSetting(tau=3, seed=5, lfsr_width=cfg.lfsr_width, lfsr_taps=cfg.lfsr_taps)
    for seed, (mode, density) in enumerate((("b", 0.5), ("all", 0.7), ("a", 0.4), ("mask", 1.0))):
        print(f"config={fields} mode={mode} density={density} seed={seed}")
        program = _program(cfg, mode, density, seed, n_gemms=3, prune=setting, topk_threshold=2)
        expected = evaluate(program)
        run = run_core_amaranth(program, cfg, seed=seed, stall=0.3)
        for got, want, got_mask, want_mask in zip(run.tiles, expected.tiles, run.masks, expected.masks, strict=True):
            assert torch.equal(got, want) and torch.equal(got_mask, want_mask)
        assert run.prune_sum == expected.prune_sum
        assert run.counters["macs_issued"] == sum(c.effectual_macs for c in expected.counts)
    tm, tn, ob = cfg.tile_m, cfg.tile_n, cfg.operand_bits
    program = random_resprop_program(n_samples=3, rows_per_sample=tm + 1, cols=tn + 1, tile_m=tm, tile_n=tn,
                                     tile_k=cfg.tile_k, operand_bits=ob, acc_bits=cfg.acc_bits, out_bits=ob - 1,
                                     sample=1, k_tiles=2, seed=7)
    expected = evaluate(program)
    run = run_core_amaranth(program, cfg, seed=7, stall=0.3)
    for got, want, got_mask, want_mask in zip(run.tiles, expected.tiles, run.masks, expected.masks, strict=True):
        assert torch.equal(got, want) and torch.equal(got_mask, want_mask)
    assert run.resprop_nnz == expected.resprop_nnz and run.resprop_exp_next == expected.resprop_exp_after
    assert torch.equal(run.resprop_p, expected.resprop_p)


@pytest.mark.parametrize(("fields", "n_samples"), [
    (dict(resprop_max_batch=1), 1),
    (dict(tile_m=12, resprop_max_batch=4), 4),
], ids=["batch1", "batch4_tile_m12"])
def test_resprop_padding_rows_past_a_full_batch(fields, n_samples):
    """Issue 19: the drain's sample counter was as wide as ``resprop_max_batch`` and counted on
    through the padding rows past the batch, so it wrapped back into it (N = 1: the tile's third
    row was taken for sample 0; N = 4 with 12-row tiles: rows 8..11) and those padding rows emitted
    S, counted and stored. One row per sample (a linear layer's dY), the last sample stored."""
    cfg = dataclasses.replace(preset("tiny"), **fields)
    program = random_resprop_program(n_samples=n_samples, rows_per_sample=1, cols=cfg.tile_n + 1, tile_m=cfg.tile_m,
                                      tile_n=cfg.tile_n, tile_k=cfg.tile_k, operand_bits=cfg.operand_bits,
                                      acc_bits=cfg.acc_bits, out_bits=cfg.operand_bits - 1, sample=n_samples - 1,
                                      seed=11)
    print(f"config: tiny with {fields}, n_samples={n_samples} rows_per_sample=1 seed=11")
    expected = evaluate(program)
    run = run_core_amaranth(program, cfg, seed=1, stall=0.3)
    for got, want, got_mask, want_mask in zip(run.tiles, expected.tiles, run.masks, expected.masks, strict=True):
        assert torch.equal(got, want) and torch.equal(got_mask, want_mask)
    assert run.resprop_nnz == expected.resprop_nnz and run.resprop_exp_next == expected.resprop_exp_after
    assert torch.equal(run.resprop_p, expected.resprop_p)


@pytest.mark.parametrize("sparse", [True, False])
def test_core_with_one_accumulator_matches_ref(sparse):
    """Issue 19: ``accumulators = 1`` generated, but its regression sent ``acc = 1`` (the lowering
    alternates two accumulators). Programs for this core use ``acc_buffers(config) = 1``: every
    output tile in accumulator 0, each drained before the next tile's first GEMM clears it, with
    pruning and top-K drains, under stalls."""
    cfg = dataclasses.replace(preset("tiny"), accumulators=1, sparse=sparse)
    assert acc_buffers(cfg) == 1 and acc_buffers(preset("tiny")) == 2
    setting = PruneSetting(tau=3, seed=9, lfsr_width=cfg.lfsr_width, lfsr_taps=cfg.lfsr_taps)
    for seed, (mode, density) in enumerate((("all", 0.6), ("b", 1.0)), start=40):
        print(f"accumulators=1 sparse={sparse} mode={mode} density={density} seed={seed}")
        program = _program(cfg, mode, density, seed, n_gemms=4, prune=setting, topk_threshold=2,
                           acc_buffers=acc_buffers(cfg))
        assert {c.acc for c in program.commands} == {0}
        expected = evaluate(program)
        run = run_core_amaranth(program, cfg, seed=seed, stall=0.3)
        for got, want, got_mask, want_mask in zip(run.tiles, expected.tiles, run.masks, expected.masks, strict=True):
            assert torch.equal(got, want) and torch.equal(got_mask, want_mask)
        assert run.prune_sum == expected.prune_sum
