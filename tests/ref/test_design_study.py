"""The design study's GEMM patterns and candidate cycle models (ref.design_study).

The list scheduler is checked against an independent cycle-by-cycle simulation; the candidates
against closed forms on hand-made patterns and against bounds every schedule must respect.
"""

from __future__ import annotations

import random

import pytest
import torch

from ref.contract.lowering import lower_gemm
from ref.design_study.candidates import DenseArray, MatchPEs, VectorLanes, _list_schedule
from ref.design_study.gemm import GemmPattern, program_pattern

SEED = 20261204


def _sparse_int(gen: torch.Generator, shape: tuple[int, int], density: float) -> torch.Tensor:
    values = torch.randint(-7, 8, shape, generator=gen, dtype=torch.int64)
    return values * (torch.rand(shape, generator=gen) < density)


def test_program_pattern_rebuilds_the_lowered_gemm():
    print(f"seed {SEED}")
    gen = torch.Generator().manual_seed(SEED)
    a, b = _sparse_int(gen, (37, 70), 0.4), _sparse_int(gen, (70, 21), 0.6)
    mask = torch.rand((37, 21), generator=gen) < 0.5
    program = lower_gemm(a, b, out_mask=mask, a_format="bitmap", b_format="dense", tiles=(8, 16, 32))
    pattern = program_pattern(program, "t", k=70)
    assert torch.equal(pattern.a, a != 0)
    assert torch.equal(pattern.b, b != 0)
    assert pattern.mask is not None and torch.equal(pattern.mask, mask)
    assert pattern.dense_macs == 37 * 21 * 70
    want = int((((a != 0).double() @ (b != 0).double()) * mask).sum())
    assert pattern.effectual_macs == want


def test_program_pattern_rejects_a_k_that_cuts_nonzeros():
    a = torch.ones((4, 8), dtype=torch.int64)
    program = lower_gemm(a, torch.ones((8, 4), dtype=torch.int64), tiles=(4, 4, 8))
    with pytest.raises(ValueError, match="beyond k = 5"):
        program_pattern(program, k=5)


def _simulate_dispatch(costs: list[int], workers: int, per_cycle: int, visit_all: bool) -> int:
    """Cycle-by-cycle reference: each cycle, free workers take the next items in order."""
    busy_until = [0] * workers
    queue = list(enumerate(costs))
    cycle, end = 0, 0
    while queue:
        taken = 0
        while queue and taken < per_cycle:
            index, cost = queue[0]
            if visit_all and index // per_cycle > cycle:
                break
            if cost <= 0:
                queue.pop(0)
                end = max(end, cycle + 1)
                continue
            free = [w for w in range(workers) if busy_until[w] <= cycle]
            if not free:
                break
            queue.pop(0)
            busy_until[free[0]] = cycle + cost
            end = max(end, cycle + cost)
            taken += 1
        cycle += 1
    return end


@pytest.mark.parametrize("visit_all", [False, True])
def test_list_schedule_equals_a_cycle_by_cycle_dispatcher(visit_all):
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    for _ in range(300):
        workers, per_cycle = rng.randint(1, 6), rng.randint(1, 4)
        low = 0 if visit_all else 1
        costs = [rng.choice([low, low, 1, 2, 3, rng.randint(1, 20)]) for _ in range(rng.randint(0, 30))]
        assert _list_schedule(costs, workers, per_cycle=per_cycle, visit_all=visit_all) == _simulate_dispatch(
            costs, workers, per_cycle, visit_all), (costs, workers, per_cycle)


def test_vector_lanes_row_costs_and_skips():
    # Rows with 3, 0, 2 and 5 nonzeros; one B block of 4 columns.
    a = torch.zeros((4, 8), dtype=torch.bool)
    a[0, :3] = a[2, 5:7] = a[3, 1:6] = True
    g = GemmPattern("t", a, torch.ones((8, 4), dtype=torch.bool))
    one_lane = VectorLanes(lanes=1, vector=4, transpose=False)
    assert one_lane._compute(g)[0] == 3 + 2 + 5  # the empty row takes no lane time
    two = VectorLanes(lanes=2, vector=4, transpose=False)
    # Row 0 on lane 0 (cycles 0-2), row 2 on lane 1 (1-2), row 3 on lane 1 when it frees at 3: ends at 8.
    assert two._compute(g)[0] == 8
    # A mask that removes row 3's outputs removes its work.
    mask = torch.ones((4, 4), dtype=torch.bool)
    mask[3] = False
    masked = GemmPattern("t", a, g.b, mask)
    assert one_lane._compute(masked)[0] == 5


def test_candidates_respect_the_bounds_of_any_schedule():
    gen = torch.Generator().manual_seed(SEED)
    print(f"seed {SEED}")
    for density in (0.05, 0.3, 0.7, 1.0):
        a = torch.rand((48, 40), generator=gen) < density
        b = torch.rand((40, 24), generator=gen) < density
        g = GemmPattern(f"d{density}", a, b)
        for cand in (VectorLanes(lanes=3, vector=8), MatchPEs(pes=6, matches=2, group=4),
                     DenseArray(rows=4, cols=6)):
            r = cand.pass_cycles(g)
            assert r.effectual_macs == g.effectual_macs == g.transposed().effectual_macs
            # No schedule beats effectual work / multipliers, nor moves data faster than the stream.
            assert r.compute >= g.effectual_macs / cand.multipliers
            assert r.cycles >= max(r.compute, r.load - r.fill, r.drain)
        dense = DenseArray(rows=4, cols=6).pass_cycles(g)
        assert dense.compute == min(12 * 4 * 40, 10 * 8 * 40)  # the better of the two orientations


def test_vector_lanes_choose_the_sparser_operand():
    a = torch.ones((32, 64), dtype=torch.bool)  # dense A
    b = torch.zeros((64, 32), dtype=torch.bool)
    b[::8] = True  # B has 1 row in 8 nonzero
    g = GemmPattern("t", a, b)
    r = VectorLanes(lanes=2, vector=8).pass_cycles(g)
    assert r.transposed
    assert r.compute < VectorLanes(lanes=2, vector=8, transpose=False).pass_cycles(g).compute
