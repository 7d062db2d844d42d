"""Vector lane: one row of the skipped operand at a time against a stored block of the other.

The lane of the vector core chosen by the design study (docs/design_study.md). It holds a block
``B`` of ``tile_k`` rows of ``vector`` operands (two buffers, so the next block loads while this one
is used) and takes rows of the skipped operand ``A`` as a ``tile_k``-bit nonzero bitmap plus the
row's nonzero values packed in order. Each cycle it issues one nonzero ``a[k]``, broadcast to
``vector`` multipliers against ``B[k][0..vector-1]``, so a row costs ``nnz`` cycles for ``vector``
dot products, and rows follow each other with no idle cycle. The control (the lowest set bit of
the bitmap, a shift of the packed values) is paid once per ``vector`` MACs; the packed value of
the j-th issued nonzero is simply the j-th value, so no popcount rank is needed.

Pipeline, cycle by cycle (``t`` = the cycle a nonzero issues)::

    t-2   ``i_row`` transfers the row (for the lane's first row; later rows arrive while the
          previous one issues)
    t-1   the row waits in the input register
    t     issue: lowest set bit k of the remaining bitmap, value = the lowest packed value;
          B block read at (buffer, k)
    t+1   operands into the ``vector`` multipliers (``hw.mac.PipelinedMultiplier``, 3 stages)
    t+4   product available; accumulated (the row's first product restarts the sum)
    t+5   a finished row's sums are written into the result FIFO
    t+7   the sums are on ``o_sums`` (through the FIFO's memory and output register)

A row's first nonzero reserves a slot in the result FIFO, so a row is only started when its
result will find room and the multipliers never stall.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.mac import TARGETS, PipelinedMultiplier

__all__ = ["VectorLane", "vector_row_layout", "vector_sums_layout"]


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
        Rows in flight from their first issue until ``o_sums`` takes their sums, 1..16; at least
        ``RESULT_LATENCY + 1`` (the default, 8) keeps rows of one nonzero at one per cycle.

    Members
    -------
    b_en, b_buf, b_k, b_data : In
        B block write port: when ``b_en``, row ``b_k`` of buffer ``b_buf`` becomes ``b_data``
        (``vector`` signed operands). Write the buffer no row in the lane uses.
    i_row : ``In(stream.Signature(vector_row_layout(...)))``
        Rows; the bitmap must not be empty (the core skips empty rows without a lane) and ``count``
        must be its popcount.
    o_sums : ``Out(stream.Signature(vector_sums_layout(...)))``
        One result per row, in row order: ``sums[v] = sum_j values[j] * B[buf][k_j][v]`` over the
        row's nonzeros ``k_j``.
    busy : ``Out(1)``
        A row is in the lane (input register, issuing, in the pipeline or in the result FIFO).
    issued : ``Out(1)``
        A nonzero issues this cycle (``vector`` MACs).

    Latency: a row transferred on ``i_row`` in cycle ``c`` while the lane is idle issues its first
    nonzero in cycle ``c + 2``; its sums are valid on ``o_sums`` :attr:`RESULT_LATENCY` cycles
    after its last nonzero issued. Throughput: one nonzero per cycle, across row boundaries.
    """

    #: Cycles from a row's last issue (cycle t) to its sums on ``o_sums`` (cycle t + this).
    RESULT_LATENCY = 7

    def __init__(self, *, vector: int, tile_k: int, operand_bits: int, acc_bits: int, rows: int,
                 target: str = "generic", result_depth: int = 8) -> None:
        for name, value, low, high in (("vector", vector, 1, 64), ("tile_k", tile_k, 1, 1024),
                                       ("operand_bits", operand_bits, 2, 18), ("rows", rows, 1, 4096),
                                       ("result_depth", result_depth, 1, 16)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"VectorLane {name} must be an integer in {low}..{high}, not {value!r}")
        if not isinstance(acc_bits, int) or isinstance(acc_bits, bool) or not 2 * operand_bits <= acc_bits <= 64:
            raise ValueError(f"VectorLane acc_bits must be an integer in {2 * operand_bits}..64, not {acc_bits!r}")
        if target not in TARGETS:
            raise ValueError(f"VectorLane target must be one of {TARGETS}, not {target!r}")
        self.vector, self.tile_k, self.operand_bits = vector, tile_k, operand_bits
        self.acc_bits, self.rows, self.target, self.result_depth = acc_bits, rows, target, result_depth
        super().__init__({
            "b_en": In(1),
            "b_buf": In(1),
            "b_k": In(range(tile_k)),
            "b_data": In(data.ArrayLayout(signed(operand_bits), vector)),
            "i_row": In(stream.Signature(vector_row_layout(tile_k=tile_k, operand_bits=operand_bits, rows=rows))),
            "o_sums": Out(stream.Signature(vector_sums_layout(vector=vector, acc_bits=acc_bits, rows=rows))),
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

        # ---- rows: input register, then the row being issued --------------------------------
        pending = Signal(row_layout)
        pending_valid = Signal()
        cur = Signal(row_layout)
        live = Signal()         # ``cur`` has nonzeros left to issue
        started = Signal()      # ``cur``'s first nonzero has issued (it owns a result slot)

        # The lowest set bit by one subtraction; its index by an OR tree over the one-hot bits.
        # (Position 0 encodes as index 0, so the one-hot bit of position 0 is not needed.)
        rest = Signal(tk)
        lowbit = Signal(max(1, tk - 1))
        m.d.comb += [rest.eq(cur.bitmap & (cur.bitmap - 1)), lowbit.eq((cur.bitmap & ~rest)[1:])]
        k_index = Signal(k_bits)
        m.d.comb += k_index.eq(Cat(
            Cat(lowbit[i - 1] for i in range(1, tk) if (i >> j) & 1).any() for j in range(k_bits)))

        in_flight = Signal(range(self.result_depth + 1))  # rows started, their sums not yet taken
        issue = Signal()
        last = Signal()
        m.d.comb += [
            issue.eq(live & (started | (in_flight != self.result_depth))),
            last.eq(cur.count == 1),
            self.issued.eq(issue),
            rd.addr.eq(Cat(k_index, cur.buf)),
        ]
        take_next = ~live | (issue & last)   # ``cur`` is free now or after this cycle's issue
        # The input register refills in the cycle it empties, so rows of one nonzero follow each
        # other with no gap (``ready`` depends on the lane's registers, never on ``valid``).
        m.d.comb += self.i_row.ready.eq(~pending_valid | take_next)
        with m.If(issue):
            m.d.sync += [
                cur.bitmap.eq(rest),
                cur.count.eq(cur.count - 1),
                cur.values.as_value().eq(cur.values.as_value() >> bits),
                started.eq(~last),
                live.eq(~last),
            ]
        with m.If(take_next & pending_valid):
            m.d.sync += [cur.eq(pending), live.eq(1), started.eq(0), pending_valid.eq(0)]
        # The input register loads whenever it may (empty, or emptying this cycle), and only its
        # valid bit depends on the handshake: the core's choice of lane never reaches the enable
        # of these wide registers.
        with m.If(self.i_row.ready):
            m.d.sync += pending.eq(self.i_row.payload)
        with m.If(self.i_row.valid & self.i_row.ready):
            m.d.sync += pending_valid.eq(1)

        # ---- t+1: operands into the multipliers ---------------------------------------------
        s1 = Signal(data.StructLayout({"valid": 1, "first": 1, "last": 1, "row": range(self.rows),
                                       "a": signed(bits)}))
        m.d.sync += [s1.valid.eq(issue), s1.first.eq(~started), s1.last.eq(last), s1.row.eq(cur.row),
                     s1.a.eq(cur.values[0])]
        b_row = data.View(data.ArrayLayout(signed(bits), vec), rd.data)
        products = []
        for v in range(vec):
            mul = PipelinedMultiplier(a_bits=bits, b_bits=bits, target=self.target)
            m.submodules[f"mul{v}"] = mul
            m.d.comb += [mul.a.eq(s1.a), mul.b.eq(b_row[v]), mul.en.eq(1)]
            products.append(mul.product)

        # ---- t+4: accumulate; t+5: a finished row into the result FIFO ------------------------
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

        m.submodules.results = results = SyncFIFOBuffered(width=sums_layout.size, depth=self.result_depth)
        out = Signal(sums_layout)
        m.d.comb += [
            out.row.eq(done_row),
            out.sums.eq(sums),
            results.w_data.eq(out),
            results.w_en.eq(done),
            self.o_sums.payload.eq(results.r_data),
            self.o_sums.valid.eq(results.r_rdy),
            results.r_en.eq(self.o_sums.ready),
        ]
        popped = self.o_sums.valid & self.o_sums.ready
        m.d.sync += in_flight.eq(in_flight + (issue & ~started) - popped)
        m.d.comb += self.busy.eq(pending_valid | live | (in_flight != 0))
        return m
