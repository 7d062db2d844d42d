"""Cycle models of the compute-core candidates of the design study (docs/design_study.md).

Each candidate predicts the cycles of one training pass, given as a whole GEMM's zero pattern
(:class:`ref.design_study.gemm.GemmPattern`). All candidates share one model of everything around
the multipliers, so that they differ only in how they schedule work onto them:

*Loads.* Operands arrive on one stream of ``bus_elems`` elements (``bus_elems * operand_bits``
bits) per cycle. Every operand element crosses the stream once per pass (the operands of each
pass of the demo iteration fit in on-chip buffers; :func:`operand_bits` reports the size so a
study can check it). A skipped operand travels compressed: its bitmap, packed across vectors,
plus its nonzero values; a dense operand as values.

*Drains.* Results leave on a port of ``drain_elems`` elements per cycle.

*Overlap.* Loading, computing and draining are pipelined (double-buffered operands and
accumulators), so a pass costs ``fill + max(compute, load, drain) + tail``: ``fill`` is the first
block's load (compute cannot start before it), ``tail`` the pipeline latency after the last
product. This is a roofline with explicit fill and tail, coarser than the present core's exact
model (``ref.cycle_model``); the study reports both for the present core to show the difference.

*Compute* is the candidate's own schedule:

- :class:`VectorLanes` — ``lanes`` lanes of ``vector`` multipliers. A lane takes one row of the
  skipped operand A and issues one nonzero ``a[m, k]`` per cycle against a dense vector
  ``B[k, n0:n0+vector]`` from its own copy of the B block, so a row costs ``nnz(A[m, :])`` cycles
  for ``vector`` outputs. Rows without nonzeros, or whose ``vector`` outputs are all masked, are
  skipped without occupying a lane (a row-nonempty bitmap). A dispatcher hands at most one row
  per cycle to the first free lane; the lanes wait for each other when the B block (the next
  ``vector`` columns) changes. The lowering picks the skipped operand per pass (the GEMM or its
  transpose, whichever is faster).
- :class:`MatchPEs` — ``pes`` processing elements, each owning one output and issuing up to
  ``matches`` effectual pairs per cycle (the AND of the A-row and B-column bitmaps, prefix-sum
  ranks as in SparTen); an output costs ``ceil(pairs / matches)`` cycles. A dispatcher visits
  ``group`` outputs per cycle, row-major, and hands those with work to free PEs. ``matches = 1``
  with ``group = pes`` is the present core's per-output lane.
- :class:`DenseArray` — ``rows x cols`` output-stationary multipliers, ``K`` cycles per output
  block, no skipping: the dense baseline a user would otherwise build.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import torch

from ref.design_study.gemm import GemmPattern

__all__ = ["Candidate", "DenseArray", "MatchPEs", "PassCycles", "VectorLanes", "operand_bits"]


@dataclass(frozen=True)
class PassCycles:
    """A candidate's predicted cycles for one pass.

    cycles: the pass's total, ``fill + max(compute, load, drain) + tail``.
    compute, load, drain: cycles each resource is busy (load and drain in stream beats).
    transposed: True when the lowering gave the core ``Cᵀ = Bᵀ·Aᵀ`` (skipping the other operand).
    dense_macs, effectual_macs: the pass's real products and those with both operands nonzero.
    """

    name: str
    cycles: int
    compute: int
    load: int
    drain: int
    fill: int
    tail: int
    transposed: bool
    dense_macs: int
    effectual_macs: int

    @property
    def bound(self) -> str:
        """Which resource sets the pass's time: "compute", "load" or "drain"."""
        return max((self.compute, "compute"), (self.load, "load"), (self.drain, "drain"))[1]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check(name: str, value: object, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _compressed_beats(nz: torch.Tensor, bus_elems: int, bus_bits: int) -> int:
    """Beats of a bitmap-compressed operand: its bitmap bits and its nonzero values, each packed."""
    return _ceil_div(nz.numel(), bus_bits) + _ceil_div(int(nz.sum().item()), bus_elems)


def operand_bits(g: GemmPattern, bits: int, *, compressed_a: bool, compressed_b: bool) -> int:
    """On-chip bits to hold both operands of ``g`` (bitmap + values when compressed)."""
    total = 0
    for nz, comp in ((g.a, compressed_a), (g.b, compressed_b)):
        total += nz.numel() + int(nz.sum().item()) * bits if comp else nz.numel() * bits
    return total


class Candidate:
    """Shared load/drain/overlap model; subclasses give ``name``, ``multipliers`` and ``_compute``."""

    name = "candidate"
    #: Cycles from the last product issued to the last result written (multiplier + accumulate).
    tail_latency = 6
    #: Cycles from the first operands on chip to the first product issued (dispatch, reads).
    start_latency = 3

    def __init__(self, *, bus_elems: int, operand_bits: int, drain_elems: int) -> None:
        self.bus_elems = _check("bus_elems", bus_elems)
        self.operand_bits = _check("operand_bits", operand_bits, 2)
        self.drain_elems = _check("drain_elems", drain_elems)

    @property
    def multipliers(self) -> int:
        raise NotImplementedError

    @property
    def bus_bits(self) -> int:
        return self.bus_elems * self.operand_bits

    def _orientations(self, g: GemmPattern) -> tuple[GemmPattern, ...]:
        """The GEMMs the lowering may give this core for pass ``g``."""
        return (g,)

    def _compute(self, g: GemmPattern) -> tuple[int, int, int]:
        """(compute cycles, load beats, first block's load beats) of ``g`` on this core."""
        raise NotImplementedError

    def pass_cycles(self, g: GemmPattern) -> PassCycles:
        """Predicted cycles of pass ``g``; the lowering's best orientation."""
        best: PassCycles | None = None
        for index, view in enumerate(self._orientations(g)):
            compute, load, first = self._compute(view)
            m, n, _ = view.shape
            drain = _ceil_div(m * n, self.drain_elems)
            fill = first + self.start_latency
            # After the last product: the pipeline, then the results still in flight (one block).
            tail = self.tail_latency + _ceil_div(self.multipliers, self.drain_elems)
            cycles = fill + max(compute, load - first, drain) + tail
            result = PassCycles(g.name, cycles, compute, load, drain, fill, tail, index == 1, g.dense_macs,
                                g.effectual_macs)
            if best is None or result.cycles < best.cycles:
                best = result
        assert best is not None
        return best


class VectorLanes(Candidate):
    """``lanes`` lanes of ``vector`` MACs; one nonzero of the skipped operand A per lane per cycle."""

    name = "vector_lanes"

    def __init__(self, *, lanes: int, vector: int, bus_elems: int = 16, operand_bits: int = 8,
                 max_k: int = 1024, transpose: bool = True, tile_m: int | None = None) -> None:
        super().__init__(bus_elems=bus_elems, operand_bits=operand_bits, drain_elems=vector)
        self.lanes = _check("lanes", lanes)
        self.vector = _check("vector", vector)
        self.max_k = _check("max_k", max_k)
        self.transpose = transpose
        self.tile_m = None if tile_m is None else _check("tile_m", tile_m)

    @property
    def multipliers(self) -> int:
        return self.lanes * self.vector

    def _orientations(self, g: GemmPattern) -> tuple[GemmPattern, ...]:
        return (g, g.transposed()) if self.transpose else (g,)

    def _compute(self, g: GemmPattern) -> tuple[int, int, int]:
        """Blocks of ``vector`` columns x ``max_k``; with ``tile_m``, also of ``tile_m`` rows, each
        block's operands loaded with it (the program contract's tiles: A re-sent for every column
        block, B for every row block) and the lanes meeting at every block boundary."""
        m, n, k = g.shape
        rows = m if self.tile_m is None else self.tile_m
        cycles, load = 0, 0
        for bm in range(0, m, rows):
            for bn in range(0, n, self.vector):
                cols = slice(bn, bn + self.vector)
                a_rows = g.a[bm : bm + rows]
                keep = torch.ones(a_rows.shape[0], dtype=torch.bool) if g.mask is None else \
                    g.mask[bm : bm + rows, cols].any(dim=1)
                for bk in range(0, k, self.max_k):
                    a_tile = a_rows[:, bk : bk + self.max_k]
                    work = a_tile.sum(dim=1)
                    cycles += _list_schedule(work[keep & (work > 0)].tolist(), self.lanes, per_cycle=1)
                    if self.tile_m is not None:
                        load += _compressed_beats(a_tile, self.bus_elems, self.bus_bits)
                        load += _ceil_div(g.b[bk : bk + self.max_k, cols].numel(), self.bus_elems)
        if self.tile_m is None:  # A (skipped) compressed once; B dense once
            load = _compressed_beats(g.a, self.bus_elems, self.bus_bits) + _ceil_div(g.b.numel(), self.bus_elems)
        first = _ceil_div(min(k, self.max_k) * min(n, self.vector), self.bus_elems)  # the first B block
        return cycles, load, first


class MatchPEs(Candidate):
    """``pes`` per-output PEs, each issuing up to ``matches`` effectual pairs per cycle."""

    name = "match_pes"

    def __init__(self, *, pes: int, matches: int, group: int, bus_elems: int = 16, operand_bits: int = 8,
                 name: str | None = None) -> None:
        super().__init__(bus_elems=bus_elems, operand_bits=operand_bits, drain_elems=group)
        self.pes = _check("pes", pes)
        self.matches = _check("matches", matches)
        self.group = _check("group", group)
        if name is not None:
            self.name = name

    @property
    def multipliers(self) -> int:
        return self.pes * self.matches

    def _compute(self, g: GemmPattern) -> tuple[int, int, int]:
        m = g.shape[0]
        pairs = g.a.to(torch.float64) @ g.b.to(torch.float64)
        if g.mask is not None:
            pairs = pairs * g.mask
        cost = torch.ceil(pairs.flatten() / self.matches).to(torch.int64).tolist()
        cycles = _list_schedule(cost, self.pes, per_cycle=self.group, visit_all=True)
        # Both operands compressed (two-sided skipping needs both bitmaps), each once.
        load = (_compressed_beats(g.a, self.bus_elems, self.bus_bits)
                + _compressed_beats(g.b, self.bus_elems, self.bus_bits))
        first = _ceil_div(load, max(1, _ceil_div(m, self.group)))  # one group of rows' operands
        return cycles, load, first


class DenseArray(Candidate):
    """``rows x cols`` output-stationary MACs, every product issued."""

    name = "dense_array"

    def __init__(self, *, rows: int, cols: int, bus_elems: int = 16, operand_bits: int = 8) -> None:
        super().__init__(bus_elems=bus_elems, operand_bits=operand_bits, drain_elems=cols)
        self.rows = _check("rows", rows)
        self.cols = _check("cols", cols)

    @property
    def multipliers(self) -> int:
        return self.rows * self.cols

    def _orientations(self, g: GemmPattern) -> tuple[GemmPattern, ...]:
        return (g, g.transposed())

    def _compute(self, g: GemmPattern) -> tuple[int, int, int]:
        m, n, k = g.shape
        cycles = _ceil_div(m, self.rows) * _ceil_div(n, self.cols) * k
        load = _ceil_div(g.a.numel() + g.b.numel(), self.bus_elems)
        first = _ceil_div(k * (min(m, self.rows) + min(n, self.cols)), self.bus_elems)
        return cycles, load, first


def _list_schedule(costs: list[int], workers: int, *, per_cycle: int, visit_all: bool = False) -> int:
    """Makespan of handing ``costs`` in order to ``workers`` (each takes the next item when free),
    at most ``per_cycle`` items per cycle, never out of order.

    ``visit_all``: ``costs`` lists every output the dispatcher visits, zeros included, and it visits
    ``per_cycle`` of them per cycle whether or not they have work (a group of outputs per cycle).
    Otherwise ``costs`` lists only items with work.
    """
    free = [0] * workers
    end = 0
    last, used = 0, 0  # cycle of the latest dispatch, items dispatched in it
    for index, cost in enumerate(costs):
        earliest = index // per_cycle if visit_all else 0
        # Items are taken in order: never before the previous one, nor in a cycle already full.
        start = max(earliest, last) if cost <= 0 else max(heapq.heappop(free), earliest, last)
        if start == last and used >= per_cycle:
            start += 1
        if start != last:
            last, used = start, 0
        if cost <= 0:  # an output without work: visited, no worker, no dispatch slot
            end = max(end, start + 1)
            continue
        used += 1
        heapq.heappush(free, start + cost)
        end = max(end, start + cost)
    return end


def ideal_cycles(g: GemmPattern, multipliers: int) -> float:
    """Effectual MACs / multipliers: the cycles of a perfect skipping core (no overhead)."""
    return g.effectual_macs / multipliers if multipliers else math.inf
