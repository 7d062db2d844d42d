"""Vector lane: one row of the skipped operand at a time against a stored block of the other.

The lane of the vector core chosen by the design study (docs/design_study.md). It holds a block
``B`` of ``tile_k`` rows of ``vector`` operands (two buffers, so the next block loads while this one
is used) and takes rows of the skipped operand ``A`` as a ``tile_k``-bit nonzero bitmap plus the
row's nonzero values packed in order. Each cycle it issues one nonzero ``a[k]``, broadcast to
``vector`` multipliers against ``B[k][0..vector-1]``, so a row costs ``nnz`` cycles for ``vector``
dot products, and rows follow each other with no idle cycle. The control (the lowest set bit of
the bitmap, a shift of the packed values) is paid once per ``vector`` MACs; the packed value of
the j-th issued nonzero is simply the j-th value, so no popcount rank is needed.

The lanes form two chains, so that no wide bus converges on one place of the chip (LFE5U-85F's
routing, not its logic, set the clock of the versions with a shared bus: docs/design_study.md):

- Rows travel down the *dispatch chain*: the core hands lane 0 a row tagged with the one-hot lane
  it is for, each lane passes what it receives to the next one a cycle later, and the lane the
  tag names takes the row into its input register. The core sends a lane a row only while it holds
  that lane's credit; the lane returns the credit on ``o_took``.
- Results travel down the *result chain* of slots: each cycle every lane passes the slot it
  received to the next one, and a lane with a stored result puts it into an empty slot as it
  passes. The core takes the last lane's slots. Upstream lanes see empty slots first.

A row's first nonzero reserves a slot in the result memory, so a row is only started when its
result will find room and the multipliers never stall.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.mac import TARGETS, PipelinedMultiplier

__all__ = ["VectorLane", "vector_chain_layout", "vector_row_layout", "vector_slot_layout", "vector_sums_layout"]


def vector_row_layout(*, tile_k: int, operand_bits: int, rows: int) -> data.StructLayout:
    """A row of the skipped operand: its index in the tile, the B buffer it multiplies, its number
    of nonzeros (``count``, the popcount of the bitmap, 1 or more), its ``tile_k``-bit nonzero
    bitmap (bit k set: element k is nonzero) and its nonzero values packed from the lowest k up
    (value j at bits ``[j*operand_bits, (j+1)*operand_bits)``). The count makes the lane's "last
    nonzero" decision a small compare instead of a zero test of the whole bitmap."""
    return data.StructLayout({
        "row": range(rows),
        "buf": 1,
        "count": range(tile_k + 1),
        "bitmap": tile_k,
        "values": data.ArrayLayout(signed(operand_bits), tile_k),
    })


def vector_sums_layout(*, vector: int, acc_bits: int, rows: int) -> data.StructLayout:
    """A finished row: its index and its ``vector`` dot products (two's complement, wrapped to
    ``acc_bits``)."""
    return data.StructLayout({"row": range(rows), "sums": data.ArrayLayout(signed(acc_bits), vector)})


def vector_chain_layout(*, tile_k: int, operand_bits: int, rows: int, lanes: int) -> data.StructLayout:
    """A place on the dispatch chain: a row (:func:`vector_row_layout`) when ``valid``, for the lane
    whose bit is set in ``target``."""
    return data.StructLayout({"valid": 1, "target": lanes,
                              "row": vector_row_layout(tile_k=tile_k, operand_bits=operand_bits, rows=rows)})


def vector_slot_layout(*, vector: int, acc_bits: int, rows: int) -> data.StructLayout:
    """A slot on the result chain: a finished row (:func:`vector_sums_layout`'s fields) when ``valid``."""
    return data.StructLayout({"valid": 1, "row": range(rows), "sums": data.ArrayLayout(signed(acc_bits), vector)})


#: The fields of a row that move from the input register into issue (its values stay in a bank).
HEAD_FIELDS = ("row", "buf", "count", "bitmap")


class VectorLane(wiring.Component):
    """``vector`` multiply-accumulates per cycle from one nonzero of a skipped-operand row.

    Parameters
    ----------
    vector : int
        Multipliers, and the width of a B row, 1..64.
    tile_k : int
        Rows of the B block (the reduction length of one row), 1..1024.
    operand_bits : int
        Signed operand width, 2..18 (one DSP multiplier operand).
    acc_bits : int
        Width of the sums, at least ``2 * operand_bits``; sums wrap modulo ``2**acc_bits``.
    rows : int
        Row indices carried with a row (the tile's rows), 1..4096.
    target : str
        Multiplier implementation, one of ``hw.mac.TARGETS``.
    result_depth : int
        Rows from their first issue until their result slot comes back, 2..16 (16 is one ECP5
        distributed-RAM depth, so the default costs no more than a shallower memory).

    position : int
        The lane's place in the chains, 0..``chain_lanes - 1``.
    chain_lanes : int
        Lanes in the chains (the width of the dispatch tag).

    Members
    -------
    b_en, b_buf, b_k, b_data : In
        B block write port: when ``b_en``, row ``b_k`` of buffer ``b_buf`` becomes ``b_data``
        (``vector`` signed operands). Write the buffer no row in the lane uses.
    o_b_en, o_b_buf, o_b_k, o_b_data : Out
        The B write, a cycle later, for the next lane (the B chain: every lane stores the block).
    i_chain : In(:func:`vector_chain_layout`), o_chain : Out(:func:`vector_chain_layout`)
        The dispatch chain: ``o_chain`` is ``i_chain`` a cycle later. A row whose tag has this
        lane's bit enters its input register. Flow control by credit: the core tags one row for
        the lane, then no other until ``o_took`` has pulsed for it. The bitmap must not be empty
        and ``count`` must be its popcount.
    o_took : Out(1)
        Registered: a row left the input register for issue (the credit is back).
    i_slot : In(:func:`vector_slot_layout`), o_slot : Out(:func:`vector_slot_layout`)
        The result chain: ``o_slot`` is ``i_slot`` a cycle later, or, when ``i_slot`` was empty
        and a result was stored, that result (results leave in row order,
        ``sums[v] = sum_j values[j] * B[buf][k_j][v]`` over the row's nonzeros ``k_j``).
    busy : ``Out(1)``
        Registered: in the cycle before, a row was in the lane (input register, issuing, in the
        pipeline or stored), or a row or a result passed through it.
    issued : ``Out(1)``
        Registered: a nonzero issued the cycle before (``vector`` MACs), for the core's counters.

    Latency: a row on ``i_chain`` in cycle ``p`` for an idle lane issues its first nonzero in
    ``p + 2``; its result is stored :attr:`RESULT_LATENCY` cycles after its last nonzero issued
    and can take an empty slot from the cycle after. Throughput: one nonzero per cycle, across row
    boundaries.
    """

    #: Cycles from a row's last issue (cycle t) to its result stored (in cycle t + this).
    RESULT_LATENCY = 6

    def __init__(self, *, vector: int, tile_k: int, operand_bits: int, acc_bits: int, rows: int,
                 target: str = "generic", result_depth: int = 16, position: int = 0, chain_lanes: int = 1) -> None:
        for name, value, low, high in (("vector", vector, 1, 64), ("tile_k", tile_k, 1, 1024),
                                       ("operand_bits", operand_bits, 2, 18), ("rows", rows, 1, 4096),
                                       ("result_depth", result_depth, 2, 16)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"VectorLane {name} must be an integer in {low}..{high}, not {value!r}")
        if not isinstance(acc_bits, int) or isinstance(acc_bits, bool) or not 2 * operand_bits <= acc_bits <= 64:
            raise ValueError(f"VectorLane acc_bits must be an integer in {2 * operand_bits}..64, not {acc_bits!r}")
        if target not in TARGETS:
            raise ValueError(f"VectorLane target must be one of {TARGETS}, not {target!r}")
        if not isinstance(chain_lanes, int) or not 1 <= chain_lanes <= 64 or not isinstance(position, int) \
                or not 0 <= position < chain_lanes:
            raise ValueError(f"VectorLane position must be in 0..chain_lanes - 1 and chain_lanes in 1..64, not "
                             f"{position!r} and {chain_lanes!r}")
        self.position, self.chain_lanes = position, chain_lanes
        self.vector, self.tile_k, self.operand_bits = vector, tile_k, operand_bits
        self.acc_bits, self.rows, self.target, self.result_depth = acc_bits, rows, target, result_depth
        chain = vector_chain_layout(tile_k=tile_k, operand_bits=operand_bits, rows=rows, lanes=chain_lanes)
        slot = vector_slot_layout(vector=vector, acc_bits=acc_bits, rows=rows)
        super().__init__({
            "b_en": In(1),
            "b_buf": In(1),
            "b_k": In(range(tile_k)),
            "b_data": In(data.ArrayLayout(signed(operand_bits), vector)),
            "o_b_en": Out(1),
            "o_b_buf": Out(1),
            "o_b_k": Out(range(tile_k)),
            "o_b_data": Out(data.ArrayLayout(signed(operand_bits), vector)),
            "i_chain": In(chain),
            "o_chain": Out(chain),
            "o_took": Out(1),
            "i_slot": In(slot),
            "o_slot": Out(slot),
            "busy": Out(1),
            "issued": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        vec, tk, bits = self.vector, self.tile_k, self.operand_bits
        row_layout = vector_row_layout(tile_k=tk, operand_bits=bits, rows=self.rows)
        sums_layout = vector_sums_layout(vector=vec, acc_bits=self.acc_bits, rows=self.rows)
        k_bits = max(1, (tk - 1).bit_length())

        # ---- B block: two buffers of tile_k rows, addressed {buffer, k} ----------------------
        m.submodules.block = block = Memory(shape=vec * bits, depth=2 << k_bits, init=[])
        wr = block.write_port()
        rd = block.read_port(transparent_for=())
        m.d.comb += [wr.addr.eq(Cat(self.b_k, self.b_buf)), wr.data.eq(self.b_data), wr.en.eq(self.b_en)]
        m.d.sync += [self.o_b_en.eq(self.b_en), self.o_b_buf.eq(self.b_buf), self.o_b_k.eq(self.b_k),
                     self.o_b_data.eq(self.b_data)]

        # ---- rows: the chain, the input register, then the row being issued ---------------------
        # The chain register has no enable: the row moves on whatever happens here.
        m.d.sync += self.o_chain.eq(self.i_chain)
        mine = Signal()
        m.d.comb += mine.eq(self.i_chain.valid & self.i_chain.target[self.position])
        # A row's values (tile_k * operand_bits, the lane's widest register) stay in the bank they
        # arrived in (two banks: the chain writes the free one while the other issues). Copying them
        # from the input register into an issue register put the take decision (the result-memory
        # room, the last-nonzero compare, then take) before the clock enable of ~600 flip-flops, the
        # lane's critical path; here only the short row head (bitmap, count, row, buffer) is copied,
        # and the banks' enables come from registered state through one gate. (An index into a
        # static bank instead, a 128-to-1 multiplexer per value bit, routed at 86 MHz.)
        head_layout = data.StructLayout({name: row_layout[name].shape for name in HEAD_FIELDS})
        banks = [Signal(row_layout["values"].shape, name=f"values_bank{b}") for b in range(2)]
        write_bank = Signal()   # the bank the next row of the chain goes into
        pending = Signal(head_layout)
        pending_bank = Signal()
        pending_valid = Signal()
        cur = Signal(head_layout)
        cur_bank = Signal()
        live = Signal()         # ``cur`` has nonzeros left to issue
        started = Signal()      # ``cur``'s first nonzero has issued (it owns a result slot)
        last = Signal()         # registered: ``cur.count == 1``
        room = Signal(init=1)   # registered: fewer than result_depth rows in flight

        # The lowest set bit by one subtraction (a tile_k-bit carry chain). Its index is encoded
        # the cycle after, from a register: the carry chain and the encoder's OR tree in one cycle,
        # ending at the B block's address pins, were the lane's critical path (74.5 MHz routed
        # alone, docs/design_study.md). Position 0 encodes as index 0, so its bit is not kept.
        rest = Signal(tk)
        lowbit = Signal(max(1, tk - 1))
        m.d.comb += [rest.eq(cur.bitmap & (cur.bitmap - 1)), lowbit.eq((cur.bitmap & ~rest)[1:])]

        in_flight = Signal(range(self.result_depth + 1))  # rows started, their slots not yet back
        issue = Signal()
        m.d.comb += issue.eq(live & (started | room))
        take = Signal()         # the input register moves into issue at the end of this cycle
        m.d.comb += take.eq(pending_valid & (~live | (issue & last)))
        with m.If(issue):
            m.d.sync += [
                cur.bitmap.eq(rest),
                cur.count.eq(cur.count - 1),
                last.eq(cur.count == 2),
                started.eq(~last),
                live.eq(~last),
            ]
        with m.If(take):
            m.d.sync += [cur.eq(pending), cur_bank.eq(pending_bank), last.eq(pending.count == 1),
                         live.eq(1), started.eq(0), pending_valid.eq(0)]
        with m.If(mine):
            m.d.sync += [*(getattr(pending, name).eq(getattr(self.i_chain.row, name)) for name in HEAD_FIELDS),
                         pending_bank.eq(write_bank), write_bank.eq(~write_bank),
                         pending_valid.eq(1)]
        # Each bank loads a row one cycle after it passed on the chain, from this lane's own chain
        # register (free-running, so it still holds that row), under a registered load bit: the
        # row's valid and target then reach the ~600 data selects of a bank through one flip-flop
        # placed beside them, not through the chain's valid across the chip (an 11 ns net, the
        # 4-lane core's critical path at 59.7 MHz, docs/design_study.md). The row cannot issue
        # before that: it takes the cycle after it arrives at the earliest and issues the next.
        # A bank also shifts one value down as its row issues, so the value to issue is always at
        # the bottom of the bank ``cur`` names.
        load = Signal(2)
        m.d.sync += load.eq(Mux(mine, Mux(write_bank, 0b10, 0b01), 0))
        for b, bank in enumerate(banks):
            with m.If(issue & (cur_bank == b)):
                m.d.sync += bank.as_value().eq(bank.as_value() >> bits)
            with m.If(load[b]):
                m.d.sync += bank.eq(self.o_chain.row.values)
        m.d.sync += [self.o_took.eq(take), self.issued.eq(issue)]

        # ---- t+1: the B row's address from the registered lowest bit ---------------------------
        tag_layout = data.StructLayout({"valid": 1, "first": 1, "last": 1, "row": range(self.rows)})
        s0 = Signal(tag_layout)
        s0_buf = Signal()
        s0_lowbit = Signal.like(lowbit)
        s0_a = Signal(signed(bits))
        m.d.sync += [s0.valid.eq(issue), s0.first.eq(~started), s0.last.eq(last), s0.row.eq(cur.row),
                     s0_buf.eq(cur.buf), s0_lowbit.eq(lowbit),
                     s0_a.eq(Mux(cur_bank, banks[1][0], banks[0][0]))]
        k_index = Signal(k_bits)
        m.d.comb += [
            k_index.eq(Cat(Cat(s0_lowbit[i - 1] for i in range(1, tk) if (i >> j) & 1).any()
                           for j in range(k_bits))),
            rd.addr.eq(Cat(k_index, s0_buf)),
        ]
        # ---- t+2: operands into the multipliers ---------------------------------------------
        s1 = Signal(data.StructLayout({**tag_layout.members, "a": signed(bits)}))
        m.d.sync += [*(getattr(s1, name).eq(getattr(s0, name)) for name in tag_layout.members), s1.a.eq(s0_a)]
        b_row = data.View(data.ArrayLayout(signed(bits), vec), rd.data)
        products = []
        for v in range(vec):
            mul = PipelinedMultiplier(a_bits=bits, b_bits=bits, target=self.target)
            m.submodules[f"mul{v}"] = mul
            m.d.comb += [mul.a.eq(s1.a), mul.b.eq(b_row[v]), mul.en.eq(1)]
            products.append(mul.product)

        # ---- t+5: accumulate; t+6: a finished row into the result memory ------------------------
        tags = [s1]
        for stage in range(PipelinedMultiplier.LATENCY):
            nxt = Signal.like(s1, name=f"tag{stage + 2}")
            m.d.sync += nxt.eq(tags[-1])
            tags.append(nxt)
        at_product = tags[-1]
        sums = Signal(data.ArrayLayout(signed(self.acc_bits), vec))
        with m.If(at_product.valid):
            for v in range(vec):
                m.d.sync += sums[v].eq(products[v] + Mux(at_product.first, 0, sums[v]))
        done = Signal()
        done_row = Signal(range(self.rows))
        m.d.sync += [done.eq(at_product.valid & at_product.last), done_row.eq(at_product.row)]

        # The result memory: written in order, read in order; asynchronous reads (distributed RAM
        # on ECP5). A stored result goes into the first empty slot that passes.
        depth = self.result_depth
        m.submodules.results = results = Memory(shape=sums_layout, depth=depth, init=[])
        res_wr = results.write_port()
        res_rd = results.read_port(domain="comb")
        write_ptr = Signal(range(depth))
        read_ptr = Signal(range(depth))
        stored_count = Signal(range(depth + 1))   # stored results not yet in a slot
        # Registered ``stored_count != 0``: ``insert`` selects each bit of the outgoing slot, so it
        # must come straight from registers (behind the count's compare it routed at 94 MHz).
        has_stored = Signal()
        stored_count_next = Signal.like(stored_count)
        stored = Signal(sums_layout)
        m.d.comb += [
            stored.row.eq(done_row),
            stored.sums.eq(sums),
            res_wr.addr.eq(write_ptr), res_wr.data.eq(stored), res_wr.en.eq(done),
            res_rd.addr.eq(read_ptr),
        ]
        insert = Signal()
        m.d.comb += insert.eq(~self.i_slot.valid & has_stored)
        oldest = data.View(sums_layout, res_rd.data)
        m.d.comb += stored_count_next.eq(stored_count + done - insert)
        m.d.sync += [
            self.o_slot.valid.eq(self.i_slot.valid | insert),
            self.o_slot.row.eq(Mux(insert, oldest.row, self.i_slot.row)),
            self.o_slot.sums.eq(Mux(insert, oldest.sums.as_value(), self.i_slot.sums.as_value())),
            stored_count.eq(stored_count_next),
            has_stored.eq(stored_count_next != 0),
        ]
        with m.If(done):
            m.d.sync += write_ptr.eq(Mux(write_ptr == depth - 1, 0, write_ptr + 1))
        with m.If(insert):
            m.d.sync += read_ptr.eq(Mux(read_ptr == depth - 1, 0, read_ptr + 1))
        in_flight_next = Signal.like(in_flight)
        m.d.comb += in_flight_next.eq(in_flight + (issue & ~started) - insert)
        m.d.sync += [in_flight.eq(in_flight_next), room.eq(in_flight_next != self.result_depth)]
        # Registered: the core reads it across the chip (a lane that turns busy is covered there by
        # the credit it holds).
        m.d.sync += self.busy.eq(pending_valid | live | (in_flight != 0) | self.o_chain.valid | self.o_slot.valid)
        return m
