"""Lowering a GEMM for the vector core: the skipped operand is A, and the lowering picks which.

The vector core (``hw.vector_core``) skips the zeros of its A operand only (one nonzero of an A
row per lane per cycle against a dense B row). So for each pass the lowering hands it either the
GEMM ``C = M ⊙ (A·B)`` or its transpose ``Cᵀ = Mᵀ ⊙ (Bᵀ·Aᵀ)``, whichever the core runs in fewer
cycles by its exact cycle model (``ref.vector_cycle_model``); A is sent bitmap-compressed (on the
sparse core) and B dense. The transposed program's output matrix is ``Cᵀ``: :attr:`VectorLowered.output`
turns it back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ref.contract.commands import Drain, Program
from ref.contract.lowering import lower_gemm
from ref.vector_cycle_model import VectorCycleEstimate, predict_vector_cycles

__all__ = ["VectorLowered", "lower_for_vector_core"]


@dataclass(frozen=True, eq=False)
class VectorLowered:
    """A GEMM lowered for the vector core.

    program: the program the core runs. transposed: it computes ``Cᵀ`` (B's zeros skipped).
    estimate: the cycle model's prediction for ``program``.
    """

    program: Program
    transposed: bool
    estimate: VectorCycleEstimate

    def output(self, matrix: torch.Tensor) -> torch.Tensor:
        """The GEMM's output ``C`` from the program's output matrix."""
        return matrix.t().contiguous() if self.transposed else matrix


def lower_for_vector_core(a: torch.Tensor, b: torch.Tensor, *, out_mask: torch.Tensor | None = None, lanes: int,
                          vector: int, tile_m: int, tile_k: int, bus_elems: int, operand_bits: int, acc_bits: int,
                          sparse: bool = True, drain: Drain | None = None,
                          transpose: bool = True) -> VectorLowered:
    """Lower ``C = out_mask ⊙ (a @ b)`` (int64 ``a`` [M, K], ``b`` [K, N]) for the vector core of
    these parameters, in the faster orientation (only the given one when ``transpose`` is False)."""
    views = [(a, b, out_mask, False)]
    if transpose:
        views.append((b.t().contiguous(), a.t().contiguous(),
                      None if out_mask is None else out_mask.t().contiguous(), True))
    best: VectorLowered | None = None
    for va, vb, vmask, flipped in views:
        program = lower_gemm(va, vb, out_mask=vmask, a_format="bitmap" if sparse else "dense", b_format="dense",
                             tiles=(tile_m, vector, tile_k), acc_bits=acc_bits, drain=drain)
        estimate = predict_vector_cycles(program, lanes=lanes, vector=vector, tile_m=tile_m, tile_k=tile_k,
                                         bus_elems=bus_elems, operand_bits=operand_bits, sparse=sparse)
        if best is None or estimate.total < best.estimate.total:
            best = VectorLowered(program, flipped, estimate)
    assert best is not None
    return best
