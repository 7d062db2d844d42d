"""Operand loader of the vector core: commands and operand beats into one of two buffer sets.

It takes one command at a time from ``i_cmd``. A DRAIN goes straight to the descriptor output. A
GEMM waits for a free buffer set, then takes its beats from ``i_data`` in the vector core's wire
order (docs/design_study.md, "The vector core"):

1. A's rows ``m = 0 .. tile_m-1``. Dense rows: ``tile_k / bus_elems`` value beats each. Bitmap
   rows come in groups of ``G = max(1, bus_bits // tile_k)`` rows: the group's bitmaps in
   ``ceil(G * tile_k / bus_bits)`` beats (row ``g*G + i`` at bits ``[i*tile_k, (i+1)*tile_k)``
   of the concatenated beats; rows past ``tile_m`` all zero), then, for each nonempty row of the
   group in order, ``ceil(nnz / bus_elems)`` beats of its nonzeros packed from the lowest k up.
   An empty row sends no values and is not stored: its bit in ``empty`` tells the dispatcher. A
   stored row is assembled in a register and written whole, one memory word (bitmap, values).
2. B's rows ``k = 0 .. tile_k-1``, dense, row-major: ``vector / bus_elems`` beats each, or
   ``bus_elems / vector`` rows per beat (the lanes keep B by rows, so B travels by rows); each
   row is written into every lane's copy, one row per cycle.
3. The mask rows, if any: ``ceil(vector / bus_bits)`` beats per row, one memory word per row.

Only the part of the tile that carries work is sent (``ref.vector_extent``): the command's ``rows``
rows of A and of the mask, and ``k_len`` rows of B (a dense A row then has ``k_len`` values).
Its descriptor (the command and the set) is offered once the last beat is stored. The set stays
taken until the compute side releases it. Every memory write leaves from a register (one cycle
after its last beat), so the data bus never drives a memory's inputs directly.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.bits import popcount
from hw.layouts import OP_GEMM

__all__ = ["VectorLoader", "row_word_layout", "vector_descriptor_layout"]

#: Buffer sets (A rows, masks, the lanes' B copies): one computes while the other loads.
BUFFER_SETS = 2


def row_word_layout(*, tile_k: int, operand_bits: int) -> data.StructLayout:
    """One stored row of A: its number of k to issue, its bitmap and its values (packed nonzeros,
    or all values when dense)."""
    return data.StructLayout({"count": range(tile_k + 1), "bitmap": tile_k,
                              "values": data.ArrayLayout(signed(operand_bits), tile_k)})


def vector_descriptor_layout(command_layout: data.StructLayout) -> data.StructLayout:
    """A command whose operands are stored: the command and the buffer set holding them."""
    return data.StructLayout({"cmd": command_layout, "set": 1})


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class VectorLoader(wiring.Component):
    """Commands and operand beats into buffer sets (see the module docstring).

    Members
    -------
    i_cmd, i_data : In(stream)
        The core's command and data streams.
    o_desc : Out(stream of ``vector_descriptor_layout``)
    release : In(1), release_set : In(1)
        The compute side finished the GEMM of buffer set ``release_set``.
    a_wr_en, a_wr_addr, a_wr_data : Out
        A-row memory write (address ``set * tile_m + m``).
    b_wr_en, b_wr_set, b_wr_k, b_wr_data : Out
        B-row write into every lane's copy (``vector`` operands).
    mask_wr_en, mask_wr_addr, mask_wr_data : Out
        Mask memory write (address ``set * tile_m + m``, ``vector`` bits).
    busy : Out(1)      a command is being taken or its operands loaded
    starved : Out(1)   a beat was wanted and ``i_data`` had none
    empty : Out(BUFFER_SETS * tile_m)
        Per buffer set and row: the row has no nonzeros (bit ``set * tile_m + m``); 0 for dense rows.
    """

    def __init__(self, *, command_layout: data.StructLayout, operand_bits: int, tile_m: int, tile_k: int,
                 vector: int, bus_elems: int, sparse: bool) -> None:
        if vector % bus_elems and bus_elems % vector:
            raise ValueError(f"VectorLoader vector ({vector}) and bus_elems ({bus_elems}) must divide one another")
        if tile_k % bus_elems:
            raise ValueError(f"VectorLoader tile_k ({tile_k}) must be a multiple of bus_elems ({bus_elems})")
        if bus_elems & (bus_elems - 1):
            raise ValueError(f"VectorLoader bus_elems ({bus_elems}) must be a power of two")
        self._cmd_layout = command_layout
        self._bits, self._tm, self._tk, self._vec = operand_bits, tile_m, tile_k, vector
        self._be, self._sparse = bus_elems, sparse
        self._bus_bits = bus_elems * operand_bits
        self.row_layout = row_word_layout(tile_k=tile_k, operand_bits=operand_bits)
        super().__init__({
            "i_cmd": In(stream.Signature(command_layout)),
            "i_data": In(stream.Signature(self._bus_bits)),
            "o_desc": Out(stream.Signature(vector_descriptor_layout(command_layout))),
            "release": In(1),
            "release_set": In(1),
            "a_wr_en": Out(1),
            "a_wr_addr": Out(range(BUFFER_SETS * tile_m)),
            "a_wr_data": Out(self.row_layout),
            "b_wr_en": Out(1),
            "b_wr_set": Out(1),
            "b_wr_k": Out(range(tile_k)),
            "b_wr_data": Out(data.ArrayLayout(signed(operand_bits), vector)),
            "mask_wr_en": Out(1),
            "mask_wr_addr": Out(range(BUFFER_SETS * tile_m)),
            "mask_wr_data": Out(vector),
            "busy": Out(1),
            "starved": Out(1),
            "empty": Out(BUFFER_SETS * tile_m),
        })

    def elaborate(self, platform):
        m = Module()
        bits, tm, tk, vec, be, bus_bits = self._bits, self._tm, self._tk, self._vec, self._be, self._bus_bits
        dense_beats = tk // be
        b_beats = max(1, vec // be)          # beats per B row
        rows_per_beat = max(1, be // vec)    # B rows per beat (a wide bus): written one per cycle
        mask_beats = _ceil_div(vec, bus_bits)

        cmd = Signal(self._cmd_layout)
        cur_set = Signal()
        used = Signal(BUFFER_SETS)
        free_set = Signal()
        m.d.comb += free_set.eq(used[0])  # set 0 if free, else set 1
        with m.If(self.release):
            m.d.sync += used.bit_select(self.release_set, 1).eq(0)

        # Counters of the load: row (A, mask) or k (B), and the beat within the row.
        row = Signal(range(max(tm, tk) + bus_bits // min(tk, bus_bits) + 1))
        beat = Signal(range(max(dense_beats, b_beats, mask_beats, _ceil_div(tk, be), _ceil_div(tk, bus_bits)) + 1))
        # Bitmap rows come in groups: one bitmap beat for ``group`` rows when a row's bitmap fits
        # in a beat several times, then the value beats of each nonempty row of the group in order.
        group = max(1, bus_bits // tk)
        group_beats = _ceil_div(group * tk, bus_bits)
        group_maps = Signal(group * tk)
        todo = Signal(group)                 # nonempty rows of the group whose values are still due
        todo_low = Signal(group)
        m.d.comb += todo_low.eq(todo & -todo)
        counts = Array(Signal(range(tk + 1), name=f"count{i}") for i in range(group))
        # Beside each count, the count minus one (kept modulo 2**w, so it starts at all ones): its
        # upper bits are the index of the row's last value beat, so the end of a row is an equality
        # of a few register bits rather than a compare behind the count's mux.
        ends = Array(Signal(max(1, (tk - 1).bit_length()), name=f"end{i}") for i in range(group))
        empty = Signal(BUFFER_SETS * tm)     # per set and row: no nonzeros (the row is not stored)
        m.d.comb += self.empty.eq(empty)
        # A group's empty bits are written one cycle after its bitmap beat, from registers: the
        # dispatcher reads them only after the tile's descriptor, which follows the B rows.
        empty_we = Signal(group)
        empty_at = Signal(range(BUFFER_SETS * tm))
        empty_bits = Signal(group)
        m.d.sync += empty_we.eq(0)
        for i in range(group):
            with m.If(empty_we[i]):
                m.d.sync += empty.bit_select(empty_at + i, 1).eq(empty_bits[i])

        # The row being assembled, written from registers one cycle after its last beat.
        a_row = Signal(self.row_layout)
        b_row = Signal(data.ArrayLayout(signed(bits), vec))
        mask_row = Signal(mask_beats * bus_bits)
        a_write, b_write, mask_write = Signal(name="a_write"), Signal(name="b_write"), Signal(name="mask_write")
        write_row = Signal(range(max(tm, tk)))
        m.d.sync += [a_write.eq(0), b_write.eq(0), mask_write.eq(0)]
        m.d.comb += [
            self.a_wr_en.eq(a_write), self.a_wr_addr.eq(cur_set * tm + write_row), self.a_wr_data.eq(a_row),
            self.b_wr_en.eq(b_write), self.b_wr_set.eq(cur_set), self.b_wr_k.eq(write_row),
            self.b_wr_data.eq(b_row),
            self.mask_wr_en.eq(mask_write), self.mask_wr_addr.eq(cur_set * tm + write_row),
            self.mask_wr_data.eq(mask_row[:vec]),
        ]

        # A dense row's beats and the bitmap that issues its k < k_len.
        k_beats = Signal(range(dense_beats + 1))
        k_ones = Signal(tk)
        m.d.comb += [k_beats.eq((cmd.k_len + be - 1) // be), k_ones.eq((1 << cmd.k_len) - 1)]

        beat_in = self.i_data.payload
        got = self.i_data.valid & self.i_data.ready
        desc_valid = Signal()
        m.d.comb += [self.o_desc.valid.eq(desc_valid), self.o_desc.payload.cmd.eq(cmd),
                     self.o_desc.payload.set.eq(cur_set)]
        with m.If(self.o_desc.ready):
            m.d.sync += desc_valid.eq(0)

        # The operand slots take the bus in every cycle, whether or not a beat is taken: their
        # clock enables are then a decode of ``beat`` alone, not the FSM's ``ready`` and the bus's
        # ``valid`` fanned out to some 700 flip-flops across the loader. What they take in a cycle
        # without a beat, or a beat of another kind, is never read: the slot ``beat`` of a row is
        # written again by the row's own beat before the row is complete, and a completed row is
        # read (written to its memory) in the cycle after its last beat, before anything taken in
        # that cycle lands. A dense A row and a row's packed values share the slots (``tile_k`` is
        # a multiple of ``bus_elems``, so beat j holds values j*bus_elems and up in both).
        for j in range(tk // be):
            with m.If(beat == j):
                m.d.sync += Cat(a_row.values[j * be + e] for e in range(be)).eq(beat_in)
        if rows_per_beat == 1:
            for j in range(b_beats):
                with m.If(beat == j):
                    m.d.sync += Cat(b_row[j * be + e] for e in range(be)).eq(beat_in)
        for j in range(mask_beats):
            with m.If(beat == j):
                m.d.sync += mask_row[j * bus_bits:(j + 1) * bus_bits].eq(beat_in)

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.i_cmd.ready.eq(~desc_valid & ((self.i_cmd.payload.op != OP_GEMM) | ~used.all()))
                with m.If(self.i_cmd.valid & self.i_cmd.ready):
                    m.d.sync += [cmd.eq(self.i_cmd.payload), row.eq(0), beat.eq(0)]
                    with m.If(self.i_cmd.payload.op == OP_GEMM):
                        m.d.sync += [cur_set.eq(free_set), used.bit_select(free_set, 1).eq(1), todo.eq(0)]
                        for r in range(tm):   # dense rows are never empty
                            m.d.sync += empty.bit_select(free_set * tm + r, 1).eq(0)
                        m.next = "A_ROWS"
                    with m.Else():
                        m.d.sync += desc_valid.eq(1)
            with m.State("A_ROWS"):
                m.d.comb += self.i_data.ready.eq(row < cmd.rows)
                bitmap_rows = cmd.a_bitmap if self._sparse else Const(0)
                with m.If(~bitmap_rows):
                    # Dense rows: ceil(k_len / bus_elems) value beats each; every k < k_len is issued.
                    with m.If(got):
                        with m.If(beat == k_beats - 1):
                            m.d.sync += [a_row.bitmap.eq(k_ones), a_row.count.eq(cmd.k_len), a_write.eq(1),
                                         write_row.eq(row),
                                         row.eq(row + 1), beat.eq(0)]
                        with m.Else():
                            m.d.sync += beat.eq(beat + 1)
                with m.Elif(todo == 0):
                    # A group's bitmap beat(s): the bitmaps of rows row .. row + group - 1.
                    assembled = Signal(group * tk)
                    m.d.comb += assembled.eq(group_maps)
                    for j in range(group_beats):
                        width = min(bus_bits, group * tk - j * bus_bits)
                        with m.If(beat == j):
                            m.d.comb += assembled[j * bus_bits:j * bus_bits + width].eq(beat_in[:width])
                    # Each row's nonzeros, counted from the beat's own bits (fixed slices: a beat holds
                    # whole rows, or one row spans the group's beats), not from ``assembled``, whose
                    # select logic would put the FSM in front of the popcount.
                    # Whether a row has nonzeros is an OR of its bits, not the popcount's result.
                    if group_beats == 1:
                        slices = [beat_in[i * tk:(i + 1) * tk] for i in range(group)]
                        parts = [popcount(bits_i, tk) for bits_i in slices]
                        nonempty = Cat(bits_i.any() for bits_i in slices)
                    else:
                        last_width = tk - (group_beats - 1) * bus_bits
                        last_beat = beat == group_beats - 1
                        parts = [Mux(last_beat, popcount(beat_in[:last_width], last_width),
                                     popcount(beat_in, bus_bits))]
                        nonempty = (((beat != 0) & (counts[0] != 0))
                                    | Mux(last_beat, beat_in[:last_width].any(), beat_in.any()))
                    with m.If(got):
                        m.d.sync += [group_maps.eq(assembled), beat.eq(beat + 1)]
                        for i in range(group):
                            m.d.sync += [counts[i].eq(Mux(beat == 0, 0, counts[i]) + parts[i]),
                                         ends[i].eq(Mux(beat == 0, -1, ends[i]) + parts[i])]
                        with m.If(beat == group_beats - 1):
                            in_tile = Cat(row + i < cmd.rows for i in range(group))
                            m.d.sync += [todo.eq(nonempty & in_tile), beat.eq(0),
                                         empty_we.eq(in_tile), empty_at.eq(cur_set * tm + row),
                                         empty_bits.eq(~nonempty)]
                            with m.If((nonempty & in_tile) == 0):
                                m.d.sync += row.eq(row + group)
                with m.Else():
                    # The value beats of the group's next nonempty row (its lowest pending row).
                    pick = Signal(range(group))
                    m.d.comb += pick.eq(Cat(Cat(todo_low[i] for i in range(group) if (i >> j) & 1).any()
                                            for j in range(len(pick))))
                    with m.If(got):
                        # The row's last value beat: its nonzeros end within this beat.
                        with m.If(ends[pick][(be - 1).bit_length():] == beat):
                            m.d.sync += [a_row.bitmap.eq(group_maps.word_select(pick, tk)),
                                         a_row.count.eq(counts[pick]), a_write.eq(1),
                                         write_row.eq(row + pick), todo.eq(todo & ~todo_low), beat.eq(0)]
                            with m.If((todo & ~todo_low) == 0):
                                m.d.sync += row.eq(row + group)
                        with m.Else():
                            m.d.sync += beat.eq(beat + 1)
                with m.If(row >= cmd.rows):
                    m.d.sync += [row.eq(0), beat.eq(0)]
                    m.next = "B_ROWS"
            with m.State("B_ROWS"):
                if rows_per_beat == 1:
                    m.d.comb += self.i_data.ready.eq(row < cmd.k_len)
                    with m.If(got):
                        with m.If(beat == b_beats - 1):
                            m.d.sync += [b_write.eq(1), write_row.eq(row), row.eq(row + 1), beat.eq(0)]
                        with m.Else():
                            m.d.sync += beat.eq(beat + 1)
                else:
                    # A beat holds rows_per_beat rows: the first is written from the beat, the
                    # others from a copy of it in the following cycles (one row write per cycle).
                    held = Signal(bus_bits)
                    sub = Signal(range(rows_per_beat))
                    m.d.comb += self.i_data.ready.eq((row < cmd.k_len) & (sub == 0))
                    source = Mux(sub == 0, beat_in, held)
                    part = Signal(vec * bits)
                    with m.Switch(sub):
                        for j in range(rows_per_beat):
                            with m.Case(j):
                                m.d.comb += part.eq(source[j * vec * bits:(j + 1) * vec * bits])
                    with m.If(got | (sub != 0)):
                        m.d.sync += [b_row.eq(part), b_write.eq(1), write_row.eq(row), row.eq(row + 1),
                                     sub.eq(Mux(sub == rows_per_beat - 1, 0, sub + 1))]
                    with m.If(got):
                        m.d.sync += held.eq(beat_in)
                with m.If(row >= cmd.k_len):
                    m.d.sync += [row.eq(0), beat.eq(0)]
                    with m.If(cmd.has_mask):
                        m.next = "MASK_ROWS"
                    with m.Else():
                        m.d.sync += desc_valid.eq(1)
                        m.next = "IDLE"
            with m.State("MASK_ROWS"):
                m.d.comb += self.i_data.ready.eq(row < cmd.rows)
                with m.If(got):
                    with m.If(beat == mask_beats - 1):
                        m.d.sync += [mask_write.eq(1), write_row.eq(row), row.eq(row + 1), beat.eq(0)]
                    with m.Else():
                        m.d.sync += beat.eq(beat + 1)
                with m.If(row >= cmd.rows):
                    m.d.sync += [row.eq(0), beat.eq(0), desc_valid.eq(1)]
                    m.next = "IDLE"
            loading = ~fsm.ongoing("IDLE")
        m.d.comb += [
            self.busy.eq(loading | desc_valid),
            self.starved.eq(loading & self.i_data.ready & ~self.i_data.valid),
        ]
        return m
