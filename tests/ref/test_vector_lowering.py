"""ref.vector_lowering: the orientation the lowering picks computes the same GEMM, and is the
faster one by the cycle model."""

from __future__ import annotations

import torch

from ref.contract.evaluate import evaluate
from ref.contract.lowering import lower_gemm
from ref.vector_lowering import lower_for_vector_core

CORE = dict(lanes=2, vector=4, tile_m=6, tile_k=8, bus_elems=4, operand_bits=4, acc_bits=16)


def test_either_orientation_computes_the_gemm():
    gen = torch.Generator().manual_seed(8)
    print("seed 8")
    for density_a, density_b in ((0.9, 0.1), (0.1, 0.9), (0.5, 0.5)):
        a = torch.randint(-8, 8, (11, 9), generator=gen) * (torch.rand((11, 9), generator=gen) < density_a)
        b = torch.randint(-8, 8, (9, 7), generator=gen) * (torch.rand((9, 7), generator=gen) < density_b)
        mask = torch.rand((11, 7), generator=gen) < 0.8
        want = evaluate(lower_gemm(a, b, out_mask=mask, tiles=(4, 4, 4), acc_bits=16)).output
        for transpose in (False, True):
            lowered = lower_for_vector_core(a, b, out_mask=mask, transpose=transpose, **CORE)
            assert torch.equal(lowered.output(evaluate(lowered.program).output), want)
        both = lower_for_vector_core(a, b, out_mask=mask, **CORE)
        plain = lower_for_vector_core(a, b, out_mask=mask, transpose=False, **CORE)
        assert both.estimate.total <= plain.estimate.total


def test_a_sparse_b_is_skipped_by_transposing():
    a = torch.ones((12, 16), dtype=torch.int64)
    b = torch.zeros((16, 12), dtype=torch.int64)
    b[::8] = 3                                   # B: two nonzero rows of 16
    lowered = lower_for_vector_core(a, b, **CORE)
    assert lowered.transposed
