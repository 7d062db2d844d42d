"""Operand loader: takes commands and their operand data off the input streams into a buffer set.

GEMM operands arrive on the data stream in the order of docs/core.md: A's rows, then B's
columns (each a ``tile_k`` vector), then the output mask's rows when ``has_mask``. A vector is
either dense (``tile_k / bus_elems`` beats of values) or bitmap-compressed (its bitmap, then its
nonzeros packed ``bus_elems`` per beat, ``ceil(nnz / bus_elems)`` beats, none for an empty
vector). Beats are written unchanged as words of the operand memories, so the values of a
compressed vector stay packed: a lane finds value ``k`` at rank ``popcount(bitmap below k)``.
The bitmaps (received, or made by zero detection of dense beats in the sparse core) and the mask
rows go into registers, where the dispatcher reads them all at once.

There are two buffer sets: the loader fills one while the lanes compute on the other. A GEMM's
descriptor is handed to the compute side when its last beat is in; a DRAIN's at once (in order).
One beat is taken per cycle, with no bubble between vectors or sections.

Every write (operand memories, bitmap and mask registers, the lanes' bitmap copies) leaves from a
register, one cycle after its beat: the write enables fan out across the whole core, and taking
them straight off ``i_data.valid`` made the input handshake the sparse core's critical path. The
delay costs no cycle: the last beat's writes land at the edge where the GEMM's descriptor enters
the descriptor queue, before the compute side can take it.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.bits import popcount
from hw.layouts import OP_DRAIN

__all__ = ["BUFFER_SETS", "OperandLoader", "descriptor_layout"]

#: Operand buffer sets (double buffering).
BUFFER_SETS = 2


def descriptor_layout(command_layout: data.StructLayout) -> data.StructLayout:
    """A command on its way to the compute side: the command plus the buffer set it was loaded into."""
    return data.StructLayout({"cmd": command_layout, "set": range(BUFFER_SETS)})


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class OperandLoader(wiring.Component):
    """Command and operand intake of the sparse core; see the module docstring.

    Members
    -------
    i_cmd : In(stream of ``core_command_layout``)
    i_data : In(stream of ``bus_elems * operand_bits`` bits)
    o_desc : Out(stream of :func:`descriptor_layout`)
        A command is only accepted while ``o_desc.ready``; its descriptor follows when loaded.
    release, release_set : In(1)
        The compute side is done with a buffer set.
    a_wr_*, b_wr_* : Out
        Write ports into the A and B operand memories (``addr``, ``data``, ``en``), registered.
        Latency: a beat's write is presented the cycle after the beat is taken; its bitmap and
        mask registers update one edge later than the beat too.
    a_bitmaps, b_bitmaps : Out(ArrayLayout(tile_k, BUFFER_SETS * rows))
        Row ``set * rows + r`` is the bitmap of A row / B column ``r`` of ``set`` (sparse core only).
    b_bitmap_wr_addr, b_bitmap_wr_data, b_bitmap_wr_en : Out
        The same B column bitmap writes as a write port, for the lanes' own copies (sparse core
        only): address ``Cat(column, set)``, i.e. ``set * 2**column_bits + column`` with
        ``column_bits = (tile_n - 1).bit_length()``, so a lane reads it by concatenation, with no
        adder (``set * tile_n + column`` only when ``tile_n`` is a power of two).
    masks : Out(ArrayLayout(tile_n, BUFFER_SETS * tile_m))
    starved : Out(1)
        A beat is wanted and ``i_data`` has none.
    busy : Out(1)
        A GEMM's operands are being loaded.
    """

    def __init__(self, *, command_layout: data.StructLayout, operand_bits: int, tile_m: int, tile_n: int,
                 tile_k: int, bus_elems: int, sparse: bool) -> None:
        self._cl = command_layout
        self._ob, self._tm, self._tn, self._tk, self._w, self._sparse = (
            operand_bits, tile_m, tile_n, tile_k, bus_elems, sparse)
        words_per_row = tile_k // bus_elems
        self.a_words = BUFFER_SETS * tile_m * words_per_row
        self.b_words = BUFFER_SETS * tile_n * words_per_row
        bus_bits = bus_elems * operand_bits
        bitmaps = {
            "a_bitmaps": Out(data.ArrayLayout(tile_k, BUFFER_SETS * tile_m)),
            "b_bitmaps": Out(data.ArrayLayout(tile_k, BUFFER_SETS * tile_n)),
            "b_bitmap_wr_addr": Out((tile_n - 1).bit_length() + 1),
            "b_bitmap_wr_data": Out(tile_k),
            "b_bitmap_wr_en": Out(1),
        } if sparse else {}
        super().__init__({
            "i_cmd": In(stream.Signature(command_layout)),
            "i_data": In(stream.Signature(bus_bits)),
            "o_desc": Out(stream.Signature(descriptor_layout(command_layout))),
            "release": In(1),
            "release_set": In(range(BUFFER_SETS)),
            "a_wr_addr": Out(range(self.a_words)),
            "a_wr_data": Out(bus_bits),
            "a_wr_en": Out(1),
            "b_wr_addr": Out(range(self.b_words)),
            "b_wr_data": Out(bus_bits),
            "b_wr_en": Out(1),
            **bitmaps,
            "masks": Out(data.ArrayLayout(tile_n, BUFFER_SETS * tile_m)),
            "starved": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ob, tm, tn, tk, w = self._ob, self._tm, self._tn, self._tk, self._w
        bus_bits = w * ob
        words_per_row = tk // w
        bitmap_beats = _ceil_div(tk, bus_bits)      # beats of one operand vector's bitmap
        mask_beats = _ceil_div(tn, bus_bits)        # beats of one mask row
        max_beats = max(bitmap_beats, words_per_row, mask_beats)

        full = Signal(BUFFER_SETS)      # set holds loaded or loading operands not yet released
        load_set = Signal(range(BUFFER_SETS))
        cmd = Signal(self._cl)
        loading = Signal()
        section = Signal(2)             # 0: A rows, 1: B columns, 2: mask rows
        row = Signal(range(max(tm, tn)))
        in_bitmap = Signal()            # the current vector's bitmap beats are arriving
        beat = Signal(range(max_beats))
        value_beats = Signal(range(words_per_row + 1))  # packed beats of the current vector
        gather = Signal(max(bitmap_beats, mask_beats) * bus_bits)  # bitmap / mask being assembled
        done_loading = Signal()         # all beats in, descriptor waiting to leave

        beat_in = self.i_data.valid & self.i_data.ready
        m.d.comb += [
            self.i_data.ready.eq(loading & ~done_loading),
            self.starved.eq(self.i_data.ready & ~self.i_data.valid),
            self.busy.eq(loading),
        ]

        # ---- command intake -----------------------------------------------------------------
        is_drain = self.i_cmd.payload.op == OP_DRAIN
        take_cmd = Signal()
        m.d.comb += take_cmd.eq(self.i_cmd.valid & ~loading & self.o_desc.ready &
                                (is_drain | ~full.bit_select(load_set, 1)))
        m.d.comb += self.i_cmd.ready.eq(take_cmd)
        # The descriptor: a DRAIN's leaves as it is accepted, a GEMM's when its data is in.
        m.d.comb += [
            self.o_desc.valid.eq(Mux(loading, done_loading, take_cmd & is_drain)),
            self.o_desc.payload.cmd.eq(Mux(loading, cmd, self.i_cmd.payload)),
            self.o_desc.payload.set.eq(load_set),
        ]
        release_bits = Signal(BUFFER_SETS)
        acquire_bits = Signal(BUFFER_SETS)
        m.d.comb += [
            release_bits.eq(Mux(self.release, 1 << self.release_set, 0)),
            acquire_bits.eq(Mux(take_cmd & ~is_drain, 1 << load_set, 0)),
        ]
        m.d.sync += full.eq((full & ~release_bits) | acquire_bits)

        first_in_bitmap = self.i_cmd.payload.a_bitmap if self._sparse else 0
        with m.If(take_cmd & ~is_drain):
            m.d.sync += [
                cmd.eq(self.i_cmd.payload),
                loading.eq(1),
                section.eq(0),
                row.eq(0),
                beat.eq(0),
                in_bitmap.eq(first_in_bitmap),
            ]
        with m.If(done_loading & self.o_desc.ready):
            m.d.sync += [loading.eq(0), done_loading.eq(0), load_set.eq(load_set + 1)]

        # ---- one data beat --------------------------------------------------------------------
        data_beat = self.i_data.payload
        gathered = Signal.like(gather)
        m.d.comb += gathered.eq(gather)
        with m.If(in_bitmap | (section == 2)):
            m.d.comb += gathered.word_select(beat, bus_bits).eq(data_beat)
        if self._sparse:
            # Dense vectors get their bitmap by zero detection, one word at a time.
            nonzero = Cat(data_beat.word_select(e, ob) != 0 for e in range(w))
            with m.If(~in_bitmap & (section != 2) & ~self._section_is_bitmap(section, cmd)):
                m.d.comb += gathered.word_select(beat, w).eq(nonzero)
        # The packed-beat count only goes into a register; whether the vector has no packed beats
        # at all (the control decision in this cycle) is a zero test, not the popcount.
        # A bitmap that fits one beat is counted straight off the data input, not through the
        # gather multiplexers.
        received_bitmap = data_beat[:tk] if bitmap_beats == 1 else gathered[:tk]
        nnz_beats = Signal(range(words_per_row + 1))
        nnz = popcount(received_bitmap, tk)
        m.d.comb += nnz_beats.eq((nnz + (w - 1)) >> (w - 1).bit_length() if w > 1 else nnz)
        empty_vector = Signal()
        m.d.comb += empty_vector.eq(received_bitmap == 0)

        rows_here = Mux(section == 0, tm, tn)
        word_addr = load_set * (rows_here * words_per_row) + row * words_per_row + beat
        m.d.sync += [
            self.a_wr_addr.eq(word_addr),
            self.b_wr_addr.eq(word_addr),
            self.a_wr_data.eq(data_beat),
            self.b_wr_data.eq(data_beat),
            self.a_wr_en.eq(beat_in & ~in_bitmap & (section == 0)),
            self.b_wr_en.eq(beat_in & ~in_bitmap & (section == 1)),
        ]

        vector_done = Signal()
        next_is_bitmap = Signal()
        with m.If(section == 2):
            m.d.comb += vector_done.eq(beat == mask_beats - 1)
        with m.Elif(in_bitmap):
            m.d.comb += vector_done.eq((beat == bitmap_beats - 1) & empty_vector)
        with m.Elif(self._section_is_bitmap(section, cmd)):
            m.d.comb += vector_done.eq(beat == value_beats - 1)
        with m.Else():
            m.d.comb += vector_done.eq(beat == words_per_row - 1)
        last_row = row == rows_here - 1
        last_vector = Mux(section == 2, row == tm - 1, last_row & ((section == 1) & ~cmd.has_mask))

        # Finished vectors go into their register with a decoded enable per register (constant
        # indices): a write through a variable index would make a shifter over all of them. The
        # decoded enables and the vector are registered first (see the module docstring).
        store = beat_in & vector_done
        finished = Signal(max(tk, tn))
        m.d.sync += finished.eq(gathered[:max(tk, tn)])

        def store_enable(name, section_index, bs, r):
            enable = Signal(name=f"store_{name}{bs}_{r}")
            m.d.sync += enable.eq(store & (section == section_index) & (load_set == bs) & (row == r))
            return enable

        for bs in range(BUFFER_SETS):
            for r in range(tm):
                with m.If(store_enable("mask", 2, bs, r)):
                    m.d.sync += self.masks[bs * tm + r].eq(finished[:tn])
                if self._sparse:
                    with m.If(store_enable("a", 0, bs, r)):
                        m.d.sync += self.a_bitmaps[bs * tm + r].eq(finished[:tk])
            if self._sparse:
                for r in range(tn):
                    with m.If(store_enable("b", 1, bs, r)):
                        m.d.sync += self.b_bitmaps[bs * tn + r].eq(finished[:tk])
        if self._sparse:
            m.d.sync += [
                self.b_bitmap_wr_en.eq(store & (section == 1)),
                self.b_bitmap_wr_addr.eq(Cat(row[:(tn - 1).bit_length()], load_set)),
            ]
            m.d.comb += self.b_bitmap_wr_data.eq(finished[:tk])

        with m.If(beat_in):
            m.d.sync += gather.eq(gathered)
            with m.If(vector_done):
                m.d.sync += [beat.eq(0), gather.eq(0)]
                with m.If(last_vector):
                    m.d.sync += done_loading.eq(1)
                with m.Elif((section != 2) & last_row):
                    # Next section: B after A, the mask after B.
                    m.d.sync += [section.eq(section + 1), row.eq(0)]
                    m.d.comb += next_is_bitmap.eq((section == 0) & self._section_is_bitmap(1, cmd))
                with m.Else():
                    m.d.sync += row.eq(row + 1)
                    m.d.comb += next_is_bitmap.eq((section != 2) & self._section_is_bitmap(section, cmd))
                m.d.sync += in_bitmap.eq(next_is_bitmap)
            with m.Elif(in_bitmap & (beat == bitmap_beats - 1)):
                m.d.sync += [in_bitmap.eq(0), beat.eq(0), value_beats.eq(nnz_beats)]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        return m

    def _section_is_bitmap(self, section, cmd):
        """Whether the operand of ``section`` (0: A, 1: B) is bitmap-compressed (never in the dense core)."""
        if not self._sparse:
            return 0
        if isinstance(section, int):
            return cmd.a_bitmap if section == 0 else cmd.b_bitmap
        return Mux(section == 0, cmd.a_bitmap, cmd.b_bitmap)
