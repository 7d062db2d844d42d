"""Cycle model of the vector core (``hw.vector_core``): predicted cycles of a program, no stalls.

``predict_vector_cycles(program, lanes=..., vector=..., ...)`` steps the core's scheduling rules
one clock cycle at a time, with ``i_cmd`` and ``i_data`` always valid and ``o_data`` always
ready. It is derived from the RTL's rules (the timing constants below name each latency), not
from its registers, and it is checked cycle for cycle against the RTL in
``tests/hw/test_vector_core.py``. Rules:

*Loader.* A command is taken when the loader is idle, its previous descriptor is gone and, for a
GEMM, one of the two buffer sets is free. A GEMM then takes the beats of the part of its tile
that is sent (``ref.vector_extent``: ``rows`` rows, ``k_len`` columns) one per cycle: A's rows
(bitmap rows in groups of ``G = max(1, bus_bits // tile_k)``: ``ceil(G * tile_k / bus_bits)``
bitmap beats per group and ``ceil(nnz / bus_elems)`` value beats per row; ``ceil(k_len /
bus_elems)`` beats for a dense row), one idle cycle, B's rows (``k_len * vector / bus_elems`` beats;
a beat of several rows writes one per cycle, so at least ``k_len`` cycles), one idle cycle, and
with a mask its rows (``ceil(vector / bus_bits)`` each) and one idle cycle. Its
descriptor is offered the cycle after, enters the 4-entry queue at the end of that cycle and is
readable one cycle later; the next command can be taken in that cycle too. A DRAIN's descriptor
is offered the cycle after the DRAIN was taken.

*Order.* Commands leave the queue in order: a GEMM when no GEMM runs and no DRAIN reads its
accumulator, a DRAIN when no DRAIN runs and no GEMM writes its accumulator; so a drain runs under
the next output tile's GEMMs.

*GEMM* (from the cycle after it was taken). Rows are read in order, one per cycle, while the
``ROW_QUEUE``-row queue (counting the read in flight) has room; a row read in cycle t can be
dispatched from t + 2, and the dispatcher offers the queue's first row, one row per cycle at most.
A row with work goes to the lowest-numbered lane holding a credit (``LANE_CREDITS`` per lane: the
lane's input register); down the dispatch chain it is in lane j's input register from
``ROW_ARRIVAL + j`` cycles later, and the credit comes back ``CREDIT_RETURN`` cycles after the lane
moved the row into issue. A row without work takes no lane, except that a row that accumulates
under a partial mask must be written (as zeros) in a cycle no result arrives. A lane moves a row
from its input register into issue when it has nothing left to issue or issues its last nonzero;
it issues one nonzero per cycle, the first only while fewer than ``RESULT_DEPTH`` of its rows are
between first issue and leaving the lane. A row's sums are stored ``RESULT_WRITE`` cycles after its
last issue; from the next cycle on, the oldest stored result of a lane goes into the slot passing
it on the result chain if that slot is empty (each lane passes its slot to the next lane a cycle
later; the last lane's slot reaches the write-back), and its memory slot is free for an issue the
cycle after. The GEMM ends when every row has left the dispatcher, every lane and slot was empty
the cycle before (the lanes report it through a register), every credit is home and the
write-back pipeline (``WRITEBACK_STAGES`` registers) is empty; its buffer set is free from the next
cycle, and the next command can start then.

*DRAIN*: ``tile_m`` result beats, the first ``DRAIN_FIRST_BEAT`` cycles after it was taken; the
next command can start ``DRAIN_TAIL`` cycles after its last beat.

``total`` counts cycles from the first command's cycle to the last result beat, inclusive, as the
RTL runs count them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ref.contract.commands import Drain, Program, TileGemm
from ref.vector_extent import tile_extent

__all__ = ["VectorCycleEstimate", "predict_vector_cycles"]

#: Descriptors that may wait between the loader and the compute side.
DESCRIPTOR_QUEUE = 4
#: Lane: rows it may hold before issue (its input register): the dispatcher's credits per lane.
LANE_CREDITS = 1
#: Dispatcher: a row picked in cycle d is in lane j's input register from d + this + j (the
#: core's dispatch register, then one chain register per lane before it).
ROW_ARRIVAL = 2
#: Lane: a credit spent on a row comes back this many cycles after the row left the input register.
CREDIT_RETURN = 2
#: Lane: rows between first issue and their result leaving the lane (its result memory's depth).
RESULT_DEPTH = 16
#: Lane: a row's sums are stored this many cycles after its last issue (and can leave the cycle after).
RESULT_WRITE = 6
#: Dispatcher: rows read ahead of the dispatch decision; a row read in cycle t is in the queue
#: (and can be dispatched) from cycle t + 2.
ROW_QUEUE = 3
#: Write-back: registers after the result chain (the arriving result, the accumulator read, its
#: registered data, the sum); each must be empty to end a GEMM.
WRITEBACK_STAGES = 4
#: Drain: the first result beat leaves this many cycles after the DRAIN was taken (3 of them the
#: settle that lets the drain's settings reach the requantizers, ``hw.vector_core.DRAIN_SETTLE``).
DRAIN_FIRST_BEAT = 10
#: Drain: the next command can start this many cycles after the last beat.
DRAIN_TAIL = 1


@dataclass(frozen=True)
class VectorCycleEstimate:
    """What :func:`predict_vector_cycles` returns.

    total: cycles from the first command to the last result beat, inclusive.
    gemm_cycles, drain_cycles: cycles the compute side spent running GEMMs and DRAINs.
    wait_cycles: cycles the compute side was idle waiting for a loaded command.
    load_beats: data beats the program sends.
    issued: nonzeros issued by all lanes (each ``vector`` MACs).
    """

    total: int
    gemm_cycles: int
    drain_cycles: int
    wait_cycles: int
    load_beats: int
    issued: int


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class _Lane:
    pending: tuple[int, int, int] | None = None   # (row, nonzeros, first usable cycle): the input register
    credits: int = LANE_CREDITS
    credit_back: deque = None                 # cycles credits come back
    remaining: int = 0                        # nonzeros of the row in issue
    started: bool = False
    in_flight: int = 0
    written: deque = None                     # store cycles of results still in the lane, oldest first
    slot: bool = False                        # the lane's result-chain register holds a result

    def __post_init__(self) -> None:
        self.credit_back, self.written = deque(), deque()

    def settle(self, t: int) -> None:
        """Credits that come back by cycle ``t``."""
        while self.credit_back and self.credit_back[0] <= t:
            self.credit_back.popleft()
            self.credits += 1

    def stored(self, t: int) -> bool:
        return bool(self.written) and t > self.written[0]

    def busy(self) -> bool:
        return self.pending is not None or self.remaining > 0 or self.in_flight > 0 or self.slot


def _gemm_rows(cmd: TileGemm, rows: int, k_len: int, *, vector: int, sparse: bool) -> list[tuple[int, str]]:
    """Per row sent: its nonzeros to issue and what the dispatcher does with it ("lane", "zero"
    (a write of zeros) or "none")."""
    a = cmd.a.to_dense()
    full = (1 << vector) - 1
    bitmap = cmd.a.format == "bitmap" and sparse
    out = []
    for r in range(rows):
        nnz = int((a[r] != 0).sum()) if bitmap else k_len
        mask = full if cmd.out_mask is None else sum(1 << c for c, v in enumerate(cmd.out_mask[r].tolist()) if v)
        if nnz > 0 and (mask != 0 or not sparse):
            out.append((nnz, "lane"))
        elif cmd.accumulate and mask not in (0, full):
            out.append((0, "zero"))
        else:
            out.append((0, "none"))
    return out


def _gemm_beats(cmd: TileGemm, rows: int, k_len: int, *, tile_k: int, vector: int, bus_elems: int, bus_bits: int,
                sparse: bool) -> tuple[int, int, int]:
    """Beats of A, B and the mask of one GEMM on the vector core's data stream."""
    a = cmd.a.to_dense()
    if cmd.a.format == "bitmap" and sparse:
        group = max(1, bus_bits // tile_k)   # rows sharing a bitmap beat
        n_a = _ceil_div(rows, group) * _ceil_div(group * tile_k, bus_bits)
        n_a += sum(_ceil_div(int((a[r] != 0).sum()), bus_elems) for r in range(rows))
    else:
        n_a = rows * _ceil_div(k_len, bus_elems)
    n_b = _ceil_div(k_len * vector, bus_elems)
    n_m = rows * _ceil_div(vector, bus_bits) if cmd.out_mask is not None else 0
    return n_a, n_b, n_m


def predict_vector_cycles(program: Program, *, lanes: int, vector: int, tile_m: int, tile_k: int, bus_elems: int,
                          operand_bits: int, sparse: bool = True, max_cycles: int = 50_000_000) -> VectorCycleEstimate:
    """Predict the vector core's cycles for ``program`` (see the module docstring)."""
    for name, value in (("lanes", lanes), ("vector", vector), ("tile_m", tile_m), ("tile_k", tile_k),
                        ("bus_elems", bus_elems), ("operand_bits", operand_bits)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"predict_vector_cycles: {name} must be an int >= 1, got {value!r}")
    if (program.tile_m, program.tile_n, program.tile_k) != (tile_m, vector, tile_k):
        raise ValueError(f"predict_vector_cycles: program tiles {(program.tile_m, program.tile_n, program.tile_k)} "
                         f"are not the core's (tile_m, vector, tile_k) = {(tile_m, vector, tile_k)}")
    bus_bits = bus_elems * operand_bits
    commands = list(program.commands)

    # ---- loader: when each command's descriptor is readable ---------------------------------------
    # The loader depends on the compute side only through buffer sets and the queue, so both are
    # stepped together below.
    lanes_state = [_Lane() for _ in range(lanes)]
    queue: deque = deque()            # (command index, set, cycle it became readable)
    used = [False, False]
    next_cmd = 0
    loader_busy_until = -1            # last load cycle of the GEMM being loaded
    desc_pending: tuple[int, int] | None = None   # (command index, set) offered from the cycle after loading
    desc_from = 0
    load_set = 0
    load_beats = 0

    running = draining = False      # the compute engine runs a GEMM; the drain engine a DRAIN
    gemm_acc = drain_acc = -1
    taken = -1                      # the last command taken from the queue
    cur_set = 0
    rows: list[tuple[int, str]] = []
    fetch = 0                       # next row to read
    queue_rows: deque = deque()     # rows read ahead, waiting for their dispatch decision
    arriving = None                 # the row read last cycle (enters the queue this cycle)
    wb = [False] * WRITEBACK_STAGES
    lanes_busy_before = False       # any lane busy in the cycle before (the lanes' registered busy)
    drain_start = 0
    last_beat = -1
    gemm_cycles = drain_cycles = wait_cycles = issued = 0
    t = 0
    while True:
        # ---- combinational decisions of cycle t ----
        # Loader.
        take_cmd = None
        if next_cmd < len(commands) and desc_pending is None and t > loader_busy_until:
            cmd = commands[next_cmd]
            if isinstance(cmd, Drain) or not all(used):
                take_cmd = next_cmd
        push = desc_pending is not None and t >= desc_from and len(queue) < DESCRIPTOR_QUEUE
        # Compute.
        take = False
        if queue and queue[0][2] <= t:
            head_cmd = commands[queue[0][0]]
            if isinstance(head_cmd, TileGemm):
                take = not running and not (draining and drain_acc == head_cmd.acc)
            else:
                take = not draining and not (running and gemm_acc == head_cmd.acc)
        lane_issue = []
        for lane in lanes_state:
            lane.settle(t)
            lane_issue.append(lane.remaining > 0 and (lane.started or lane.in_flight < RESULT_DEPTH))
        # The result chain: lane j sees the slot lane j - 1 holds (lane 0 an empty one).
        incoming = lanes_state[-1].slot
        inserts = [not (j and lanes_state[j - 1].slot) and lane.stored(t) for j, lane in enumerate(lanes_state)]
        head_done = False
        pick = None
        zero_grant = False
        head_valid = bool(queue_rows)
        head = queue_rows[0] if head_valid else 0
        read = running and fetch < len(rows) and len(queue_rows) + (arriving is not None) < ROW_QUEUE
        if running and head_valid:
            kind = rows[head][1]
            if kind == "lane":
                pick = next((j for j, lane in enumerate(lanes_state) if lane.credits > 0), None)
                head_done = pick is not None
            elif kind == "zero":
                zero_grant = not incoming
                head_done = zero_grant
            else:
                head_done = True
        w0 = incoming or zero_grant
        # Lanes report busy a cycle late; the credits cover a row on its way in.
        lanes_busy = any(lane.busy() for lane in lanes_state)
        credits_home = all(lane.credits == LANE_CREDITS for lane in lanes_state)
        run_done = (running and fetch == len(rows) and arriving is None and not head_valid and not w0
                    and not any(wb) and not lanes_busy_before and credits_home)
        lanes_busy_before = lanes_busy
        beat_now = draining and drain_start + DRAIN_FIRST_BEAT <= t < drain_start + DRAIN_FIRST_BEAT + tile_m
        if beat_now:
            last_beat = t
        drain_done = draining and t == drain_start + DRAIN_FIRST_BEAT + tile_m - 1
        # ---- statistics ----
        gemm_cycles += running
        drain_cycles += draining
        wait_cycles += not running and not draining and taken < len(commands) - 1
        # ---- edge at the end of cycle t ----
        if take_cmd is not None:
            cmd = commands[take_cmd]
            if isinstance(cmd, TileGemm):
                load_set = 0 if not used[0] else 1
                used[load_set] = True
                extent = tile_extent(cmd, k_step=max(1, bus_elems // vector))
                n_a, n_b, n_m = _gemm_beats(cmd, *extent, tile_k=tile_k, vector=vector, bus_elems=bus_elems,
                                            bus_bits=bus_bits, sparse=sparse)
                load_beats += n_a + n_b + n_m
                # B takes a cycle per row at least: a beat of several rows writes one per cycle.
                b_cycles = max(n_b, extent[1])
                length = n_a + 1 + b_cycles + 1 + (n_m + 1 if cmd.out_mask is not None else 0)
                loader_busy_until = t + length
                desc_pending, desc_from = (take_cmd, load_set), t + length + 1
            else:
                desc_pending, desc_from = (take_cmd, 0), t + 1
            next_cmd += 1
        if push:
            queue.append((*desc_pending, t + 1))
            desc_pending = None
        for j, lane in enumerate(lanes_state):
            if lane_issue[j]:
                issued += 1
                if not lane.started:
                    lane.in_flight += 1
                lane.remaining -= 1
                lane.started = lane.remaining > 0
                if lane.remaining == 0:
                    lane.written.append(t + RESULT_WRITE)
            if inserts[j]:
                lane.written.popleft()
                lane.in_flight -= 1
            # The input register moves into issue when nothing is left to issue after this cycle.
            if lane.remaining == 0 and lane.pending is not None and lane.pending[2] <= t:
                lane.remaining, lane.started = lane.pending[1], False
                lane.pending = None
                lane.credit_back.append(t + CREDIT_RETURN)
            if pick == j:
                lane.credits -= 1
                lane.pending = (head, rows[head][0], t + ROW_ARRIVAL + j)
        wb = [w0, *wb[:-1]]
        # Every lane's slot moves on: its own result if it inserted one, else what the lane before held.
        slots = [inserts[j] or (j > 0 and lanes_state[j - 1].slot) for j in range(lanes)]
        for lane, slot in zip(lanes_state, slots, strict=True):
            lane.slot = bool(slot)
        if running:
            if head_done:
                queue_rows.popleft()
            if arriving is not None:
                queue_rows.append(arriving)
            arriving = fetch if read else None
            fetch += read
            if run_done:
                used[cur_set] = False   # the loader may take a GEMM into this set next cycle
                running = False
        if drain_done:
            draining = False
        if take:
            index, command_set, _ = queue.popleft()
            taken = index
            cmd = commands[index]
            if isinstance(cmd, TileGemm):
                running, gemm_acc, cur_set = True, cmd.acc, command_set
                rows = _gemm_rows(cmd, *tile_extent(cmd, k_step=max(1, bus_elems // vector)), vector=vector,
                                  sparse=sparse)
                fetch = 0
            else:
                draining, drain_acc, drain_start = True, cmd.acc, t
        if taken == len(commands) - 1 and not running and not draining:
            break
        t += 1
        if t > max_cycles:
            raise RuntimeError(f"predict_vector_cycles: no end within {max_cycles} cycles")
    return VectorCycleEstimate(total=last_beat + 1, gemm_cycles=gemm_cycles, drain_cycles=drain_cycles,
                               wait_cycles=wait_cycles, load_beats=load_beats, issued=issued)
