"""Analytical cycle model of the generated sparse core (``hw.core.SparseCore``).

``predict_cycles(program, lanes=..., tile_m=..., ...)`` predicts the cycles the core needs for a
``ref.contract.Program`` with no stream stalls (``i_cmd`` and ``i_data`` always valid, ``o_data``
always ready), from the configuration parameters and the operands' zero patterns and masks. It is
derived from the scheduling rules of the RTL, not copied from its registers; the pipeline
latencies it needs are the named constants below (cycle offsets, counted in clock edges).

Model
-----
Two timelines run side by side, in command order:

*Loader* (``hw.operand_loader``). One operand beat per cycle. A GEMM taken at cycle ``s`` receives
its ``B`` beats in cycles ``s+1 .. s+B`` and its descriptor is readable by the compute side at
``s+B+2``, when the loader can take the next command; a DRAIN's descriptor is readable one cycle
after it is taken. A GEMM needs a free buffer set (two sets, alternating; a set is freed when the
GEMM that used it finishes), and every command a slot in the 4-entry descriptor queue. Beats of
one ``tile_k`` vector: ``tile_k / bus_elems`` (dense format), or ``ceil(tile_k / bus_bits)``
bitmap beats plus ``ceil(nnz / bus_elems)`` value beats (bitmap format; the dense core gets every
operand dense); a mask adds ``ceil(tile_n / bus_bits)`` beats per row.

*Compute* (``hw.core``: IDLE -> RUN/DRAIN -> IDLE). A command starts when the previous one has
finished and its descriptor is readable. A GEMM is a list schedule of its work items:

- the dispatcher visits groups of ``lanes`` columns of one row, row-major, at most one group per
  cycle (a group without work still takes its cycle);
- the i-th pending item of a group goes to the i-th lane with room; a lane has room while fewer
  than ``LANE_QUEUE_DEPTH`` of its items are unfinished (registered: an item finishing in cycle c
  makes room in c+1); items left over wait in the group register for the next cycle;
- a lane runs its items in order, one ``k`` per cycle: an item pushed in cycle ``p`` starts no
  earlier than ``p+LANE_START_DELAY`` (its input register) and right after the lane's previous
  item, and costs ``popcount(A row AND B column)`` cycles (sparse core; outputs that are masked
  or have no effectual ``k`` are no item) or ``tile_k`` cycles (dense core: every output, masked
  or not);
- an item starts only with a free result slot: at most ``LANE_RESULT_SLOTS`` items per lane from
  first ``k`` until their result has been written to its bank (``LANE_RESULT_LATENCY`` cycles
  after the last ``k``); each accumulator bank (``n mod lanes``) takes one result per cycle, the
  lowest lane first, and a lane's results leave in order;
- the GEMM is finished ``WRITEBACK_CYCLES`` after the last result left its lane, and the next
  command starts one cycle later.

Bank conflicts are resolved greedily in the order results become ready (the RTL decides cycle by
cycle); this is the model's only approximation of the schedule. Against the Amaranth simulation of
the RTL it has been cycle-exact on every program tried (tests/hw/test_cycle_model_vs_rtl.py).

A DRAIN puts ``tile_m * tile_n / lanes`` beats on ``o_data``, one per cycle, the first
``DRAIN_FIRST_BEAT`` cycles after it starts; the next command starts ``DRAIN_TAIL`` cycles after
the last beat.

Breakdown
---------
The compute timeline from cycle 0 to the end is split into categories that add up to ``total``:

- ``load``: cycles the compute side waits for a command's operands (load not hidden by compute);
- ``fill``: per GEMM, the cycles from its start to its first dispatch (``GEMM_FILL``);
- ``compute``: per GEMM, from the first dispatch until the dispatcher and every lane are done
  (the last ``k``, or the last group for a GEMM without work);
- ``pipeline_drain``: per GEMM, from then until the next command can start (result latency,
  write-back), plus per DRAIN the cycles other than its beats (``DRAIN_FIRST_BEAT + DRAIN_TAIL - 1``,
  less the tail after the program's last beat);
- ``drain_beats``: the DRAIN's result beats.

``lane_imbalance`` (not a part of the sum) is ``compute - effectual_macs / lanes``: the compute
time not spent issuing MACs on every lane (imbalance, dispatch bubbles, result-slot stalls).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from ref.contract.commands import Drain, Operand, Program, TileGemm

__all__ = [
    "CATEGORIES",
    "DESCRIPTOR_QUEUE",
    "DRAIN_FIRST_BEAT",
    "DRAIN_TAIL",
    "GEMM_FILL",
    "LANE_QUEUE_DEPTH",
    "LANE_RESULT_LATENCY",
    "LANE_RESULT_SLOTS",
    "LANE_START_DELAY",
    "LOADER_DESC_LATENCY",
    "WRITEBACK_CYCLES",
    "CommandCycles",
    "CycleEstimate",
    "ItemPlacement",
    "gemm_load_beats",
    "gemm_placements",
    "predict_cycles",
]

# ---- pipeline constants of the RTL (cycle offsets) ------------------------------------------------
#: Loader: a GEMM taken in cycle s has its descriptor readable (and the loader free) in s + B + this.
LOADER_DESC_LATENCY = 2
#: Loader: commands (GEMM descriptors loaded or loading, DRAINs) that may wait for the compute side.
DESCRIPTOR_QUEUE = 4
#: Compute: a GEMM started in cycle T has its first group in the dispatcher's register in T + this.
GEMM_FILL = 3
#: Lane: work items a lane holds (in its input register, queued or running); ``ready`` is registered.
LANE_QUEUE_DEPTH = 3
#: Lane: an item handed to a lane in cycle p can issue its first ``k`` in cycle p + this at the
#: earliest (one cycle in the lane's input register, one to enter its queue).
LANE_START_DELAY = 2
#: Lane: items between their first ``k`` and their result leaving the lane (result slots).
LANE_RESULT_SLOTS = 11
#: Lane: cycles from an item's last ``k`` to its result being offered to the bank (I1, IC, I2, I3,
#: I4, three PE stages, result FIFO, output register).
LANE_RESULT_LATENCY = 10
#: Core: the RUN state is left this many cycles after the last result left its lane (bank input
#: register, write-back stage, then the idle check); the next command starts one cycle after that.
WRITEBACK_CYCLES = 3
#: Drain: first result beat on ``o_data`` this many cycles after the DRAIN starts (bank read, read-value
#: register, the requantizer's two registers, output register).
DRAIN_FIRST_BEAT = 6
#: Drain: the next command starts this many cycles after the last beat.
DRAIN_TAIL = 1

#: Categories of :attr:`CycleEstimate.categories`; they sum to ``total``.
CATEGORIES: tuple[str, ...] = ("load", "fill", "compute", "pipeline_drain", "drain_beats")


@dataclass(frozen=True)
class CommandCycles:
    """Predicted timing of one command (cycle numbers count from the first command, cycle 0).

    kind: ``"gemm"`` or ``"drain"``.
    load_beats: operand/mask beats on ``i_data`` (0 for a drain).
    load_start, load_end: cycle the loader took the command, cycle its descriptor was readable.
    start, end: the compute side runs the command in cycles ``[start, end)``; ``end`` is the first
        cycle the next command could start.
    wait: cycles the compute side sat idle before ``start`` waiting for this command's descriptor.
    fill, compute, pipeline_drain, drain_beats: this command's share of the categories
        (``wait + fill + compute + pipeline_drain + drain_beats == end - previous end``).
    items: work items dispatched (outputs that cost lane time).
    effectual_macs: MACs issued to the lanes (``tile_m * tile_n * tile_k`` in the dense core).
    lane_imbalance: ``compute - effectual_macs / lanes`` (GEMMs; 0 for drains).
    """

    index: int
    kind: str
    load_beats: int
    load_start: int
    load_end: int
    start: int
    end: int
    wait: int
    fill: int
    compute: int
    pipeline_drain: int
    drain_beats: int
    items: int
    effectual_macs: int
    lane_imbalance: float

    @property
    def cycles(self) -> int:
        """Cycles charged to this command: its wait plus its run, ``end - previous end``."""
        return self.wait + self.fill + self.compute + self.pipeline_drain + self.drain_beats


@dataclass(frozen=True)
class CycleEstimate:
    """What :func:`predict_cycles` returns.

    total: cycles from the first command to the last result beat (inclusive) when the program
        ends with a DRAIN, as ``sim.core_amaranth`` counts them; for a program ending with GEMMs,
        until the core could start another command (``sim.core_amaranth`` only counts to the last
        result beat, so trailing GEMMs are not in its count).
    commands: one :class:`CommandCycles` per command, in order.
    categories: cycles per category of :data:`CATEGORIES`; the values sum to ``total``.
    lane_imbalance: sum over GEMMs of ``compute - effectual_macs / lanes``.
    effectual_macs, load_beats: totals over the program.
    """

    total: int
    commands: tuple[CommandCycles, ...]
    categories: dict[str, int] = field(default_factory=dict)
    lane_imbalance: float = 0.0
    effectual_macs: int = 0
    load_beats: int = 0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_param(name: str, value: object, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"predict_cycles: {name} must be an int >= {low}, got {value!r}")
    return value


def _vector_beats(op: Operand, *, rows: bool, bitmap: bool, tile_k: int, bus_elems: int, bus_bits: int) -> int:
    """Beats of all vectors of ``op`` (A's rows when ``rows``, else B's columns)."""
    nz = op.nonzero()
    vectors = nz.shape[0] if rows else nz.shape[1]
    if not bitmap:
        return vectors * (tile_k // bus_elems)
    nnz = nz.sum(dim=1 if rows else 0)
    value_beats = int(((nnz + bus_elems - 1) // bus_elems).sum())
    return vectors * _ceil_div(tile_k, bus_bits) + value_beats


def gemm_load_beats(cmd: TileGemm, *, tile_m: int, tile_n: int, tile_k: int, bus_elems: int, operand_bits: int,
                    sparse: bool) -> int:
    """Beats of ``cmd``'s operands and mask on the core's data stream (docs/core.md)."""
    bus_bits = bus_elems * operand_bits
    beats = _vector_beats(cmd.a, rows=True, bitmap=sparse and cmd.a.format == "bitmap", tile_k=tile_k,
                          bus_elems=bus_elems, bus_bits=bus_bits)
    beats += _vector_beats(cmd.b, rows=False, bitmap=sparse and cmd.b.format == "bitmap", tile_k=tile_k,
                           bus_elems=bus_elems, bus_bits=bus_bits)
    if cmd.out_mask is not None:
        beats += tile_m * _ceil_div(tile_n, bus_bits)
    return beats


@dataclass(frozen=True)
class ItemPlacement:
    """Where the model puts one work item (one output of a GEMM): its PE ``lane`` and the cycles
    of its first and last MAC (``first_k``..``last_k``, cycles counted from the program's start)."""

    lane: int
    first_k: int
    last_k: int


@dataclass
class _GemmSchedule:
    dispatch_end: int   # first cycle after the last group left the dispatcher's register
    work_end: int       # first cycle after the last k of any lane (dispatch_end if no items)
    result_end: int     # last cycle a result left a lane (-1 if no items)
    items: int
    macs: int


def _schedule_gemm(work: list[list[int]], *, lanes: int, start: int,
                   placements: dict[tuple[int, int], ItemPlacement] | None = None) -> _GemmSchedule:
    """List-schedule one GEMM's work items (``work[m][n]`` = cycles of output (m, n), 0 = no item)
    onto the lanes; the dispatcher's first group is in its register in cycle ``start``. With
    ``placements``, every item's lane and MAC cycles are recorded there by (m, n)."""
    # Per lane: ends of its items (last-k cycle) and the cycles their results leave, in order.
    ends: list[list[int]] = [[] for _ in range(lanes)]
    leaves: list[list[int]] = [[] for _ in range(lanes)]
    # Results of all lanes, per bank: cycles a result is taken (one per cycle per bank).
    bank_busy: list[set[int]] = [set() for _ in range(lanes)]
    pending_results: list[tuple[int, int, int, int]] = []   # (ready cycle, lane, bank, item index)
    items = macs = 0
    c = start
    width = len(work[0]) if work else 0

    def room(j: int, x: int) -> bool:
        e = ends[j]
        return len(e) < LANE_QUEUE_DEPTH or e[-LANE_QUEUE_DEPTH] < x

    def settle(limit: float) -> None:
        """Give every result offered before ``limit`` its leaving cycle: a lane's results leave in
        order, and a bank takes one per cycle. Conflicts are resolved in the order the results became
        ready, the lowest lane first on a tie (the RTL's fixed priority)."""
        pending_results.sort()
        keep = []
        for ready, j, bank, idx in pending_results:
            if ready >= limit:
                keep.append((ready, j, bank, idx))
                continue
            t = max(ready, leaves[j][idx - 1] + 1) if idx else ready
            while t in bank_busy[bank]:
                t += 1
            bank_busy[bank].add(t)
            leaves[j][idx] = t
        pending_results[:] = keep

    for m, row in enumerate(work):
        for g in range(0, width, lanes):
            pending = [(g + i, w) for i, w in enumerate(row[g:g + lanes]) if w]
            while pending:
                free = [j for j in range(lanes) if room(j, c)]
                for j, (n, w) in zip(free, pending, strict=False):
                    e = ends[j]
                    s = max(c + LANE_START_DELAY, e[-1] + 1 if e else c + LANE_START_DELAY)
                    if len(e) >= LANE_RESULT_SLOTS:
                        idx = len(e) - LANE_RESULT_SLOTS
                        if leaves[j][idx] < 0:
                            settle(e[idx] + LANE_RESULT_LATENCY + 1)
                        s = max(s, leaves[j][idx] + 1)
                    e.append(s + w - 1)
                    leaves[j].append(-1)
                    if placements is not None:
                        placements[(m, n)] = ItemPlacement(lane=j, first_k=s, last_k=s + w - 1)
                    pending_results.append((s + w - 1 + LANE_RESULT_LATENCY, j, n % lanes, len(e) - 1))
                    items += 1
                    macs += w
                pending = pending[len(free):]
                if not pending:
                    break
                # The next cycle in which some lane has room.
                c = min(c + 1 if len(ends[j]) < LANE_QUEUE_DEPTH else max(c + 1, ends[j][-LANE_QUEUE_DEPTH] + 1)
                        for j in range(lanes))
            c += 1
    settle(math.inf)
    work_end = max([e[-1] + 1 for e in ends if e] + [c])
    result_end = max([lv[-1] for lv in leaves if lv] + [-1])
    return _GemmSchedule(dispatch_end=c, work_end=work_end, result_end=result_end, items=items, macs=macs)


def _work_matrix(cmd: TileGemm, *, tile_k: int, sparse: bool) -> list[list[int]]:
    """Lane cycles of every output of ``cmd`` (0: no work item)."""
    if not sparse:
        m, n = cmd.a.shape[0], cmd.b.shape[1]
        return [[tile_k] * n for _ in range(m)]
    a = cmd.a.nonzero().to(torch.float64)
    b = cmd.b.nonzero().to(torch.float64)
    work = (a @ b).round().to(torch.int64)
    if cmd.out_mask is not None:
        work = torch.where(cmd.out_mask, work, torch.zeros((), dtype=torch.int64))
    return work.tolist()


def predict_cycles(program: Program, *, lanes: int, tile_m: int, tile_n: int, tile_k: int, bus_elems: int,
                   operand_bits: int, sparse: bool) -> CycleEstimate:
    """Predict the core's cycles for ``program`` on a core with these parameters (see the module
    docstring). ``sparse=False`` models the dense baseline core. Raises ``ValueError`` naming the
    argument for parameters that no core has or a program that does not fit them."""
    if not isinstance(program, Program):
        raise ValueError(f"predict_cycles: program must be a ref.contract.Program, got {type(program).__name__}")
    for name, value in (("lanes", lanes), ("tile_m", tile_m), ("tile_n", tile_n), ("tile_k", tile_k),
                        ("bus_elems", bus_elems)):
        _check_param(name, value)
    _check_param("operand_bits", operand_bits, 2)
    if not isinstance(sparse, bool):
        raise ValueError(f"predict_cycles: sparse must be a bool, got {sparse!r}")
    if tile_n % lanes:
        raise ValueError(f"predict_cycles: tile_n = {tile_n} must be a multiple of lanes = {lanes}")
    if tile_k % bus_elems:
        raise ValueError(f"predict_cycles: tile_k = {tile_k} must be a multiple of bus_elems = {bus_elems}")
    for name, value in (("tile_m", tile_m), ("tile_n", tile_n), ("tile_k", tile_k)):
        if getattr(program, name) != value:
            raise ValueError(f"predict_cycles: the program has {name} = {getattr(program, name)} but the core "
                             f"has {name} = {value}")

    drain_beats = tile_m * tile_n // lanes
    # Loader state.
    loader_free = 0                     # first cycle the loader can take a command
    set_free = [0, 0]                   # first cycle each buffer set can be loaded again
    load_set = 0
    desc_written: list[int] = []        # cycle each descriptor entered the queue
    desc_read: list[int] = []           # cycle the compute side took it
    # Compute state.
    compute_free = 0
    out: list[CommandCycles] = []
    for index, cmd in enumerate(program.commands):
        # ---- loader -------------------------------------------------------------------------
        s = loader_free
        if isinstance(cmd, TileGemm):
            s = max(s, set_free[load_set])
        # A free descriptor-queue slot in the take cycle (entries leave when the compute side takes them).
        while True:
            queued = [r for w, r in zip(desc_written, desc_read, strict=True) if w < s <= r]
            if len(queued) < DESCRIPTOR_QUEUE:
                break
            s = min(queued) + 1
        if isinstance(cmd, TileGemm):
            beats = gemm_load_beats(cmd, tile_m=tile_m, tile_n=tile_n, tile_k=tile_k, bus_elems=bus_elems,
                                    operand_bits=operand_bits, sparse=sparse)
            ready = s + beats + LOADER_DESC_LATENCY
            written = ready - 1
            gemm_set = load_set
            load_set ^= 1
        else:
            beats = 0
            written = s
            ready = s + 1
        loader_free = ready
        desc_written.append(written)

        # ---- compute ------------------------------------------------------------------------
        start = max(compute_free, ready)
        wait = start - compute_free
        desc_read.append(start)
        if isinstance(cmd, TileGemm):
            sched = _schedule_gemm(_work_matrix(cmd, tile_k=tile_k, sparse=sparse), lanes=lanes,
                                   start=start + GEMM_FILL)
            done = sched.dispatch_end if sched.result_end < 0 else max(sched.dispatch_end,
                                                                      sched.result_end + WRITEBACK_CYCLES)
            end = done + 1
            set_free[gemm_set] = end
            compute = sched.work_end - (start + GEMM_FILL)
            rec = CommandCycles(
                index=index, kind="gemm", load_beats=beats, load_start=s, load_end=ready, start=start, end=end,
                wait=wait, fill=GEMM_FILL, compute=compute, pipeline_drain=end - sched.work_end, drain_beats=0,
                items=sched.items, effectual_macs=sched.macs, lane_imbalance=compute - sched.macs / lanes)
        else:
            assert isinstance(cmd, Drain)
            end = start + DRAIN_FIRST_BEAT + drain_beats + DRAIN_TAIL - 1
            rec = CommandCycles(
                index=index, kind="drain", load_beats=0, load_start=s, load_end=ready, start=start, end=end,
                wait=wait, fill=0, compute=0, pipeline_drain=DRAIN_FIRST_BEAT + DRAIN_TAIL - 1,
                drain_beats=drain_beats, items=0, effectual_macs=0, lane_imbalance=0.0)
        out.append(rec)
        compute_free = end

    total = compute_free
    if out and out[-1].kind == "drain":
        # The count ends with the last result beat, not with the drain's tail after it.
        last = out[-1]
        total = last.end - DRAIN_TAIL + 1
        out[-1] = dataclasses.replace(last, pipeline_drain=last.pipeline_drain - (last.end - total))
    categories = {
        "load": sum(c.wait for c in out),
        "fill": sum(c.fill for c in out),
        "compute": sum(c.compute for c in out),
        "pipeline_drain": sum(c.pipeline_drain for c in out),
        "drain_beats": sum(c.drain_beats for c in out),
    }
    return CycleEstimate(total=total, commands=tuple(out), categories=categories,
                         lane_imbalance=sum(c.lane_imbalance for c in out),
                         effectual_macs=sum(c.effectual_macs for c in out), load_beats=sum(c.load_beats for c in out))


def gemm_placements(program: Program, estimate: CycleEstimate, index: int, *, lanes: int, tile_k: int,
                    sparse: bool) -> dict[tuple[int, int], ItemPlacement]:
    """The model's placement of every work item of GEMM ``program.commands[index]``: (m, n) ->
    lane and MAC cycles. ``estimate`` is :func:`predict_cycles` of ``program`` with the same
    parameters; it fixes when the GEMM starts. Outputs without an item (masked, no effectual MAC)
    are absent. Used to say which lane computed a result (``sim.compare`` mismatch reports)."""
    cmd = program.commands[index]
    if not isinstance(cmd, TileGemm):
        raise ValueError(f"gemm_placements: command {index} is a {type(cmd).__name__}, not a TileGemm")
    placements: dict[tuple[int, int], ItemPlacement] = {}
    _schedule_gemm(_work_matrix(cmd, tile_k=tile_k, sparse=sparse), lanes=lanes,
                   start=estimate.commands[index].start + GEMM_FILL, placements=placements)
    return placements
