"""The analytical cycle model (ref.cycle_model) against the RTL in the Amaranth simulator.

``sim.core_amaranth.run_core_amaranth(..., stall=0.0).cycles`` counts from the first command to the
last result beat with every stream always valid / ready, which is what the model predicts. The target
is |model - RTL| / RTL <= 5 % on every program.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hw.config import StagConfig, preset
from ref.contract import Drain, Operand, Program, TileGemm, random_program
from ref.contract.random_programs import random_resprop_program
from ref.cycle_model import CycleEstimate, predict_cycles
from sim.core_amaranth import run_core_amaranth
from sim.core_program import encode_program

TOLERANCE = 0.05
MODES = ("a", "b", "mask", "all", "dense")
DENSITIES = (0.1, 0.3, 0.5, 0.7, 1.0)


def _model(program: Program, cfg: StagConfig) -> CycleEstimate:
    return predict_cycles(program, lanes=cfg.lanes, tile_m=cfg.tile_m, tile_n=cfg.tile_n, tile_k=cfg.tile_k,
                          bus_elems=cfg.bus_elems, operand_bits=cfg.operand_bits, sparse=cfg.sparse)


def _program(cfg: StagConfig, mode: str, density: float, seed: int, **kw) -> Program:
    return random_program(mode=mode, density=density, tile_m=cfg.tile_m, tile_n=cfg.tile_n, tile_k=cfg.tile_k,
                          operand_bits=cfg.operand_bits, acc_bits=cfg.acc_bits, seed=seed, **kw)


def _compare(program: Program, cfg: StagConfig, label: str) -> float:
    """Relative error of the model against the RTL; also checks the model's beats and MACs."""
    est = _model(program, cfg)
    run = run_core_amaranth(program, cfg, seed=0, stall=0.0)
    err = (est.total - run.cycles) / run.cycles
    print(f"{label}: rtl={run.cycles} model={est.total} error={err * 100:+.2f}% {est.categories}")
    enc = encode_program(program, cfg)
    assert [c.load_beats for c in est.commands] == list(enc.data_per_command)
    assert est.effectual_macs == run.counters["macs_issued"]
    return err


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_tiny_preset(mode, sparse):
    cfg = dataclasses.replace(preset("tiny"), sparse=sparse)
    errors = []
    for i, density in enumerate(DENSITIES):
        seed = 100 + 10 * MODES.index(mode) + i
        label = f"tiny sparse={sparse} mode={mode} density={density} seed={seed}"
        errors.append((abs(_compare(_program(cfg, mode, density, seed), cfg, label)), label))
    worst = max(errors)
    print(f"worst: {worst[0] * 100:.2f}% ({worst[1]})")
    assert worst[0] <= TOLERANCE, worst[1]


# A few programs on the default preset (1 to 3 s each in the simulator): one output tile of two GEMMs,
# and one full random program at low density.
DEFAULT_CASES = [
    (True, "a", 0.1, 201, 1),
    (True, "b", 0.5, 202, 1),
    (True, "mask", 0.3, 203, 1),
    (True, "all", 0.7, 204, 1),
    (True, "dense", 1.0, 205, 1),
    (True, "all", 0.1, 206, 2),
    (False, "all", 0.3, 207, 1),
    (False, "mask", 0.5, 208, 1),
]


@pytest.mark.parametrize(("sparse", "mode", "density", "seed", "n_gemms"), DEFAULT_CASES)
def test_default_preset(sparse, mode, density, seed, n_gemms):
    cfg = dataclasses.replace(preset("default"), sparse=sparse)
    program = _program(cfg, mode, density, seed, n_gemms=n_gemms, k_tiles=2)
    label = f"default sparse={sparse} mode={mode} density={density} seed={seed} n_gemms={n_gemms}"
    assert abs(_compare(program, cfg, label)) <= TOLERANCE


def _hand_programs(cfg: StagConfig) -> dict[str, Program]:
    tm, tn, tk = cfg.tile_m, cfg.tile_n, cfg.tile_k
    gemms = [c for c in _program(cfg, "all", 0.4, 300, n_gemms=3, k_tiles=2).commands if isinstance(c, TileGemm)]
    ones_a = Operand.dense(torch.ones(tm, tk, dtype=torch.int64))
    ones_b = Operand.dense(torch.ones(tk, tn, dtype=torch.int64))
    diag = torch.zeros(tm, tk, dtype=torch.int64)
    diag[torch.arange(tm), torch.arange(tm)] = 1

    def mask(*outputs):
        m = torch.zeros(tm, tn, dtype=torch.bool)
        for r, c in outputs:
            m[r, c] = True
        return m

    # docs/core.md's worked example (tiny): bitmap A, dense B, a mask, a raw and a requantized drain.
    doc_a = torch.tensor([[0, 3, 0, 0, -2, 0, 0, 1], [0] * 8, [5, -1, 2, 0, 7, -8, 0, 4], [0, 0, 0, 0, 0, 0, 0, -3]])
    doc_b = torch.tensor([[1, 0, -1, 2], [2, 1, 0, -1], [0, 3, 1, 0], [-4, 0, 2, 1],
                          [1, -2, 0, 3], [0, 1, 1, -1], [3, 0, -2, 0], [-1, 2, 0, 1]])
    doc_m = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 1, 1], [1, 0, 1, 1]], dtype=torch.bool)

    cmds = {
        "docs/core.md worked example": [
            TileGemm(0, Operand.bitmap(doc_a), Operand.dense(doc_b), out_mask=doc_m), Drain(0),
            Drain(0, shift=1, out_bits=4, rounding="half_even", relu=True)],
        "drains only": [Drain(0), Drain(1), Drain(0)],
        # The descriptor queue fills with drains behind a long GEMM.
        "gemm then six drains": [gemms[0]] + [Drain(0)] * 6,
        "drain first": [Drain(1), gemms[0], Drain(0)],
        "five gemms": [*gemms[:5], Drain(0)],
        "alternating": [gemms[0], Drain(0), gemms[1], Drain(0), gemms[2], Drain(0)],
        # One-k items: each holds a result slot for ten cycles (the lane has LANE_RESULT_SLOTS of them).
        "one-k items": [TileGemm(0, Operand.bitmap(diag), ones_b), Drain(0)],
        # Lane compaction: lone items all go to lane 0 while its queue (3 items, input register
        # included) has room; a fourth moves one to lane 1.
        "two lone items": [TileGemm(0, ones_a, ones_b, out_mask=mask((1, 2), (2, 1))), Drain(0)],
        "three items": [TileGemm(0, ones_a, ones_b, out_mask=mask((0, 1), (1, 2), (2, 1))), Drain(0)],
        "four items": [TileGemm(0, ones_a, ones_b, out_mask=mask((0, 1), (1, 2), (2, 1), (3, 2))), Drain(0)],
    }
    return {name: Program(tuple(c), cfg.acc_bits, tm, tn, tk) for name, c in cmds.items()}


@pytest.mark.parametrize("sparse", [True, False])
def test_hand_built_programs(sparse):
    cfg = dataclasses.replace(preset("tiny"), sparse=sparse)
    for name, program in _hand_programs(cfg).items():
        err = _compare(program, cfg, f"tiny sparse={sparse} {name} (seed 300)")
        assert abs(err) <= TOLERANCE, name


@pytest.mark.parametrize("sparse", [True, False])
def test_resprop_drains_add_no_cycle(sparse):
    """A ReSprop pass (``Drain(resprop=True)``) takes exactly the cycles of the same program with
    plain drains, so the model, which does not know about it, stays exact."""
    cfg = dataclasses.replace(preset("tiny"), sparse=sparse)
    program = random_resprop_program(n_samples=3, rows_per_sample=cfg.tile_m + 1, cols=cfg.tile_n + 1,
                                     tile_m=cfg.tile_m, tile_n=cfg.tile_n, tile_k=cfg.tile_k,
                                     operand_bits=cfg.operand_bits, acc_bits=cfg.acc_bits,
                                     out_bits=cfg.operand_bits - 1, sample=1, density=0.5, seed=300)
    plain = dataclasses.replace(program, resprop=None, commands=tuple(
        dataclasses.replace(c, resprop=False) if isinstance(c, Drain) else c for c in program.commands))
    with_resprop = run_core_amaranth(program, cfg, seed=0, stall=0.0)
    without = run_core_amaranth(plain, cfg, seed=0, stall=0.0)
    print(f"sparse={sparse} seed=300: {with_resprop.cycles} cycles with resprop, {without.cycles} without")
    assert with_resprop.cycles == without.cycles
    assert abs(_compare(program, cfg, f"resprop sparse={sparse} seed=300")) <= TOLERANCE
