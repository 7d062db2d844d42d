"""One training iteration as a workload: the real traces that cores are measured on, and their
dense-equivalent throughput.

The iteration is the demo's (digits CNN, batch 4, every conv and linear layer, FWD/BWI/BWW) under
one algorithm of ``ref.policies.registry.ALGOS``. ``benchmarks/throughput.py`` and ``stag sweep``
both count it here: its real MACs (M x K x N of every pass, the zeros included), a core's cycles
from that core's exact cycle model (``ref.cycle_model`` for the sparse core,
``ref.vector_cycle_model`` through ``ref.vector_lowering`` for the vector core), and
dense-equivalent throughput = real MACs / (cycles / Fmax).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hw.config import StagConfig
from hw.vector_core import VectorCoreParams
from ref.contract.lowering import ACC_BUFFERS
from ref.contract.trace_programs import TracePass, make_digits_trace, trace_programs
from ref.cycle_model import predict_cycles
from ref.design_study.gemm import program_operands, reduction_length
from ref.traces import Trace, load_trace
from ref.vector_lowering import lower_for_vector_core

__all__ = ["BATCH", "LOWERING_TILES", "IterationCycles", "dense_equivalent_gmacs", "iteration_dense_macs",
           "iteration_trace", "pass_dense_macs", "sparse_core_cycles", "vector_core_cycles"]

#: The demo's replayed iteration: batch 4 of the first 12 training samples (iteration 1).
BATCH = 4
#: Tiles the passes are lowered with before the vector core's lowering re-tiles each whole GEMM
#: (the present default core's; they only carry the operands there).
LOWERING_TILES = (16, 16, 64)


def iteration_trace(algo: str, work_dir: Path | str) -> Trace:
    """The captured training iteration of ``algo`` (trained and written under ``work_dir``)."""
    return load_trace(make_digits_trace(Path(work_dir) / algo, algo=algo, batch_size=BATCH, train_subset=3 * BATCH))


def pass_dense_macs(p: TracePass) -> int:
    """Real MACs of one pass: M x K x N of its whole GEMM (zeros included, tile padding not)."""
    m, n = p.program.output_shape
    return m * n * reduction_length(p)


def iteration_dense_macs(passes: Iterable[TracePass]) -> int:
    """Real MACs of an iteration's passes."""
    return sum(pass_dense_macs(p) for p in passes)


def dense_equivalent_gmacs(dense_macs: int, cycles: int, fmax_mhz: float) -> float:
    """Dense-equivalent throughput in GMAC/s: ``dense_macs`` real MACs done in ``cycles`` at ``fmax_mhz``."""
    return dense_macs / cycles * fmax_mhz / 1e3


@dataclass(frozen=True)
class IterationCycles:
    """A core's cycles for one iteration (the sum over its passes) and the iteration's real MACs."""

    cycles: int
    dense_macs: int
    passes: int

    @property
    def macs_per_cycle(self) -> float:
        """Dense-equivalent MACs per clock cycle."""
        return self.dense_macs / self.cycles


def sparse_core_cycles(trace: Trace, config: StagConfig) -> IterationCycles:
    """Cycles of the sparse core (or its dense baseline, ``sparse = false``) of ``config`` for the
    iteration: every pass lowered with the configuration's tiles and operand width, each program's
    cycles from ``ref.cycle_model.predict_cycles``. Raises ``ValueError`` for a configuration the
    model or the lowering cannot take (e.g. operands wider than a trace's codes)."""
    passes = trace_programs(trace, tile_m=config.tile_m, tile_n=config.tile_n, tile_k=config.tile_k,
                            operand_bits=config.operand_bits, acc_bits=config.acc_bits,
                            acc_buffers=min(ACC_BUFFERS, config.accumulators))
    cycles = sum(predict_cycles(p.program, lanes=config.lanes, tile_m=config.tile_m, tile_n=config.tile_n,
                                tile_k=config.tile_k, bus_elems=config.bus_elems, operand_bits=config.operand_bits,
                                sparse=config.sparse).total for p in passes)
    return IterationCycles(cycles, iteration_dense_macs(passes), len(passes))


def vector_core_cycles(trace: Trace, params: VectorCoreParams) -> IterationCycles:
    """Cycles of the vector core of ``params`` for the iteration: every pass's whole GEMM lowered
    by ``ref.vector_lowering`` in the orientation its exact cycle model finds faster."""
    tm, tn, tk = LOWERING_TILES
    passes = trace_programs(trace, tile_m=tm, tile_n=tn, tile_k=tk, operand_bits=params.operand_bits,
                            acc_bits=params.acc_bits)
    cycles = 0
    for p in passes:
        a, b, mask = program_operands(p.program, k=reduction_length(p))
        cycles += lower_for_vector_core(a, b, out_mask=mask, lanes=params.lanes, vector=params.vector,
                                        tile_m=params.tile_m, tile_k=params.tile_k, bus_elems=params.bus_elems,
                                        operand_bits=params.operand_bits, acc_bits=params.acc_bits,
                                        sparse=params.sparse).estimate.total
    return IterationCycles(cycles, iteration_dense_macs(passes), len(passes))
