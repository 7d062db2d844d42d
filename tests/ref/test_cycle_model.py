"""The analytical cycle model of the sparse core (ref.cycle_model) on its own: bookkeeping, closed forms,
monotonicity, the dense core's independence of sparsity, argument validation and speed.

Agreement with the RTL is tested in tests/hw/test_cycle_model_vs_rtl.py.
"""

from __future__ import annotations

import time

import pytest
import torch

from ref import cycle_model as cm
from ref.contract import Drain, Operand, Program, TileGemm, evaluate, random_program
from ref.cycle_model import CATEGORIES, predict_cycles

# The parameters of hw.config's presets (ref may not import hw).
TINY = dict(lanes=2, tile_m=4, tile_n=4, tile_k=8, bus_elems=4, operand_bits=4)
TINY_ACC_BITS = 14
DEFAULT = dict(lanes=8, tile_m=16, tile_n=16, tile_k=64, bus_elems=8, operand_bits=8)
DEFAULT_ACC_BITS = 32
MODES = ("a", "b", "mask", "all", "dense")


def _params(p: dict) -> dict:
    return {k: p[k] for k in ("tile_m", "tile_n", "tile_k", "operand_bits")}


def _program(p: dict, acc_bits: int, mode: str, density: float, seed: int, **kw) -> Program:
    return random_program(mode=mode, density=density, acc_bits=acc_bits, seed=seed, **_params(p), **kw)


def _predict(program: Program, p: dict, sparse: bool) -> cm.CycleEstimate:
    return predict_cycles(program, sparse=sparse, **p)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_breakdown_adds_up(mode, sparse):
    for p, acc_bits in ((TINY, TINY_ACC_BITS), (DEFAULT, DEFAULT_ACC_BITS)):
        for seed, density in ((1, 0.0), (2, 0.3), (3, 1.0)):
            print(f"lanes={p['lanes']} mode={mode} sparse={sparse} density={density} seed={seed}")
            program = _program(p, acc_bits, mode, density, seed, n_gemms=2, k_tiles=3)
            est = _predict(program, p, sparse)
            assert set(est.categories) == set(CATEGORIES)
            assert sum(est.categories.values()) == est.total
            assert sum(c.cycles for c in est.commands) == est.total
            assert est.commands[-1].end == est.total  # the program ends with a drain (DRAIN_TAIL = 1)
            assert all(v >= 0 for v in est.categories.values())
            prev_end = 0
            for c in est.commands:
                assert c.start == prev_end + c.wait
                assert c.load_start < c.load_end <= c.start < c.end
                prev_end = c.end
            # Lane imbalance is the compute time beyond effectual_macs / lanes, and never negative.
            assert est.lane_imbalance == pytest.approx(est.categories["compute"] - est.effectual_macs / p["lanes"])
            assert all(c.lane_imbalance >= 0 for c in est.commands)
            assert est.categories["drain_beats"] == 2 * p["tile_m"] * p["tile_n"] // p["lanes"]


@pytest.mark.parametrize("mode", MODES)
def test_effectual_macs_match_the_evaluator(mode):
    p = DEFAULT
    program = _program(p, DEFAULT_ACC_BITS, mode, 0.4, 5)
    counts = evaluate(program)
    print(f"mode={mode} seed=5")
    assert _predict(program, p, True).effectual_macs == counts.effectual_macs
    assert _predict(program, p, False).effectual_macs == counts.dense_macs


def test_dense_core_single_gemm_closed_form():
    """Dense core, one GEMM and one drain: load, fill, tile_m*tile_n*tile_k/lanes MAC cycles (plus the
    cycles from handing out the first group to its first MAC), result latency and write-back, then
    the drain's beats."""
    for p in (TINY, DEFAULT):
        tm, tn, tk, lanes = p["tile_m"], p["tile_n"], p["tile_k"], p["lanes"]
        ones = Operand.dense(torch.ones(tm, tk, dtype=torch.int64))
        program = Program((TileGemm(0, ones, Operand.dense(torch.ones(tk, tn, dtype=torch.int64))), Drain(0)),
                          DEFAULT_ACC_BITS, tm, tn, tk)
        est = _predict(program, p, False)
        beats = (tm + tn) * tk // p["bus_elems"]
        compute = tm * tn * tk // lanes + cm.LANE_START_DELAY
        # compute ends after the last k; its result leaves LANE_RESULT_LATENCY - 1 cycles later, the
        # write-back takes WRITEBACK_CYCLES, the drain starts in the cycle after that.
        want = (beats + cm.LOADER_DESC_LATENCY + cm.GEMM_FILL + compute + cm.LANE_RESULT_LATENCY - 1
                + cm.WRITEBACK_CYCLES + 1 + cm.DRAIN_FIRST_BEAT + tm * tn // lanes)
        assert est.total == want
        gemm = est.commands[0]
        assert (gemm.load_beats, gemm.wait, gemm.compute, gemm.lane_imbalance) == (
            beats, beats + 2, compute, float(cm.LANE_START_DELAY))


def test_dense_core_ignores_sparsity():
    """The dense core issues every MAC and takes every operand dense: only the command structure (and
    whether GEMMs carry a mask, which costs beats) matters, never the zero pattern."""
    for p, acc_bits in ((TINY, TINY_ACC_BITS), (DEFAULT, DEFAULT_ACC_BITS)):
        totals: dict[bool, set[int]] = {False: set(), True: set()}
        for mode in MODES:
            for seed, density in enumerate((0.0, 0.1, 0.5, 1.0)):
                program = _program(p, acc_bits, mode, density, seed)
                has_mask = any(isinstance(c, TileGemm) and c.out_mask is not None for c in program.commands)
                totals[has_mask].add(_predict(program, p, False).total)
        print(p, totals)
        assert len(totals[False]) == 1 and len(totals[True]) == 1
        assert min(totals[True]) > max(totals[False])


def test_total_grows_with_commands():
    """Commands run in order and later ones never delay earlier ones: every longer prefix of a program
    (ending with a drain) takes strictly longer, in both cores."""
    for sparse in (True, False):
        program = _program(TINY, TINY_ACC_BITS, "all", 0.5, 9, n_gemms=4, k_tiles=2)
        totals = []
        for end in range(1, len(program.commands) + 1):
            cmds = program.commands[:end]
            if isinstance(cmds[-1], Drain):
                prefix = Program(cmds, program.acc_bits, program.tile_m, program.tile_n, program.tile_k)
                totals.append(_predict(prefix, TINY, sparse).total)
        print(f"sparse={sparse} seed=9 totals={totals}")
        assert totals == sorted(set(totals))


def test_dense_core_grows_with_tile_k():
    base = dict(TINY)
    totals = []
    for tk in (8, 16, 32, 64):
        p = {**base, "tile_k": tk}
        program = _program(p, TINY_ACC_BITS, "dense", 1.0, 3)
        totals.append(_predict(program, p, False).total)
    assert totals == sorted(set(totals))


def _nested_program(p: dict, density: float, which: str, seed: int) -> Program:
    """Two accumulating GEMMs and a drain; the nonzeros (of A, B or the mask) at ``density`` are a superset
    of those at any lower density with the same seed."""
    gen = torch.Generator().manual_seed(seed)
    tm, tn, tk = p["tile_m"], p["tile_n"], p["tile_k"]
    ra, rb, rm = torch.rand(2, tm, tk, generator=gen), torch.rand(2, tk, tn, generator=gen), torch.rand(tm, tn,
                                                                                                      generator=gen)
    d = {k: density if k == which else 2.0 for k in "abm"}
    cmds = []
    for k in range(2):
        a = (ra[k] < d["a"]).to(torch.int64)
        b = (rb[k] < d["b"]).to(torch.int64)
        cmds.append(TileGemm(0, Operand.bitmap(a), Operand.bitmap(b), out_mask=rm < d["m"], accumulate=k > 0))
    return Program((*cmds, Drain(0)), DEFAULT_ACC_BITS, tm, tn, tk)


@pytest.mark.parametrize("which", ["a", "b", "m"])
def test_sparse_core_cycles_grow_with_density(which):
    """More effectual work costs more cycles. Per program this is not strict: the dispatcher packs a
    group's items onto the lowest lanes with room, so adding an item can move later ones to an idle lane
    and finish sooner (test_more_items_can_finish_sooner); over a few seeds the mean grows."""
    for p in (TINY, DEFAULT):
        means = []
        for density in (0.0, 0.1, 0.3, 0.5, 0.7, 1.0):
            totals = [_predict(_nested_program(p, density, which, seed), p, True).total for seed in range(8)]
            means.append(sum(totals) / len(totals))
        print(f"lanes={p['lanes']} which={which} seeds=0..7 means={means}")
        assert means == sorted(means) and means[0] < means[-1]


def test_more_items_can_finish_sooner():
    """One output in each of rows 1..LANE_QUEUE_DEPTH: each is the one item of its group, so all go to
    lane 0 and run back to back. Adding output (0, 1) fills lane 0's queue, and the last item moves to
    the idle lane 1."""
    ones_a = Operand.dense(torch.ones(4, 8, dtype=torch.int64))
    ones_b = Operand.dense(torch.ones(8, 4, dtype=torch.int64))
    assert cm.LANE_QUEUE_DEPTH < 4, "the tiny tile has 4 rows"
    base = tuple((row, 1 + row % 2) for row in range(1, cm.LANE_QUEUE_DEPTH + 1))
    totals = []
    for outputs in (base, ((0, 1), *base)):
        mask = torch.zeros(4, 4, dtype=torch.bool)
        for m, n in outputs:
            mask[m, n] = True
        program = Program((TileGemm(0, ones_a, ones_b, out_mask=mask), Drain(0)), TINY_ACC_BITS, 4, 4, 8)
        est = _predict(program, TINY, True)
        totals.append(est.total)
        print(outputs, est.commands[0])
    assert totals[1] < totals[0]


def test_result_slots_limit_short_items():
    """Items of one k each: a lane may hold LANE_RESULT_SLOTS items between their first k and their
    result leaving (LANE_RESULT_LATENCY + 1 cycles for a one-k item): item i of a lane starts at i,
    or LANE_RESULT_LATENCY + 1 cycles after item i - LANE_RESULT_SLOTS started, whichever is later."""
    a = torch.zeros(4, 8, dtype=torch.int64)
    a[torch.arange(4), torch.arange(4)] = 1
    program = Program((TileGemm(0, Operand.bitmap(a), Operand.dense(torch.ones(8, 4, dtype=torch.int64))),
                       Drain(0)), TINY_ACC_BITS, 4, 4, 8)
    gemm = _predict(program, TINY, True).commands[0]
    assert (gemm.items, gemm.effectual_macs) == (16, 16)
    per_lane = 16 // TINY["lanes"]
    slots, window = cm.LANE_RESULT_SLOTS, cm.LANE_RESULT_LATENCY + 1
    starts: list[int] = []
    for i in range(per_lane):
        starts.append(max(i, starts[i - slots] + window) if i >= slots else i)
    # Counted from the first dispatch: the cycles to the first k, then the last item's single k.
    assert gemm.compute == starts[-1] + cm.LANE_START_DELAY + 1


def test_result_slots_limit_more_short_items_than_slots():
    """16 one-k items per lane on the default preset's 8 lanes: more items than result slots."""
    p = DEFAULT
    a = torch.zeros(16, 64, dtype=torch.int64)
    a[torch.arange(16), torch.arange(16)] = 1
    program = Program((TileGemm(0, Operand.bitmap(a), Operand.dense(torch.ones(64, 16, dtype=torch.int64))),
                       Drain(0)), 32, 16, 16, 64)
    gemm = _predict(program, p, True).commands[0]
    assert (gemm.items, gemm.effectual_macs) == (256, 256)
    # Lower bound: every lane must run its 32 items at one k per cycle.
    assert gemm.compute >= 256 // p["lanes"]


def test_load_beats():
    """Dense vectors: tile_k / bus_elems beats; bitmap vectors: ceil(tile_k / bus_bits) + ceil(nnz / bus_elems);
    a mask: ceil(tile_n / bus_bits) per row. The dense core gets every operand dense."""
    p = DEFAULT
    a = torch.zeros(16, 64, dtype=torch.int64)
    a[0, :9] = 1       # 9 nonzeros: 2 value beats
    a[1, 5] = 3        # 1 value beat; rows 2..15 are empty (bitmap beat only)
    b = torch.ones(64, 16, dtype=torch.int64)
    mask = torch.ones(16, 16, dtype=torch.bool)
    gemm = TileGemm(0, Operand.bitmap(a), Operand.dense(b), out_mask=mask)
    kw = dict(tile_m=16, tile_n=16, tile_k=64, bus_elems=8, operand_bits=8)
    assert cm.gemm_load_beats(gemm, sparse=True, **kw) == 16 * 1 + 3 + 16 * 8 + 16 * 1
    assert cm.gemm_load_beats(gemm, sparse=False, **kw) == 16 * 8 + 16 * 8 + 16 * 1
    program = Program((gemm, Drain(0)), DEFAULT_ACC_BITS, 16, 16, 64)
    assert _predict(program, p, True).load_beats == 16 + 3 + 128 + 16


def test_empty_and_drain_only_programs():
    empty = Program((), TINY_ACC_BITS, 4, 4, 8)
    est = _predict(empty, TINY, True)
    assert est.total == 0 and est.commands == () and sum(est.categories.values()) == 0
    drains = Program((Drain(0), Drain(1)), TINY_ACC_BITS, 4, 4, 8)
    est = _predict(drains, TINY, True)
    beats = 4 * 4 // 2
    assert est.total == 1 + (cm.DRAIN_FIRST_BEAT + beats + cm.DRAIN_TAIL - 1) + cm.DRAIN_FIRST_BEAT + beats
    assert est.categories["load"] == 1   # the first drain's descriptor is readable one cycle after its take


def test_gemm_without_work_costs_one_cycle_per_group():
    zeros = Operand.bitmap(torch.zeros(4, 8, dtype=torch.int64))
    program = Program((TileGemm(0, zeros, Operand.dense(torch.ones(8, 4, dtype=torch.int64))), Drain(0)),
                      TINY_ACC_BITS, 4, 4, 8)
    gemm = _predict(program, TINY, True).commands[0]
    assert (gemm.items, gemm.compute, gemm.lane_imbalance) == (0, 4 * 4 // 2, 8.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(lanes=0), "lanes must be an int >= 1, got 0"),
        (dict(lanes=True), "lanes must be an int >= 1, got True"),
        (dict(tile_k=8.0), "tile_k must be an int >= 1, got 8.0"),
        (dict(bus_elems=-1), "bus_elems must be an int >= 1"),
        (dict(operand_bits=1), "operand_bits must be an int >= 2, got 1"),
        (dict(sparse="yes"), "sparse must be a bool, got 'yes'"),
        (dict(lanes=8), "tile_n = 4 must be a multiple of lanes = 8"),
        (dict(bus_elems=16), "tile_k = 8 must be a multiple of bus_elems = 16"),
        (dict(tile_m=8), "the program has tile_m = 4 but the core has tile_m = 8"),
        (dict(tile_k=16), "the program has tile_k = 8 but the core has tile_k = 16"),
    ],
)
def test_argument_validation(change, message):
    program = _program(TINY, TINY_ACC_BITS, "a", 0.5, 1)
    kw = {**TINY, "sparse": True, **change}
    with pytest.raises(ValueError, match="predict_cycles: " + message.replace("(", r"\(").replace(")", r"\)")):
        predict_cycles(program, **kw)


def test_argument_validation_of_the_program():
    with pytest.raises(ValueError, match=r"predict_cycles: program must be a ref.contract.Program, got list"):
        predict_cycles([], sparse=True, **TINY)
    with pytest.raises(TypeError):
        predict_cycles(_program(TINY, TINY_ACC_BITS, "a", 0.5, 1), **TINY)  # sparse is required


def test_fast_enough():
    """A 16x16 output tile (the default preset) is scheduled in well under 10 ms."""
    program = _program(DEFAULT, DEFAULT_ACC_BITS, "all", 0.5, 4, n_gemms=2, k_tiles=4)
    gemms = sum(isinstance(c, TileGemm) for c in program.commands)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        _predict(program, DEFAULT, True)
        best = min(best, (time.perf_counter() - t0) / gemms)
    print(f"seed=4: {best * 1e3:.2f} ms per 16x16x64 GEMM")
    assert best < 10e-3
