"""The vector core: runs ``ref.contract`` programs on ``lanes`` vector lanes of ``vector`` MACs.

The core the design study chose (docs/design_study.md). A GEMM tile is ``A [tile_m, tile_k] x
B [tile_k, vector]``; the skipped operand is A (the lowering hands the core the GEMM or its
transpose, whichever skips more). Blocks:

- :class:`~hw.vector_loader.VectorLoader` stores a GEMM's A rows (one memory word per row: bitmap
  and packed nonzeros), its B rows (into every lane's copy) and its mask rows into one of two
  buffer sets, while the other set computes.
- The dispatcher walks the tile's rows, one per cycle: a row with nonzeros and at least one
  unmasked output goes to the lowest-numbered lane holding a credit (its input register is free);
  a row without work takes no lane (its outputs are zeroed through the live bits, or, when it
  accumulates under a partial mask, by a write of zeros).
- :class:`~hw.vector_lane.VectorLane` s issue one nonzero per cycle against their B copy.
- The accumulator memory holds ``accumulators x tile_m`` rows of ``vector`` sums. A lane's finished
  row is added to the stored row under the output mask, one row per cycle. Live bits per row make
  a clear free.
- A DRAIN reads one row per cycle through ``vector`` :class:`~hw.requantize.Requantizer` s onto
  ``o_data``, each element with its mask bit (ReLU ``value > 0``, or SWAT's keep bit), pruned by the
  result path's pruner or turned into ReSprop's sparse difference when the command says so.

Commands leave the queue in order. A GEMM starts when its operands are stored, the previous GEMM
has finished (every row written back) and no drain reads its accumulator; a DRAIN starts when the
previous drain has finished and no GEMM writes its accumulator. So accumulating GEMMs and drains
see every earlier write, and the drain of one output tile runs under the GEMMs of the next (the
lowering alternates two accumulators).

The lanes spread over the chip, so no wide bus converges on one place: rows reach the lanes down
a dispatch chain and results come back along a result chain of slots (``hw.vector_lane``), and
between the lanes and the arbiters every signal leaves a register (LFE5U-85F's routing, not its
logic, set the clock of the versions with shared buses: docs/design_study.md). The dispatcher
keeps a credit per lane beside its arbiter; a lane returns a credit with one registered pulse.
Cycle by cycle, for a row dispatched in cycle d to lane j whose last nonzero issues in cycle t::

    d        dispatch: the lowest lane with a credit (the credit is spent)
    d+1      the row in the core's dispatch register (lane 0's chain input)
    d+2+j    earliest first issue in lane j
    t+5      the sums are stored in the lane's result memory
    s        (from t+6) the lane puts them into an empty slot of the result chain
    a        (s + lanes - j) the slot leaves the last lane: WG
    a+1      WG: the accumulator row, its mask row and its live bit are read
    a+2      W1B: the memories' outputs registered
    a+3      W2: stored + new under the mask
    a+4      written

A row that accumulates under a partial mask without work is written as zeros in a cycle no slot
arrives.


"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.bits import popcount, tree_sum
from hw.drain_prune import PruneDraws
from hw.drain_resprop import DrainReSprop
from hw.layouts import OP_GEMM, vector_command_layout
from hw.mac import TARGETS
from hw.requantize import Requantizer, RequantizerControls
from hw.result_path_ports import result_path_ports
from hw.vector_lane import VectorLane
from hw.vector_loader import BUFFER_SETS, VectorLoader, vector_descriptor_layout

__all__ = ["VectorCore", "VectorCoreParams", "vector_counters_layout"]

#: Commands that may wait, loaded or not, between the loader and the compute side.
DESCRIPTOR_QUEUE = 4
#: Rows read ahead of the dispatch decision (enough for one row per cycle: a read enters the queue
#: two cycles after it is issued).
ROW_QUEUE = 3
#: Copies of each per-drain constant (the pruner's tau, the top-K threshold, the drain command's
#: settings and their decoding) for the requantizers, copy g delayed 1 + g cycles: at most 4, so
#: the last settles before it is first used (``DRAIN_SETTLE``).
CONSTANT_COPIES = 4
#: Cycles between a drain's start and its first accumulator read. The drain's settings reach the
#: requantizers, spread across the chip beside their accumulator memories, through the copies
#: above; the settle lets the last copy of the decoded shift and limit (registered once, then
#: delayed up to CONSTANT_COPIES cycles) arrive before the first value does. The drain runs under
#: the next tile's GEMMs, so this costs the demo iteration 0.2-0.3 % of its cycles.
DRAIN_SETTLE = 3


@dataclass(frozen=True)
class VectorCoreParams:
    """Geometry and widths of a :class:`VectorCore` (validated on construction).

    lanes: vector lanes, 1..32.  vector: MACs per lane and the tile's columns (``tile_n``), 1..64,
    a multiple or a divisor of ``bus_elems``.  tile_m: rows of a tile, 1..1024.  tile_k: the reduction length of
    a tile, a multiple of ``bus_elems``, 1..1024.  operand_bits: 2..18.  acc_bits: at least
    ``2 * operand_bits``, at most 62.  bus_elems: operands per data beat, a power of two.  accumulators: tiles of
    sums on chip, 1..8.  counter_bits: 8..64.  target: multiplier implementation
    (``hw.mac.TARGETS``).  sparse: False issues every k of every row (the dense array).
    lfsr_width, lfsr_taps: the result-path pruner's Galois LFSR (``ref.lfsr``; as
    ``hw.config.StagConfig``'s).  prune_count_bits: the pruner's sum is exact for up to
    ``2**prune_count_bits - 1`` codes, 1..32.  resprop_max_elems, resprop_max_batch: the ReSprop
    result path's P bank (elements, a power of two, at least ``vector``) and the largest batch (as
    ``hw.config.StagConfig``'s); ``vector`` must then be a power of two (a P word is one beat).
    """

    lanes: int = 8
    vector: int = 16
    tile_m: int = 64
    tile_k: int = 64
    operand_bits: int = 8
    acc_bits: int = 32
    bus_elems: int = 16
    accumulators: int = 2
    counter_bits: int = 32
    target: str = "generic"
    sparse: bool = True
    lfsr_width: int = 16
    lfsr_taps: int = 0xD008
    prune_count_bits: int = 24
    resprop_max_elems: int = 1024
    resprop_max_batch: int = 256

    def __post_init__(self) -> None:
        for name, low, high in (("lanes", 1, 32), ("vector", 1, 64), ("tile_m", 1, 1024), ("tile_k", 1, 1024),
                                ("operand_bits", 2, 18), ("bus_elems", 1, 64), ("accumulators", 1, 8),
                                ("counter_bits", 8, 64), ("lfsr_width", 2, 32), ("prune_count_bits", 1, 32),
                                ("resprop_max_elems", 1, 1 << 20), ("resprop_max_batch", 1, 65535)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"vector core {name} must be an integer in {low}..{high}, not {value!r}")
        if not 2 * self.operand_bits <= self.acc_bits <= 62:
            raise ValueError(f"vector core acc_bits must be in {2 * self.operand_bits}..62, not {self.acc_bits!r}")
        if self.tile_k % self.bus_elems:
            raise ValueError(f"vector core tile_k must be a multiple of bus_elems = {self.bus_elems}, "
                             f"not {self.tile_k}")
        if self.vector % self.bus_elems and self.bus_elems % self.vector:
            raise ValueError(f"vector core vector must be a multiple or a divisor of bus_elems = {self.bus_elems} "
                             f"(whole B rows per beat), not {self.vector}")
        if not isinstance(self.lfsr_taps, int) or not (self.lfsr_taps >> (self.lfsr_width - 1)) == 1:
            raise ValueError(f"vector core lfsr_taps must be a {self.lfsr_width}-bit feedback mask with bit "
                             f"{self.lfsr_width - 1} set, not {self.lfsr_taps!r}")
        if self.bus_elems & (self.bus_elems - 1):
            raise ValueError(f"vector core bus_elems must be a power of two (the loader finds a row's last "
                             f"value beat by a shift), not {self.bus_elems}")
        if self.vector & (self.vector - 1):
            raise ValueError(f"vector core vector must be a power of two (a ReSprop P word holds one result beat), "
                             f"not {self.vector}")
        if self.resprop_max_elems & (self.resprop_max_elems - 1) or self.resprop_max_elems < self.vector:
            raise ValueError(f"vector core resprop_max_elems must be a power of two of at least "
                             f"vector = {self.vector}, not {self.resprop_max_elems}")
        if self.target not in TARGETS:
            raise ValueError(f"vector core target must be one of {TARGETS}, not {self.target!r}")

    @property
    def tile_n(self) -> int:
        return self.vector

    @property
    def bus_bits(self) -> int:
        return self.bus_elems * self.operand_bits

    @property
    def result_bits(self) -> int:
        """One result beat: ``vector`` values of ``acc_bits`` and their mask bits above them."""
        return self.vector * (self.acc_bits + 1)

    @property
    def acc_index_bits(self) -> int:
        return max(1, (self.accumulators - 1).bit_length())

    @property
    def resprop_words(self) -> int:
        """Words of one P bank: ``resprop_max_elems / vector``, each the codes of one result beat."""
        return self.resprop_max_elems // self.vector

    @property
    def resprop_word_bits(self) -> int:
        return max(1, (self.resprop_words - 1).bit_length())

    @property
    def resprop_sample_bits(self) -> int:
        """Bits of a sample index or batch size, 0..resprop_max_batch."""
        return self.resprop_max_batch.bit_length()

    @property
    def resprop_nnz_bits(self) -> int:
        return (self.resprop_max_batch * self.resprop_max_elems).bit_length()

    def command_layout(self) -> data.StructLayout:
        """The command word (``hw.layouts.vector_command_layout``) of this core."""
        return vector_command_layout(self.acc_index_bits, self.tile_m, self.tile_k, self.resprop_word_bits,
                                     self.resprop_sample_bits)

    @property
    def prune_tau_bits(self) -> int:
        """Width of the pruner's ``tau`` (as ``hw.config.StagConfig.prune_tau_bits``)."""
        return self.operand_bits + 3

    @property
    def prune_sum_bits(self) -> int:
        """Width of the pruner's sum of ``|g|`` (as ``hw.config.StagConfig.prune_sum_bits``)."""
        return self.prune_count_bits + self.operand_bits


def vector_counters_layout(counter_bits: int, lanes: int) -> data.StructLayout:
    """Performance counters (wrap at ``counter_bits``; reset clears them).

    cycles: cycles the core was not idle.  macs_issued: multiplier slots used, ``vector`` per
    issued nonzero (B zeros and masked outputs included: the vector lane does not skip them).
    macs_dense: ``tile_m * vector * tile_k`` per GEMM.  input_starved: cycles the loader wanted a
    beat and ``i_data`` had none.  output_stalled: cycles a result beat waited for ``ready``.
    lane_busy: per lane, cycles it issued a nonzero.
    """
    return data.StructLayout({
        "cycles": counter_bits,
        "macs_issued": counter_bits,
        "macs_dense": counter_bits,
        "input_starved": counter_bits,
        "output_stalled": counter_bits,
        "lane_busy": data.ArrayLayout(counter_bits, lanes),
    })


class VectorCore(wiring.Component):
    """The vector core for ``params`` (see the module docstring).

    Members
    -------
    i_cmd : In(stream of ``params.command_layout()``)
    i_data : In(stream of ``bus_bits``)
        GEMM operands in the vector core's order (``hw.vector_loader``).
    o_data : Out(stream of ``vector * (acc_bits + 1)`` bits)
        ``tile_m`` beats per DRAIN, row by row: element ``e`` (bits ``[e*acc_bits, (e+1)*acc_bits)``)
        is column ``e``; bit ``vector*acc_bits + e`` its mask bit.
    counters : Out(:func:`vector_counters_layout`)
    idle : Out(1)
    topk_threshold : In(operand_bits)
        SWAT's stored threshold for ``topk`` drains; registered: set it a cycle before the drain.
    prune_tau : In(prune_tau_bits), prune_seed : In(lfsr_width), prune_load : In(1)
        The result-path pruner (``hw.drain_prune``): ``prune_load`` takes the threshold ``tau``
        (0: bypass), reseeds the LFSR and clears ``prune_sum``, two cycles or more before a pruning
        drain starts. Pruning drains (``prune`` in the command) prune their codes in drain order,
        one LFSR draw per element (``ref.contract.Drain(prune=True)``).
    prune_sum : Out(prune_sum_bits)
        Sum of ``|g|`` over the codes of every pruning drain since the last load, before pruning;
        final when ``idle`` is high.
    resprop_load : In(1), resprop_mant, resprop_exp, resprop_target, resprop_rows, resprop_cols,
    resprop_row_words, resprop_samples, resprop_sample, resprop_dense : In
        ReSprop's result path (``hw.drain_resprop``, one P word per result beat): as
        ``hw.core.SparseCore``'s, with ``resprop_row_words = ceil(cols / vector)``.
    resprop_nnz : Out, resprop_exp_next : Out(signed(8))
        Nonzero S since the load and the next pass's exponent; final when ``idle`` is high.
    resprop_p_addr, resprop_p_wdata, resprop_p_we : In; resprop_p_rdata : Out(operand_bits)
        The host's port to P (element ``r * resprop_row_words * vector + c``), only while no
        drain runs.
    """

    def __init__(self, params: VectorCoreParams) -> None:
        self.params = params
        self._cmd_layout = params.command_layout()
        super().__init__({
            "i_cmd": In(stream.Signature(self._cmd_layout)),
            "i_data": In(stream.Signature(params.bus_bits)),
            "o_data": Out(stream.Signature(params.result_bits)),
            "counters": Out(vector_counters_layout(params.counter_bits, params.lanes)),
            "idle": Out(1),
            **result_path_ports(params),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        tm, tk, vec, lanes = p.tile_m, p.tile_k, p.vector, p.lanes

        # ---- intake ------------------------------------------------------------------------
        m.submodules.loader = loader = VectorLoader(
            command_layout=self._cmd_layout, operand_bits=p.operand_bits, tile_m=tm, tile_k=tk, vector=vec,
            bus_elems=p.bus_elems, sparse=p.sparse)
        wiring.connect(m, wiring.flipped(self.i_cmd), loader.i_cmd)
        wiring.connect(m, wiring.flipped(self.i_data), loader.i_data)
        desc_layout = vector_descriptor_layout(self._cmd_layout)
        m.submodules.descriptors = descriptors = SyncFIFO(width=desc_layout.size, depth=DESCRIPTOR_QUEUE)
        m.d.comb += [
            descriptors.w_data.eq(loader.o_desc.payload),
            descriptors.w_en.eq(loader.o_desc.valid),
            loader.o_desc.ready.eq(descriptors.w_rdy),
        ]
        row_layout = loader.row_layout
        m.submodules.a_rows = a_rows = Memory(shape=row_layout, depth=BUFFER_SETS * tm, init=[])
        m.submodules.masks = masks = Memory(shape=vec, depth=BUFFER_SETS * tm, init=[])
        a_wr, mask_wr = a_rows.write_port(), masks.write_port()
        m.d.comb += [
            a_wr.addr.eq(loader.a_wr_addr), a_wr.data.eq(loader.a_wr_data), a_wr.en.eq(loader.a_wr_en),
            mask_wr.addr.eq(loader.mask_wr_addr), mask_wr.data.eq(loader.mask_wr_data),
            mask_wr.en.eq(loader.mask_wr_en),
        ]

        # ---- the commands being executed: a GEMM and a DRAIN may run at once ---------------------
        # Commands leave the queue in order. A GEMM starts when no GEMM runs and no drain reads its
        # accumulator; a DRAIN starts when no drain runs and no GEMM writes its accumulator. So a
        # drain of one accumulator runs under the GEMMs of the next output tile on the other.
        current = Signal(desc_layout)           # the GEMM
        cmd = current.cmd
        draining_desc = Signal(desc_layout)     # the DRAIN
        dcmd = draining_desc.cmd
        incoming = Signal(desc_layout)
        m.d.comb += incoming.eq(descriptors.r_data)
        running = Signal()
        draining = Signal()
        is_gemm = incoming.cmd.op == OP_GEMM
        starting_gemm = Signal()
        starting_drain = Signal()
        m.d.comb += [
            starting_gemm.eq(descriptors.r_rdy & is_gemm & ~running
                             & ~(draining & (dcmd.acc == incoming.cmd.acc))),
            starting_drain.eq(descriptors.r_rdy & ~is_gemm & ~draining
                              & ~(running & (cmd.acc == incoming.cmd.acc))),
            descriptors.r_en.eq(starting_gemm | starting_drain),
        ]

        # ---- lanes ---------------------------------------------------------------------------------
        lane_units = []
        for j in range(lanes):
            lane = VectorLane(vector=vec, tile_k=tk, operand_bits=p.operand_bits, acc_bits=p.acc_bits, rows=tm,
                              target=p.target, position=j, chain_lanes=lanes)
            m.submodules[f"lane{j}"] = lane
            lane_units.append(lane)
        # The B block goes down a chain of its own: lane j stores a row j cycles after lane 0, always
        # before the GEMM's first row reaches it (rows travel the same chain, and leave after the
        # whole block is stored).
        m.d.comb += [lane_units[0].b_en.eq(loader.b_wr_en), lane_units[0].b_buf.eq(loader.b_wr_set),
                     lane_units[0].b_k.eq(loader.b_wr_k), lane_units[0].b_data.eq(loader.b_wr_data)]
        for before, lane in itertools.pairwise(lane_units):
            m.d.comb += [lane.b_en.eq(before.o_b_en), lane.b_buf.eq(before.o_b_buf), lane.b_k.eq(before.o_b_k),
                         lane.b_data.eq(before.o_b_data)]

        # ---- dispatcher: one row per cycle from the current set ----------------------------------
        # Rows are read ahead into a queue of ROW_QUEUE registers, so the dispatch decision (a
        # lane free, the write port free) never reaches back to the memories' read enables: a read
        # is issued while the queue, counting the read in flight, has room. A row read in cycle t
        # enters the queue at the end of t + 1, with its decision (lane, zero write, or nothing)
        # made from the memories' outputs, the loader's empty bit and the mask.
        row_rd = a_rows.read_port()
        mask_rd = masks.read_port()
        fetch = Signal(range(tm + 1))          # next row to read
        entry_layout = data.StructLayout({
            "row": range(tm), "word": row_layout, "has_work": 1, "zero_write": 1, "kill": 1})
        queue = Array(Signal(entry_layout, name=f"queue{i}") for i in range(ROW_QUEUE))
        count = Signal(range(ROW_QUEUE + 1))   # rows in the queue
        head_ptr = Signal(range(ROW_QUEUE))
        tail_ptr = Signal(range(ROW_QUEUE))
        in_flight = Signal()                   # a row read last cycle enters the queue this cycle
        in_flight_row = Signal(range(tm))
        in_flight_empty = Signal()
        read = Signal()
        m.d.comb += read.eq(running & (fetch != cmd.rows) & (count + in_flight < ROW_QUEUE))
        m.d.comb += [
            row_rd.addr.eq(current.set * tm + fetch), row_rd.en.eq(read),
            mask_rd.addr.eq(current.set * tm + fetch), mask_rd.en.eq(read),
        ]
        m.d.sync += [in_flight.eq(read), in_flight_row.eq(fetch),
                     in_flight_empty.eq(loader.empty.bit_select(current.set * tm + fetch, 1))]
        with m.If(read):
            m.d.sync += fetch.eq(fetch + 1)
        row = data.View(row_layout, row_rd.data)
        mask_row = Signal(vec)
        m.d.comb += mask_row.eq(Mux(cmd.has_mask, mask_rd.data, (1 << vec) - 1))
        # An empty row is not stored (its memory word is stale): the loader's empty bit says so.
        arriving_work = ~in_flight_empty & (mask_row != 0) if p.sparse else Const(1, 1)
        arriving = Signal(entry_layout)
        m.d.comb += [
            arriving.row.eq(in_flight_row),
            arriving.word.eq(row),
            arriving.has_work.eq(arriving_work),
            # Rows without work: fully masked (or not accumulating) rows are zeroed by the live bit;
            # a row that accumulates under a partial mask needs its masked sums zeroed by a write
            # of zeros; a fully masked row's live bit is cleared.
            arriving.zero_write.eq(~arriving_work & cmd.accumulate & (mask_row != 0)
                                   & (mask_row != (1 << vec) - 1)),
            arriving.kill.eq(~arriving_work & (mask_row == 0)),
        ]
        with m.If(in_flight):
            m.d.sync += [queue[tail_ptr].eq(arriving),
                         tail_ptr.eq(Mux(tail_ptr == ROW_QUEUE - 1, 0, tail_ptr + 1))]
        head_valid = Signal()
        head_entry = Signal(entry_layout)
        head_done = Signal()                   # the head row leaves the dispatcher this cycle
        m.d.comb += [head_valid.eq(count != 0), head_entry.eq(queue[head_ptr])]
        with m.If(head_done):
            m.d.sync += head_ptr.eq(Mux(head_ptr == ROW_QUEUE - 1, 0, head_ptr + 1))
        m.d.sync += count.eq(count + in_flight - head_done)
        head = head_entry.row
        has_work = head_entry.has_work
        zero_write = head_valid & head_entry.zero_write
        kill = Signal()                        # clear the head row's live bit (all its outputs are 0)
        m.d.comb += kill.eq(head_valid & head_entry.kill)
        dispatching = running
        # Credits: a lane holds one row in its input register; the dispatcher tags the head row for
        # the lowest lane holding its credit and sends it down the dispatch chain through a
        # register (lane j takes it j + 1 cycles later); the lane's registered ``o_took`` gives the
        # credit back. All arbitration state is here, next to the arbiter.
        credit = Signal(lanes, init=(1 << lanes) - 1)
        taken = Signal(lanes)
        found = Const(0, 1)
        for j in range(lanes):
            m.d.comb += taken[j].eq(head_valid & has_work & credit[j] & ~found)
            found = found | credit[j]
        m.d.sync += credit.eq((credit & ~taken) | Cat(lane.o_took for lane in lane_units))
        dispatch = Signal(lane_units[0].i_chain.shape())
        m.d.sync += [
            dispatch.valid.eq(taken.any()),
            dispatch.target.eq(taken),
            # The row is loaded every cycle (no enable): only the valid bit and tag depend on the
            # arbiter.
            dispatch.row.row.eq(head),
            dispatch.row.buf.eq(current.set),
            dispatch.row.count.eq(head_entry.word.count),
            dispatch.row.bitmap.eq(head_entry.word.bitmap),
            dispatch.row.values.eq(head_entry.word.values),
        ]
        m.d.comb += lane_units[0].i_chain.eq(dispatch)
        for before, lane in itertools.pairwise(lane_units):
            m.d.comb += [lane.i_chain.eq(before.o_chain), lane.i_slot.eq(before.o_slot)]
        zero_granted = Signal()
        m.d.comb += head_done.eq(head_valid & Mux(has_work, taken.any(), ~zero_write | zero_granted))

        # ---- write-back: read, add under the mask, write ------------------------------------------
        acc_depth = p.accumulators * tm
        sums_layout = data.ArrayLayout(signed(p.acc_bits), vec)
        m.submodules.acc = acc = Memory(shape=sums_layout, depth=acc_depth, init=[])
        acc_wr = acc.write_port()
        acc_rd = acc.read_port()            # the write-back's read of the stored row
        drain_rd = acc.read_port()          # the drain's
        live = Signal(acc_depth)
        # The result chain ends here: the last lane's slot, or, when it is empty, the dispatcher's
        # zero write, into WG.
        incoming_slot = lane_units[-1].o_slot
        m.d.comb += zero_granted.eq(zero_write & ~incoming_slot.valid)
        wb_layout = data.StructLayout({"valid": 1, "row": range(tm), "sums": sums_layout})
        wg = Signal(wb_layout)
        m.d.sync += [
            wg.valid.eq(incoming_slot.valid | zero_granted),
            wg.row.eq(Mux(incoming_slot.valid, incoming_slot.row, head)),
            wg.sums.eq(Mux(incoming_slot.valid, incoming_slot.sums.as_value(), 0)),
        ]
        wb_mask_rd = masks.read_port()
        # WG: the stored row, its live bit and its mask are read; W1: their reads come out of the
        # memories and are registered (W1B); W2: the sum is formed; then written.
        w1 = Signal(wb_layout)
        w1_live = Signal()
        m.d.sync += [w1.eq(wg), w1_live.eq(live.bit_select(cmd.acc * tm + wg.row, 1))]
        m.d.comb += [
            acc_rd.addr.eq(cmd.acc * tm + wg.row),
            wb_mask_rd.addr.eq(current.set * tm + wg.row),
        ]
        w1b = Signal(wb_layout)
        w1b_live = Signal()
        w1b_old = Signal(sums_layout)
        w1b_mask = Signal(vec)
        m.d.sync += [w1b.eq(w1), w1b_live.eq(w1_live), w1b_old.eq(acc_rd.data),
                     w1b_mask.eq(Mux(cmd.has_mask, wb_mask_rd.data, (1 << vec) - 1))]
        w2 = Signal(wb_layout)
        # A GEMM that does not accumulate cleared its accumulator's live bits when it started, so a
        # live row here was written by an earlier, accumulated-into GEMM.
        m.d.sync += [w2.valid.eq(w1b.valid), w2.row.eq(w1b.row)]
        for v in range(vec):
            m.d.sync += w2.sums[v].eq(Mux(w1b_mask[v], w1b.sums[v] + Mux(w1b_live, w1b_old[v], 0), 0))
        m.d.comb += [acc_wr.addr.eq(cmd.acc * tm + w2.row), acc_wr.data.eq(w2.sums), acc_wr.en.eq(w2.valid)]
        with m.If(starting_gemm & ~incoming.cmd.accumulate):
            for a in range(p.accumulators):
                with m.If(incoming.cmd.acc == a):
                    m.d.sync += live[a * tm:(a + 1) * tm].eq(0)
        with m.Elif(w2.valid):
            m.d.sync += live.bit_select(cmd.acc * tm + w2.row, 1).eq(1)
        with m.If(dispatching & kill):
            m.d.sync += live.bit_select(cmd.acc * tm + head, 1).eq(0)

        # ---- drain -----------------------------------------------------------------------------------
        drain_index = Signal(range(tm + 1))
        read_valid, held_valid = Signal(name="read_valid"), Signal(name="held_valid")
        round_valid, quant_valid = Signal(name="round_valid"), Signal(name="quant_valid")
        decided_valid = Signal(name="decided_valid")    # the requantizers' third register
        out_ready = ~self.o_data.valid | self.o_data.ready
        settle = Signal(range(DRAIN_SETTLE + 1))
        issuing = draining & (drain_index != tm) & (settle == 0)
        step = draining & out_ready
        with m.If(settle != 0):
            m.d.sync += settle.eq(settle - 1)
        m.d.comb += [drain_rd.addr.eq(dcmd.acc * tm + drain_index), drain_rd.en.eq(step)]
        stored = data.View(sums_layout, drain_rd.data)
        read_live = Signal()
        with m.If(step):
            m.d.sync += read_live.eq(live.bit_select(dcmd.acc * tm + drain_index, 1))
        thr_m1 = Signal(p.operand_bits)
        thr_zero = Signal()
        m.d.sync += [thr_m1.eq(self.topk_threshold - 1), thr_zero.eq(self.topk_threshold == 0)]
        # The shift and limit decode once per drain, registered: the drain's settings hold while it
        # runs, and its first value reaches the requantizers three cycles after it starts (its beat
        # leaves four cycles later: the requantizers' three registers, the last holding decisions).
        m.submodules.requantize_controls = decoder = RequantizerControls(p.acc_bits)
        controls = Signal(decoder.o_controls.shape())
        m.d.comb += [decoder.i_shift.eq(dcmd.shift), decoder.i_out_bits.eq(dcmd.out_bits)]
        m.d.sync += controls.eq(decoder.o_controls)
        # The per-drain constants reach the requantizers through copies, one per group of lanes:
        # the lanes sit beside their accumulator memories across the chip, and a single register
        # fanning out to all of them was the core's clock path (an 11.2 ns net, and for the drain's
        # out_bits a 6.9 ns one). Copy g is the value delayed 1 + g cycles, so no two copies are
        # alike and synthesis keeps them apart (identical registers would be merged back into one).
        # The last settles CONSTANT_COPIES cycles after its source, within the time a prune load or
        # a top-K threshold is given before a drain's first decision (docs/interface.md), and
        # within the drain's DRAIN_SETTLE for its own settings.
        groups = min(vec, CONSTANT_COPIES)

        def copies(value, name):
            chain = [Signal.like(value, name=f"{name}_copy{g}") for g in range(groups)]
            m.d.sync += [dst.eq(src) for dst, src in zip(chain, [value, *chain[:-1]], strict=True)]
            return [chain[v * groups // vec] for v in range(vec)]

        controls_at = copies(controls, "controls")
        out_bits_at = copies(dcmd.out_bits, "out_bits")
        rounding_at, relu_at = copies(dcmd.rounding, "rounding"), copies(dcmd.relu, "relu")
        topk_at, prune_at = copies(dcmd.topk, "topk"), copies(dcmd.prune, "prune")
        resprop_at = copies(dcmd.resprop, "resprop")
        # The pruner's draws: one per element of a pruned beat, as it enters the requantizers' third
        # register (where their decisions are registered).
        m.submodules.prune_draws = draws = PruneDraws(lanes=vec, lfsr_width=p.lfsr_width, lfsr_taps=p.lfsr_taps,
                                                      tau_bits=p.prune_tau_bits)
        pruned_beat = step & quant_valid & dcmd.prune
        m.d.comb += [draws.i_tau.eq(self.prune_tau), draws.i_seed.eq(self.prune_seed),
                     draws.load.eq(self.prune_load), draws.advance.eq(pruned_beat)]
        tau_at, tau_m1_at = copies(draws.o_tau, "tau"), copies(draws.o_tau_m1, "tau_m1")
        thr_m1_at, thr_zero_at = copies(thr_m1, "thr_m1"), copies(thr_zero, "thr_zero")
        quantizers = []
        for v in range(vec):
            rq = Requantizer(p.acc_bits, p.prune_tau_bits, code_bits=p.operand_bits, thr_bits=p.operand_bits,
                             decoded_controls=True, decision_register=True)
            m.submodules[f"requantize{v}"] = rq
            held = Signal(signed(p.acc_bits), name=f"drain_value{v}")
            with m.If(step):
                m.d.sync += held.eq(Mux(read_live, stored[v], 0))
            m.d.comb += [
                rq.i_value.eq(held), rq.i_controls.eq(controls_at[v]),
                rq.i_rounding.eq(rounding_at[v]), rq.i_relu.eq(relu_at[v]), rq.i_topk.eq(topk_at[v]),
                rq.i_prune.eq(prune_at[v]), rq.i_tau.eq(tau_at[v]), rq.i_tau_m1.eq(tau_m1_at[v]),
                rq.i_draw_m1.eq(draws.o_draw_m1[v]),
                rq.i_thr_m1.eq(thr_m1_at[v]), rq.i_thr_zero.eq(thr_zero_at[v]), rq.en.eq(step),
            ]
            quantizers.append(rq)
        # ReSprop's difference: P is read with the accumulator and meets the code after the requantizer.
        m.submodules.resprop = resprop = DrainReSprop(
            lanes=vec, tile_n=vec, operand_bits=p.operand_bits, acc_bits=p.acc_bits, words=p.resprop_words,
            sample_bits=p.resprop_sample_bits, nnz_bits=p.resprop_nnz_bits,
            requantizer_latency=quantizers[0].latency)
        for name in ("mant", "exp", "target", "rows", "cols", "row_words", "samples", "sample", "dense"):
            m.d.comb += getattr(resprop, f"i_{name}").eq(getattr(self, f"resprop_{name}"))
        m.d.comb += [
            resprop.load.eq(self.resprop_load),
            resprop.start.eq(starting_drain),
            resprop.i_word.eq(incoming.cmd.rs_word),
            resprop.i_row.eq(incoming.cmd.rs_row),
            resprop.i_col.eq(incoming.cmd.rs_col),
            resprop.i_sample0.eq(incoming.cmd.rs_sample),
            resprop.draining.eq(draining),
            resprop.step.eq(step),
            resprop.issue.eq(step & issuing),
            resprop.emit.eq(step & decided_valid & dcmd.resprop),
            *(resprop.i_out_bits[v].eq(out_bits_at[v]) for v in range(vec)),
            self.resprop_nnz.eq(resprop.o_nnz),
            self.resprop_exp_next.eq(resprop.o_exp_next),
            resprop.p_addr.eq(self.resprop_p_addr),
            resprop.p_wdata.eq(self.resprop_p_wdata),
            resprop.p_we.eq(self.resprop_p_we),
            self.resprop_p_rdata.eq(resprop.p_rdata),
        ]
        for v, rq in enumerate(quantizers):
            m.d.comb += [
                resprop.i_codes[v].eq(rq.o_value),
                resprop.i_rounded[v].eq(rq.o_rounded),
                resprop.i_nonzero[v].eq(rq.o_nonzero),
                resprop.i_above[v].eq(rq.o_above),
                resprop.i_below[v].eq(rq.o_below),
            ]
        out_values = [Mux(resprop_at[v], resprop.o_values[v], rq.o_value) for v, rq in enumerate(quantizers)]
        out_masks = [Mux(resprop_at[v], resprop.o_mask[v], rq.o_mask) for v, rq in enumerate(quantizers)]
        with m.If(step):
            m.d.sync += [
                self.o_data.valid.eq(decided_valid),
                decided_valid.eq(quant_valid),
                self.o_data.payload.eq(Cat(*out_values, *out_masks)),
                quant_valid.eq(round_valid),
                round_valid.eq(held_valid),
                held_valid.eq(read_valid),
                read_valid.eq(issuing),
            ]
            with m.If(issuing):
                m.d.sync += drain_index.eq(drain_index + 1)

        # The pruner's sum of |g| (the next tensor's tau comes from it), off the result path: a
        # pruned beat's code magnitudes are registered as it leaves, summed by a tree into a
        # register the next cycle, and that added to the total the cycle after. (The magnitudes
        # taken after the register instead put the negation and the tree in one cycle: 16.4 ns,
        # the 4-lane core's critical path at 60.9 MHz, docs/design_study.md.)
        summed = [Signal(p.operand_bits, name=f"summed{v}") for v in range(vec)]
        beat_sum = Signal(range(vec * (1 << (p.operand_bits - 1)) + 1))
        summing, adding = Signal(), Signal()
        leaving_pruned = step & decided_valid & dcmd.prune     # the beat in the third register
        m.d.sync += [summing.eq(leaving_pruned), adding.eq(summing)]
        with m.If(leaving_pruned):
            m.d.sync += [reg.eq(Mux(rq.o_code[-1], -rq.o_code, rq.o_code).as_unsigned())
                         for reg, rq in zip(summed, quantizers, strict=True)]
        m.d.sync += beat_sum.eq(tree_sum(summed))
        with m.If(self.prune_load):
            m.d.sync += self.prune_sum.eq(0)
        with m.Elif(adding):
            m.d.sync += self.prune_sum.eq(self.prune_sum + beat_sum)

        # ---- sequencing ------------------------------------------------------------------------------
        # Lanes report busy a cycle late; a row on its way to a lane (or just taken into issue) is
        # covered by the lane's credit, which comes home two cycles after the lane took the row.
        lanes_idle = ~Cat(lane.busy for lane in lane_units).any() & ~dispatch.valid & credit.all()
        writeback_idle = ~zero_granted & ~wg.valid & ~w1.valid & ~w1b.valid & ~w2.valid
        m.d.comb += [loader.release.eq(0), loader.release_set.eq(current.set)]
        with m.If(starting_gemm):
            m.d.sync += [current.eq(incoming), running.eq(1), fetch.eq(0)]
        with m.Elif(running & (fetch == cmd.rows) & ~in_flight & (count == 0) & lanes_idle & writeback_idle):
            m.d.comb += loader.release.eq(1)
            m.d.sync += running.eq(0)
        with m.If(starting_drain):
            m.d.sync += [draining_desc.eq(incoming), draining.eq(1), drain_index.eq(0), settle.eq(DRAIN_SETTLE),
                         read_valid.eq(0), held_valid.eq(0), round_valid.eq(0), quant_valid.eq(0),
                         decided_valid.eq(0)]
        with m.Elif(draining & (drain_index == tm) & ~read_valid & ~held_valid & ~round_valid & ~quant_valid
                    & ~decided_valid & out_ready):
            m.d.sync += draining.eq(0)
        # (The pruner's sum is final when idle: its two registers after the last beat are empty.)
        m.d.comb += self.idle.eq(~running & ~draining & ~descriptors.r_rdy & ~loader.busy & ~self.i_cmd.valid &
                                 ~self.o_data.valid & ~summing & ~adding)

        # ---- counters --------------------------------------------------------------------------------
        ctr = self.counters
        issued = Cat(lane.issued for lane in lane_units)
        m.d.sync += [
            ctr.cycles.eq(ctr.cycles + ~self.idle),
            ctr.macs_issued.eq(ctr.macs_issued + vec * popcount(issued, lanes)),
            ctr.input_starved.eq(ctr.input_starved + loader.starved),
            ctr.output_stalled.eq(ctr.output_stalled + (self.o_data.valid & ~self.o_data.ready)),
        ]
        with m.If(starting_gemm):
            m.d.sync += ctr.macs_dense.eq(ctr.macs_dense + tm * vec * tk)
        for j, lane in enumerate(lane_units):
            m.d.sync += ctr.lane_busy[j].eq(ctr.lane_busy[j] + lane.issued)
        return m
