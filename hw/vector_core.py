"""The vector core: runs ``ref.contract`` programs on ``lanes`` vector lanes of ``vector`` MACs.

The core the design study chose (docs/design_study.md). A GEMM tile is ``A [tile_m, tile_k] x
B [tile_k, vector]``; the skipped operand is A (the lowering hands the core the GEMM or its
transpose, whichever skips more). Blocks:

- :class:`~hw.vector_loader.VectorLoader` stores a GEMM's A rows (one memory word per row: bitmap
  and packed nonzeros), its B rows (into every lane's copy) and its mask rows into one of two
  buffer sets, while the other set computes.
- The dispatcher walks the tile's rows, one per cycle: a row with nonzeros and at least one
  unmasked output goes to the lowest-numbered lane that can take it; a row without work takes no
  lane (its outputs are zeroed through the live bits, or, when it accumulates under a partial
  mask, by a write of zeros).
- :class:`~hw.vector_lane.VectorLane` s issue one nonzero per cycle against their B copy.
- The accumulator memory holds ``accumulators x tile_m`` rows of ``vector`` sums. A lane's finished
  row is added to the stored row (grant register, read, add, write) under the output mask; lanes
  are served lowest first, one row per cycle. Live bits per row make a clear free.
- A DRAIN reads one row per cycle through ``vector`` :class:`~hw.requantize.Requantizer` s onto
  ``o_data``, each element with its mask bit (ReLU ``value > 0``, or SWAT's keep bit).

Commands leave the queue in order. A GEMM starts when its operands are stored, the previous GEMM
has finished (every row written back) and no drain reads its accumulator; a DRAIN starts when the
previous drain has finished and no GEMM writes its accumulator. So accumulating GEMMs and drains
see every earlier write, and the drain of one output tile runs under the GEMMs of the next (the
lowering alternates two accumulators).

Not yet on this core (the sparse core has them): the result path's pruner and ReSprop difference.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.bits import popcount
from hw.layouts import OP_GEMM, vector_command_layout
from hw.mac import TARGETS
from hw.requantize import Requantizer
from hw.vector_lane import VectorLane
from hw.vector_loader import BUFFER_SETS, VectorLoader, vector_descriptor_layout

__all__ = ["VectorCore", "VectorCoreParams", "vector_counters_layout"]

#: Commands that may wait, loaded or not, between the loader and the compute side.
DESCRIPTOR_QUEUE = 4
#: Rows read ahead of the dispatch decision (enough for one row per cycle: a read enters the queue
#: two cycles after it is issued).
ROW_QUEUE = 3


@dataclass(frozen=True)
class VectorCoreParams:
    """Geometry and widths of a :class:`VectorCore` (validated on construction).

    lanes: vector lanes, 1..32.  vector: MACs per lane and the tile's columns (``tile_n``), 1..64,
    a multiple or a divisor of ``bus_elems``.  tile_m: rows of a tile, 1..1024.  tile_k: the reduction length of
    a tile, a multiple of ``bus_elems``, 1..1024.  operand_bits: 2..18.  acc_bits: at least
    ``2 * operand_bits``, at most 62.  bus_elems: operands per data beat.  accumulators: tiles of
    sums on chip, 1..8.  counter_bits: 8..64.  target: multiplier implementation
    (``hw.mac.TARGETS``).  sparse: False issues every k of every row (the dense array).
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

    def __post_init__(self) -> None:
        for name, low, high in (("lanes", 1, 32), ("vector", 1, 64), ("tile_m", 1, 1024), ("tile_k", 1, 1024),
                                ("operand_bits", 2, 18), ("bus_elems", 1, 64), ("accumulators", 1, 8),
                                ("counter_bits", 8, 64)):
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
    i_cmd : In(stream of ``hw.layouts.vector_command_layout(acc_index_bits, tile_m, tile_k)``)
    i_data : In(stream of ``bus_bits``)
        GEMM operands in the vector core's order (``hw.vector_loader``).
    o_data : Out(stream of ``vector * (acc_bits + 1)`` bits)
        ``tile_m`` beats per DRAIN, row by row: element ``e`` (bits ``[e*acc_bits, (e+1)*acc_bits)``)
        is column ``e``; bit ``vector*acc_bits + e`` its mask bit.
    counters : Out(:func:`vector_counters_layout`)
    idle : Out(1)
    topk_threshold : In(operand_bits)
        SWAT's stored threshold for ``topk`` drains; registered: set it a cycle before the drain.
    """

    def __init__(self, params: VectorCoreParams) -> None:
        self.params = params
        self._cmd_layout = vector_command_layout(params.acc_index_bits, params.tile_m, params.tile_k)
        super().__init__({
            "i_cmd": In(stream.Signature(self._cmd_layout)),
            "i_data": In(stream.Signature(params.bus_bits)),
            "o_data": Out(stream.Signature(params.result_bits)),
            "counters": Out(vector_counters_layout(params.counter_bits, params.lanes)),
            "idle": Out(1),
            "topk_threshold": In(params.operand_bits),
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
                              target=p.target)
            m.submodules[f"lane{j}"] = lane
            lane_units.append(lane)
            m.d.comb += [lane.b_en.eq(loader.b_wr_en), lane.b_buf.eq(loader.b_wr_set), lane.b_k.eq(loader.b_wr_k),
                         lane.b_data.eq(loader.b_wr_data)]

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
        # The lowest lane that can take a row.
        taken = Signal(lanes)
        found = Const(0, 1)
        for j, lane in enumerate(lane_units):
            pick = Signal(name=f"pick{j}")
            m.d.comb += [pick.eq(head_valid & has_work & lane.i_row.ready & ~found), taken[j].eq(pick)]
            found = found | lane.i_row.ready
            m.d.comb += [
                lane.i_row.valid.eq(pick),
                lane.i_row.payload.row.eq(head),
                lane.i_row.payload.buf.eq(current.set),
                lane.i_row.payload.count.eq(head_entry.word.count),
                lane.i_row.payload.bitmap.eq(head_entry.word.bitmap),
                lane.i_row.payload.values.eq(head_entry.word.values),
            ]
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
        # W0: the granted lane (lowest first; the dispatcher's zero write last).
        w0 = Signal(data.StructLayout({"valid": 1, "row": range(tm), "sums": sums_layout}))
        granted = Const(0, 1)
        for lane in lane_units:
            grant = lane.o_sums.valid & ~granted
            m.d.comb += lane.o_sums.ready.eq(grant)
            granted = granted | lane.o_sums.valid
            with m.If(grant):
                m.d.comb += [w0.row.eq(lane.o_sums.payload.row), w0.sums.eq(lane.o_sums.payload.sums)]
        m.d.comb += zero_granted.eq(zero_write & ~granted)
        with m.If(zero_granted):
            m.d.comb += [w0.row.eq(head), w0.sums.eq(0)]
        m.d.comb += w0.valid.eq(granted | zero_granted)
        wb_mask_rd = masks.read_port()
        # The granted result is registered first (the grant's priority chain and the row select stay
        # out of the memories' address paths); W1: the stored row, its live bit and its mask are
        # read; W2: the sum is formed; then written.
        wg = Signal.like(w0)
        m.d.sync += wg.eq(w0)
        w1 = Signal.like(w0)
        w1_live = Signal()
        m.d.sync += [w1.eq(wg), w1_live.eq(live.bit_select(cmd.acc * tm + wg.row, 1))]
        m.d.comb += [
            acc_rd.addr.eq(cmd.acc * tm + wg.row),
            wb_mask_rd.addr.eq(current.set * tm + wg.row),
        ]
        w1_mask = Signal(vec)
        m.d.comb += w1_mask.eq(Mux(cmd.has_mask, wb_mask_rd.data, (1 << vec) - 1))
        old = data.View(sums_layout, acc_rd.data)
        w2 = Signal.like(w0)
        # A GEMM that does not accumulate cleared its accumulator's live bits when it started, so a
        # live row here was written by an earlier, accumulated-into GEMM.
        keep_old = w1_live
        m.d.sync += [w2.valid.eq(w1.valid), w2.row.eq(w1.row)]
        for v in range(vec):
            m.d.sync += w2.sums[v].eq(Mux(w1_mask[v], w1.sums[v] + Mux(keep_old, old[v], 0), 0))
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
        out_ready = ~self.o_data.valid | self.o_data.ready
        issuing = draining & (drain_index != tm)
        step = draining & out_ready
        m.d.comb += [drain_rd.addr.eq(dcmd.acc * tm + drain_index), drain_rd.en.eq(step)]
        stored = data.View(sums_layout, drain_rd.data)
        read_live = Signal()
        with m.If(step):
            m.d.sync += read_live.eq(live.bit_select(dcmd.acc * tm + drain_index, 1))
        thr_m1 = Signal(p.operand_bits)
        thr_zero = Signal()
        m.d.sync += [thr_m1.eq(self.topk_threshold - 1), thr_zero.eq(self.topk_threshold == 0)]
        quantizers = []
        for v in range(vec):
            rq = Requantizer(p.acc_bits, code_bits=p.operand_bits, thr_bits=p.operand_bits)
            m.submodules[f"requantize{v}"] = rq
            held = Signal(signed(p.acc_bits), name=f"drain_value{v}")
            with m.If(step):
                m.d.sync += held.eq(Mux(read_live, stored[v], 0))
            m.d.comb += [
                rq.i_value.eq(held), rq.i_shift.eq(dcmd.shift), rq.i_out_bits.eq(dcmd.out_bits),
                rq.i_rounding.eq(dcmd.rounding), rq.i_relu.eq(dcmd.relu), rq.i_topk.eq(dcmd.topk),
                rq.i_thr_m1.eq(thr_m1), rq.i_thr_zero.eq(thr_zero), rq.en.eq(step),
            ]
            quantizers.append(rq)
        with m.If(step):
            m.d.sync += [
                self.o_data.valid.eq(quant_valid),
                self.o_data.payload.eq(Cat(*(rq.o_value for rq in quantizers), *(rq.o_mask for rq in quantizers))),
                quant_valid.eq(round_valid),
                round_valid.eq(held_valid),
                held_valid.eq(read_valid),
                read_valid.eq(issuing),
            ]
            with m.If(issuing):
                m.d.sync += drain_index.eq(drain_index + 1)

        # ---- sequencing ------------------------------------------------------------------------------
        lanes_idle = ~Cat(lane.busy for lane in lane_units).any()
        writeback_idle = ~w0.valid & ~wg.valid & ~w1.valid & ~w2.valid
        m.d.comb += [loader.release.eq(0), loader.release_set.eq(current.set)]
        with m.If(starting_gemm):
            m.d.sync += [current.eq(incoming), running.eq(1), fetch.eq(0)]
        with m.Elif(running & (fetch == cmd.rows) & ~in_flight & (count == 0) & lanes_idle & writeback_idle):
            m.d.comb += loader.release.eq(1)
            m.d.sync += running.eq(0)
        with m.If(starting_drain):
            m.d.sync += [draining_desc.eq(incoming), draining.eq(1), drain_index.eq(0), read_valid.eq(0),
                         held_valid.eq(0), round_valid.eq(0), quant_valid.eq(0)]
        with m.Elif(draining & ~issuing & ~read_valid & ~held_valid & ~round_valid & ~quant_valid & out_ready):
            m.d.sync += draining.eq(0)
        m.d.comb += self.idle.eq(~running & ~draining & ~descriptors.r_rdy & ~loader.busy & ~self.i_cmd.valid &
                                 ~self.o_data.valid)

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
