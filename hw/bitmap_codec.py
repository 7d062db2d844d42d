"""Bitmap codec: dense operand beats <-> the sparse core's bitmap-compressed vector format.

The compressed format is the core's (docs/core.md, "Bitmap-compressed vector"; executable
definition ``sim.core_program``, integer model ``ref.bitmap_codec``). A vector is ``tile_k``
signed ``operand_bits``-bit codes; a beat is ``bus_bits = bus_elems * operand_bits`` bits with
element ``e`` at bits ``[e*operand_bits, (e+1)*operand_bits)``.

- dense:      ``D = tile_k / bus_elems`` beats, element ``k`` in beat ``k div bus_elems``;
- compressed: ``NB = ceil(tile_k / bus_bits)`` bitmap beats, then ``ceil(nnz / bus_elems)``
  beats of the nonzeros in increasing ``k``, the unused elements of the last one 0. An all-zero
  vector has no value beats.

Vectors follow each other with no separator on either side, exactly as on the core's ``i_data``,
so :class:`BitmapEncoder`'s output can feed the core directly.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.bits import popcount

__all__ = ["BitmapDecoder", "BitmapEncoder"]

#: Value beats the decoder can take ahead of the dense beats that need them.
_VALUE_FIFO_DEPTH = 2


def _check_codec_parameters(kind: str, operand_bits: int, bus_elems: int, tile_k: int) -> None:
    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(operand_bits) or not 2 <= operand_bits <= 32:
        raise ValueError(f"{kind} operand_bits must be an integer in 2..32, not {operand_bits!r}")
    if not is_int(bus_elems) or not 1 <= bus_elems <= 64 or bus_elems & (bus_elems - 1):
        raise ValueError(f"{kind} bus_elems must be a power of two in 1..64, not {bus_elems!r}")
    if not is_int(tile_k) or not 1 <= tile_k <= 1024 or tile_k % bus_elems:
        raise ValueError(f"{kind} tile_k must be an integer in 1..1024 and a multiple of "
                         f"bus_elems = {bus_elems}, not {tile_k!r}")


def _elements(word, count: int, bits: int) -> list:
    return [word[e * bits:(e + 1) * bits] for e in range(count)]


def _exclusive_prefix_counts(m: Module, flags: Signal, width: int, name: str) -> list:
    """``out[i] = popcount(flags[:i])`` for i in 0..width-1, as a Hillis-Steele scan.

    log2(width) levels of adders instead of ``width`` separate popcounts (O(width**2) adders) or
    a ripple chain (depth ``width``); every level is its own signal so the netlist stays small.
    """
    level = []
    for i in range(width):
        s = Signal(range(width + 1), name=f"{name}_l0_{i}")
        m.d.comb += s.eq(flags[i])
        level.append(s)
    step, depth = 1, 0
    while step < width:
        depth += 1
        nxt = []
        for i in range(width):
            s = Signal(range(width + 1), name=f"{name}_l{depth}_{i}")
            m.d.comb += s.eq(level[i] + level[i - step] if i >= step else level[i])
            nxt.append(s)
        level, step = nxt, step * 2
    # level[i] is the inclusive count of flags[0..i]; shift by one for the exclusive count.
    return [Const(0, 1), *level[:width - 1]]


def _shift_elements(m: Module, value, amount: Signal, bits: int, width: int, name: str, *, left: bool) -> Signal:
    """``value`` shifted by ``amount`` elements of ``bits`` bits, kept to ``width`` bits.

    A barrel shifter, one stage per bit of ``amount``. (``value << (amount * bits)`` would make
    Amaranth size the intermediate for the largest product the shift amount's width allows,
    thousands of bits for wide beats.) A right shift keeps in each stage only the bits that the
    later stages can still move into the result, so no register-free bit is left unused.
    """
    steps = [(1 << b) * bits for b in range(len(amount))]
    if left:
        widths = [width] * (len(steps) + 1)
    else:
        widths = [width]
        for step in reversed(steps):
            widths.insert(0, min(len(value), widths[0] + step))
    stage = Signal(widths[0], name=f"{name}_s0")
    m.d.comb += stage.eq(value)
    for b, step in enumerate(steps):
        nxt = Signal(widths[b + 1], name=f"{name}_s{b + 1}")
        moved = (stage << step)[:width] if left else (stage >> step)
        m.d.comb += nxt.eq(Mux(amount[b], moved, stage))
        stage = nxt
    return stage


class _CodecGeometry:
    """Derived sizes shared by the encoder and the decoder."""

    def __init__(self, kind: str, operand_bits: int, bus_elems: int, tile_k: int) -> None:
        _check_codec_parameters(kind, operand_bits, bus_elems, tile_k)
        self.operand_bits = operand_bits
        self.bus_elems = bus_elems
        self.tile_k = tile_k
        self.bus_bits = bus_elems * operand_bits
        self.dense_beats = tile_k // bus_elems
        self.bitmap_beats = -(-tile_k // self.bus_bits)


class BitmapEncoder(wiring.Component):
    """Dense operand vectors in, the core's bitmap-compressed vectors out.

    Each ``i_stream`` beat is one dense beat; every ``D = tile_k / bus_elems`` beats form a
    vector. For each vector ``o_stream`` carries ``NB = ceil(tile_k / bus_bits)`` bitmap beats,
    then ``ceil(nnz / bus_elems)`` beats of packed nonzeros (padding elements 0), beat for beat
    what ``sim.core_program.encode_program`` sends for a bitmap operand (``ref.bitmap_codec``).

    How: each input beat's nonzeros are compacted (prefix counts) and appended to a running
    partial word; every full word is written to a two-bank buffer of ``D`` words per bank, the
    bitmap is collected beside it. The bitmap must precede the values it describes, so a vector
    is emitted only after its last input beat; the second bank takes the next vector meanwhile.

    Latency: if the vector's last dense beat is transferred on rising edge ``t``, its first
    bitmap beat is valid from edge ``t + 1`` and is transferred on edge ``t + 2`` at the earliest.
    Throughput: one beat per cycle on each side. The input takes a beat every cycle unless both
    banks hold vectors not yet sent; the output sends a beat every cycle that a vector is
    complete and ``o_stream.ready`` is high. A vector thus costs ``max(D, NB + ceil(nnz /
    bus_elems))`` cycles in steady state: ``bus_elems`` elements per cycle at low density,
    ``tile_k / (NB + D)`` when every element is nonzero, which is at least 1 element per cycle
    for ``bus_elems >= 2`` (with ``bus_elems = 1`` the format itself needs ``tile_k + NB``
    beats for a dense vector).

    ``i_stream.ready`` does not depend on ``i_stream.valid``; ``o_stream.valid`` and
    ``o_stream.payload`` come from registers and hold until the transfer.

    Parameters
    ----------
    operand_bits : int
        Width of a signed operand code, 2..32.
    bus_elems : int
        Elements per beat, a power of two in 1..64.
    tile_k : int
        Elements per vector, 1..1024, a multiple of ``bus_elems``.

    Members
    -------
    i_stream : ``In(stream.Signature(unsigned(bus_bits)))``
        Dense beats.
    o_stream : ``Out(stream.Signature(unsigned(bus_bits)))``
        Compressed beats: per vector the bitmap beats, then the value beats.
    """

    def __init__(self, *, operand_bits: int, bus_elems: int, tile_k: int) -> None:
        self._geo = _CodecGeometry("BitmapEncoder", operand_bits, bus_elems, tile_k)
        bus_bits = self._geo.bus_bits
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(bus_bits))),
            "o_stream": Out(stream.Signature(unsigned(bus_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        g = self._geo
        ob, w, k, bus_bits = g.operand_bits, g.bus_elems, g.tile_k, g.bus_bits
        d, nb = g.dense_beats, g.bitmap_beats

        # Per bank: the vector is complete and not yet sent; its bitmap; the number of full value
        # words in the buffer; the last, partial value word (kept in a register so that the last
        # input beat, which may complete one word and start another, needs one buffer write only).
        full = [Signal(name=f"full{b}") for b in range(2)]
        bitmap = [Signal(k, name=f"bitmap{b}") for b in range(2)]
        words = [Signal(range(d + 1), name=f"words{b}") for b in range(2)]
        tail = [Signal(bus_bits, name=f"tail{b}") for b in range(2)]
        has_tail = [Signal(name=f"has_tail{b}") for b in range(2)]
        m.submodules.buffer = buffer = Memory(shape=unsigned(bus_bits), depth=2 * d, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port(domain="comb")

        # ---- input side: compact each dense beat into the bank being filled ----
        wb = Signal()                      # bank being filled
        ibeat = Signal(range(d)) if d > 1 else Const(0, 1)  # dense beat index within the vector
        fill = Signal(range(w + 1))        # packed elements waiting in `partial` (0..w-1)
        partial = Signal(bus_bits)         # those elements at slots 0..fill-1, zeros above
        wptr = Signal(range(d + 1))        # full words written for this vector

        elems = _elements(self.i_stream.payload, w, ob)
        nz = Signal(w)
        m.d.comb += nz.eq(Cat(e.any() for e in elems))
        prefix = _exclusive_prefix_counts(m, nz, w, "enc_prefix")
        cnt = Signal(range(w + 1))
        m.d.comb += cnt.eq(popcount(nz, w))
        # Slot s of the compacted beat is the nonzero whose rank within the beat is s (rank <= i).
        compacted = []
        for s in range(w):
            slot = Signal(ob, name=f"compact{s}")
            terms = [Mux(nz[i] & (prefix[i] == s), elems[i], 0) for i in range(s, w)]
            value = terms[0]
            for t in terms[1:]:
                value = value | t
            m.d.comb += slot.eq(value)
            compacted.append(slot)
        window = Signal(2 * bus_bits)      # partial word followed by the compacted nonzeros
        placed = _shift_elements(m, Cat(*compacted), fill, ob, 2 * bus_bits, "enc_place", left=True)
        m.d.comb += window.eq(partial | placed)
        total = Signal(range(2 * w))
        m.d.comb += total.eq(fill + cnt)
        word_done = Signal()
        m.d.comb += word_done.eq(total >= w)

        partial_next = Signal(bus_bits)
        fill_next = Signal(range(w + 1))
        wptr_next = Signal(range(d + 1))
        with m.If(word_done):
            m.d.comb += [partial_next.eq(window[bus_bits:]), fill_next.eq(total - w), wptr_next.eq(wptr + 1)]
        with m.Else():
            m.d.comb += [partial_next.eq(window[:bus_bits]), fill_next.eq(total), wptr_next.eq(wptr)]

        take = Signal()
        m.d.comb += [
            self.i_stream.ready.eq(~Mux(wb, full[1], full[0])),
            take.eq(self.i_stream.valid & self.i_stream.ready),
            wr.addr.eq(Mux(wb, d + wptr, wptr)),
            wr.data.eq(window[:bus_bits]),
            wr.en.eq(take & word_done),
        ]
        with m.If(take):
            for b in range(2):
                for j in range(d):
                    with m.If((wb == b) & (ibeat == j)):
                        m.d.sync += bitmap[b][j * w:(j + 1) * w].eq(nz)
            with m.If(ibeat == d - 1):
                for b in range(2):
                    with m.If(wb == b):
                        m.d.sync += [words[b].eq(wptr_next), tail[b].eq(partial_next),
                                     has_tail[b].eq(fill_next != 0), full[b].eq(1)]
                m.d.sync += [wb.eq(~wb), fill.eq(0), partial.eq(0), wptr.eq(0)]
                if d > 1:
                    m.d.sync += ibeat.eq(0)
            if d > 1:
                with m.Else():
                    m.d.sync += [ibeat.eq(ibeat + 1), fill.eq(fill_next), partial.eq(partial_next),
                                 wptr.eq(wptr_next)]

        # ---- output side: bitmap beats, buffered words, the partial word ----
        rb = Signal()                      # bank being sent
        oidx = Signal(range(nb + d + 1))   # beat index within the compressed vector
        o_valid = Signal()
        o_payload = Signal(bus_bits)
        m.d.comb += [self.o_stream.valid.eq(o_valid), self.o_stream.payload.eq(o_payload)]

        cur_bitmap = Mux(rb, bitmap[1], bitmap[0])
        cur_words = Mux(rb, words[1], words[0])
        cur_has_tail = Mux(rb, has_tail[1], has_tail[0])
        padded = Cat(cur_bitmap, Const(0, nb * bus_bits - k))
        value_index = Signal(range(nb + d + 1))
        m.d.comb += [value_index.eq(oidx - nb), rd.addr.eq(Mux(rb, d + value_index, value_index))]
        source = Signal(bus_bits)
        with m.If(oidx < nb):
            m.d.comb += source.eq(padded.word_select(oidx, bus_bits))
        with m.Elif(value_index < cur_words):
            m.d.comb += source.eq(rd.data)
        with m.Else():
            m.d.comb += source.eq(Mux(rb, tail[1], tail[0]))

        load = ~o_valid | self.o_stream.ready
        with m.If(load):
            with m.If(Mux(rb, full[1], full[0])):
                m.d.sync += [o_valid.eq(1), o_payload.eq(source)]
                with m.If(oidx == nb - 1 + cur_words + cur_has_tail):
                    for b in range(2):
                        with m.If(rb == b):
                            m.d.sync += full[b].eq(0)
                    m.d.sync += [rb.eq(~rb), oidx.eq(0)]
                with m.Else():
                    m.d.sync += oidx.eq(oidx + 1)
            with m.Else():
                m.d.sync += o_valid.eq(0)
        return m


class BitmapDecoder(wiring.Component):
    """The core's bitmap-compressed vectors in, dense operand vectors out.

    Per vector ``i_stream`` carries ``NB = ceil(tile_k / bus_bits)`` bitmap beats, then
    ``ceil(nnz / bus_elems)`` value beats (``nnz`` = popcount of the bitmap's first ``tile_k``
    bits); ``o_stream`` carries the ``D = tile_k / bus_elems`` dense beats, zeros where the
    bitmap bit is 0. As in the core, bitmap bits at ``k >= tile_k`` and the padding elements of
    the last value beat are ignored (``ref.bitmap_codec.decode_compressed``).

    How: the bitmap is collected into one of two bitmap slots. Dense beat ``j`` needs the next
    ``popcount(bitmap[j*bus_elems:(j+1)*bus_elems])`` nonzeros; they come from a window of
    leftover values (fewer than ``bus_elems``), topped up with the next value beat when the
    window is short, and are placed by prefix counts of the beat's bitmap bits. Value beats wait
    in a 2-entry FIFO and a second bitmap slot holds the next vector's bitmap, so the input runs
    ahead of the dense beats being formed.

    Latency: if the last input a dense beat needs (the vector's last bitmap beat, or the value
    beat that completes it) is transferred on rising edge ``t``, the dense beat is valid from
    edge ``t + 1`` and is transferred on edge ``t + 2`` at the earliest.
    Throughput: one beat per cycle on each side: a vector costs ``max(D, NB + ceil(nnz /
    bus_elems))`` cycles in steady state (``NB + D`` when every element is nonzero, since each
    value beat then yields exactly one dense beat), so at least one element per cycle for
    ``bus_elems >= 2``.

    ``i_stream.ready`` depends on neither ``i_stream.valid`` nor ``o_stream.ready``;
    ``o_stream.valid`` and ``o_stream.payload`` come from registers and hold until the transfer.

    Parameters
    ----------
    operand_bits : int
        Width of a signed operand code, 2..32.
    bus_elems : int
        Elements per beat, a power of two in 1..64.
    tile_k : int
        Elements per vector, 1..1024, a multiple of ``bus_elems``.

    Members
    -------
    i_stream : ``In(stream.Signature(unsigned(bus_bits)))``
        Compressed beats: per vector the bitmap beats, then the value beats.
    o_stream : ``Out(stream.Signature(unsigned(bus_bits)))``
        Dense beats.
    """

    def __init__(self, *, operand_bits: int, bus_elems: int, tile_k: int) -> None:
        self._geo = _CodecGeometry("BitmapDecoder", operand_bits, bus_elems, tile_k)
        bus_bits = self._geo.bus_bits
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(bus_bits))),
            "o_stream": Out(stream.Signature(unsigned(bus_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        g = self._geo
        ob, w, k, bus_bits = g.operand_bits, g.bus_elems, g.tile_k, g.bus_bits
        d, nb = g.dense_beats, g.bitmap_beats
        log_w = w.bit_length() - 1

        # Two bitmap slots: `valid[s]` means slot s holds a complete bitmap whose dense beats are
        # not all sent. The input side fills slot `ws`; the expander reads slot `head`.
        valid = [Signal(name=f"slot_valid{s}") for s in range(2)]
        bitmap = [Signal(k, name=f"slot_bitmap{s}") for s in range(2)]
        ws = Signal()
        head = Signal()
        # Bitmap beat index (a constant when the bitmap is one beat, as in both presets).
        ibeat = Signal(range(nb)) if nb > 1 else Const(0, 1)
        in_values = Signal()               # the next input beats are value beats of the newest bitmap
        values_left = Signal(range(d + 1))  # value beats of that vector still to come

        # ---- expander: one dense beat per cycle ----
        j = Signal(range(d))               # dense beat index of the head vector
        window = Signal(bus_bits)          # leftover values, slots 0..avail-1, zeros above
        avail = Signal(range(w + 1))
        o_valid = Signal()
        o_payload = Signal(bus_bits)
        m.d.comb += [self.o_stream.valid.eq(o_valid), self.o_stream.payload.eq(o_payload)]
        load = Signal()
        m.d.comb += load.eq(~o_valid | self.o_stream.ready)

        head_valid = Mux(head, valid[1], valid[0])
        head_bitmap = Mux(head, bitmap[1], bitmap[0])
        nz = Signal(w)
        m.d.comb += nz.eq(head_bitmap.word_select(j, w))
        cnt = Signal(range(w + 1))
        m.d.comb += cnt.eq(popcount(nz, w))
        prefix = _exclusive_prefix_counts(m, nz, w, "dec_prefix")
        # The window holds fewer than bus_elems values, so a short window plus one value beat
        # always covers the beat (cnt <= bus_elems).
        need = Signal()
        m.d.comb += need.eq(cnt > avail)
        # Value beats wait in a small FIFO, so the input runs ahead of the expander: a vector's value
        # beats, and then the next bitmap, arrive while earlier dense beats are still being formed.
        m.submodules.values = values_fifo = SyncFIFO(width=bus_bits, depth=_VALUE_FIFO_DEPTH)
        take = Signal()                    # the expander pops a value beat this cycle
        go = Signal()                      # a dense beat is formed this cycle
        m.d.comb += [
            go.eq(load & head_valid & (~need | values_fifo.r_rdy)),
            take.eq(go & need),
            values_fifo.r_en.eq(take),
        ]
        incoming = Signal(bus_bits)
        m.d.comb += incoming.eq(Mux(take, values_fifo.r_data, 0))
        placed = _shift_elements(m, incoming, avail, ob, 2 * bus_bits, "dec_place", left=True)
        combined = Signal(2 * bus_bits)
        m.d.comb += combined.eq(window | placed)
        rest = _shift_elements(m, combined, cnt, ob, bus_bits, "dec_rest", left=False)
        low = combined[:bus_bits]
        out_elems = []
        for e in range(w):
            out = Signal(ob, name=f"dense{e}")
            m.d.comb += out.eq(Mux(nz[e], low.word_select(prefix[e], ob), 0))
            out_elems.append(out)

        with m.If(go):
            m.d.sync += [o_valid.eq(1), o_payload.eq(Cat(*out_elems))]
            with m.If(j == d - 1):
                # The vector is complete; what is left in the window is padding.
                for s in range(2):
                    with m.If(head == s):
                        m.d.sync += valid[s].eq(0)
                m.d.sync += [head.eq(~head), j.eq(0), window.eq(0), avail.eq(0)]
            with m.Else():
                m.d.sync += [j.eq(j + 1), window.eq(rest),
                             avail.eq(avail + Mux(take, w, 0) - cnt)]
        with m.Elif(load):
            m.d.sync += o_valid.eq(0)

        # ---- input side: bitmap beats into slot `ws` ----
        ws_free = ~Mux(ws, valid[1], valid[0])
        slot_bitmap = Mux(ws, bitmap[1], bitmap[0])
        assembled = Signal(k)              # the slot's bitmap with this beat in place
        for b in range(nb):
            lo, hi = b * bus_bits, min(k, (b + 1) * bus_bits)
            m.d.comb += assembled[lo:hi].eq(Mux(ibeat == b, self.i_stream.payload[:hi - lo], slot_bitmap[lo:hi]))
        nnz = Signal(range(k + 1))
        m.d.comb += nnz.eq(popcount(assembled, k))
        m.d.comb += [
            self.i_stream.ready.eq(Mux(in_values, values_fifo.w_rdy, ws_free)),
            values_fifo.w_en.eq(in_values & self.i_stream.valid),
            values_fifo.w_data.eq(self.i_stream.payload),
        ]
        with m.If(in_values & self.i_stream.valid & values_fifo.w_rdy):
            m.d.sync += values_left.eq(values_left - 1)
            with m.If(values_left == 1):
                m.d.sync += in_values.eq(0)
        with m.If(~in_values & ws_free & self.i_stream.valid):
            for s in range(2):
                with m.If(ws == s):
                    m.d.sync += bitmap[s].eq(assembled)
            with m.If(ibeat == nb - 1):
                for s in range(2):
                    with m.If(ws == s):
                        m.d.sync += valid[s].eq(1)
                values = (nnz + (w - 1)) >> log_w
                m.d.sync += [ws.eq(~ws), values_left.eq(values), in_values.eq(values != 0)]
                if nb > 1:
                    m.d.sync += ibeat.eq(0)
            if nb > 1:
                with m.Else():
                    m.d.sync += ibeat.eq(ibeat + 1)
        return m
