"""ReLU + mask emit and mask apply: the output-sparsity units of Sarma et al. (ALGORITHMS.md §1).

In the forward pass, :class:`ReluMaskEmit` turns pre-activation codes ``z`` into the activation
``max(z, 0)`` and the 1-bit mask ``z > 0``. In the backward pass, :class:`MaskApply` uses that
mask on the BWI output ``dX`` of the next layer: ``dZ = dX`` where the mask is 1, exactly 0
elsewhere (``dZ = dA * 1[A > 0]``; ``z == 0`` is masked, as PyTorch's ReLU gradient at 0 is 0).
The integer model is ``ref.relu_mask_codes``.

Both work on *vectors* of ``vector_elems`` signed ``operand_bits`` codes in the core's formats
(docs/core.md):

- a value vector is ``vector_elems / bus_elems`` beats of ``bus_bits = bus_elems * operand_bits``
  bits, element ``e`` of beat ``j`` (vector index ``k = j*bus_elems + e``) at bits
  ``[e*operand_bits, (e+1)*operand_bits)``, two's complement;
- a mask vector is ``ceil(vector_elems / bus_bits)`` bitmap beats, bit ``k`` at bit
  ``k mod bus_bits`` of beat ``k div bus_bits``; the bits past the vector are 0. The mask ports
  are ``mask_bits = min(bus_bits, vector_elems)`` wide: a vector shorter than one beat drops the
  always-zero bits the core ignores anyway (zero-extend to ``bus_bits`` to feed the core's
  ``i_data``; the values are unchanged).

The mask is the nonzero bitmap of the ReLU'd vector, so it is, unchanged, the bitmap beat(s) of
that vector sent bitmap-compressed to the core (``vector_elems = tile_k``: an A row or B column),
and, with ``vector_elems = tile_n``, an output-mask row of a masked BWI GEMM.
"""

from __future__ import annotations

import functools
import operator

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MaskApply", "ReluMaskEmit"]


def _check_vector_parameters(unit: str, operand_bits: int, bus_elems: int, vector_elems: int) -> None:
    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(operand_bits) or not 2 <= operand_bits <= 32:
        raise ValueError(f"{unit} operand_bits must be an integer in 2..32, not {operand_bits!r}")
    if not is_int(bus_elems) or not 1 <= bus_elems <= 64 or bus_elems & (bus_elems - 1):
        raise ValueError(f"{unit} bus_elems must be a power of two in 1..64, not {bus_elems!r}")
    if not is_int(vector_elems) or not 1 <= vector_elems <= 4096 or vector_elems % bus_elems:
        raise ValueError(f"{unit} vector_elems must be a multiple of bus_elems = {bus_elems} "
                         f"in 1..4096, not {vector_elems!r}")


class _VectorGeometry:
    """Beat counts of one vector and the position of value beat ``j`` inside its mask beat.

    Value beat ``j`` covers vector bits ``[j*bus_elems, (j+1)*bus_elems)``, i.e. *slot*
    ``j mod operand_bits`` of mask beat ``j div operand_bits`` (``bus_bits`` is a multiple of
    ``bus_elems``, so a value beat never straddles two mask beats).
    """

    def __init__(self, operand_bits: int, bus_elems: int, vector_elems: int) -> None:
        self.bus_bits = bus_elems * operand_bits
        self.value_beats = vector_elems // bus_elems
        self.mask_beats = -(-vector_elems // self.bus_bits)
        self.mask_bits = min(self.bus_bits, vector_elems)  # width of a mask port
        self.slots = min(operand_bits, self.value_beats)  # value beats per (full) mask beat

    def counters(self, m: Module) -> tuple[Signal, Signal, Signal, Signal]:
        """(beat, slot, vector_end, mask_end): the position of the next value beat and whether it
        is the last beat of its vector / of its mask beat. Advance with :meth:`advance`."""
        beat = Signal(range(max(2, self.value_beats)), name="beat")
        slot = Signal(range(max(2, self.slots)), name="slot")
        vector_end = Signal(name="vector_end")
        mask_end = Signal(name="mask_end")
        m.d.comb += [
            vector_end.eq(beat == self.value_beats - 1),
            mask_end.eq(vector_end | (slot == self.slots - 1)),
        ]
        return beat, slot, vector_end, mask_end

    @staticmethod
    def advance(m: Module, beat: Signal, slot: Signal, vector_end: Signal, mask_end: Signal) -> None:
        m.d.sync += [
            beat.eq(Mux(vector_end, 0, beat + 1)),
            slot.eq(Mux(mask_end, 0, slot + 1)),
        ]


class ReluMaskEmit(wiring.Component):
    """ReLU of a stream of pre-activation vectors, plus each vector's ``z > 0`` mask bitmap.

    Every value beat taken on ``i_stream`` leaves on ``o_act`` with each element ``z`` replaced
    by ``max(z, 0)`` (the most negative code becomes 0). Its ``bus_elems`` mask bits ``z > 0`` go
    into the vector's current mask beat; that beat leaves on ``o_mask`` after the value beat that
    completes it (the ``operand_bits``-th value beat of the mask beat, or the vector's last beat).
    Vectors follow each other with no separator; beat counting restarts with each vector, so the
    ``o_mask`` beats of vector ``v`` are exactly ``ref.relu_mask_codes.bitmap_beats`` of its mask.

    Latency and throughput: ``o_act`` and ``o_mask`` are registers. A value beat shows on
    ``o_act`` one cycle after its ``i_stream`` transfer; a mask beat shows on ``o_mask`` one
    cycle after the transfer of the value beat that completes it. One value beat per cycle when
    both outputs are taken as they come.

    Backpressure: each output holds one beat. ``i_stream.ready`` is high when the ``o_act`` slot
    is free or being taken, and, for a value beat that completes a mask beat, also the ``o_mask``
    slot. It depends combinationally on ``o_act.ready`` and ``o_mask.ready``, never on
    ``i_stream.valid``. The two outputs may be taken at different times, but a consumer that
    stops taking ``o_mask`` stalls the input at the next completed mask beat.

    Parameters
    ----------
    operand_bits : int
        Signed code width, 2..32.
    bus_elems : int
        Codes per value beat, a power of two in 1..64.
    vector_elems : int
        Codes per vector, a multiple of ``bus_elems`` in 1..4096 (the generated unit uses
        ``tile_k``, so a mask is the bitmap of one A row / B column of the core).

    Members
    -------
    i_stream : ``In(stream.Signature(unsigned(bus_bits)))``
        Pre-activation value beats.
    o_act : ``Out(stream.Signature(unsigned(bus_bits)))``
        ReLU'd value beats, one per input beat.
    o_mask : ``Out(stream.Signature(unsigned(mask_bits)))``
        Mask bitmap beats, ``ceil(vector_elems / bus_bits)`` per vector.
    """

    def __init__(self, *, operand_bits: int, bus_elems: int, vector_elems: int) -> None:
        _check_vector_parameters("ReluMaskEmit", operand_bits, bus_elems, vector_elems)
        self._operand_bits = operand_bits
        self._bus_elems = bus_elems
        self._vector_elems = vector_elems
        self._geometry = _VectorGeometry(operand_bits, bus_elems, vector_elems)
        bus_bits = self._geometry.bus_bits
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(bus_bits))),
            "o_act": Out(stream.Signature(unsigned(bus_bits))),
            "o_mask": Out(stream.Signature(unsigned(self._geometry.mask_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        geo, be = self._geometry, self._bus_elems
        codes = data.ArrayLayout(signed(self._operand_bits), be)(self.i_stream.payload)
        beat, slot, vector_end, mask_end = geo.counters(m)

        # Bits of the current mask beat gathered so far (value beats before this one). Mask beat
        # bits past `slots * bus_elems` belong to no element of the vector and stay 0.
        used = geo.slots * be
        partial = Signal(used)
        positive = Signal(be)
        relu = Signal(data.ArrayLayout(signed(self._operand_bits), be))
        for e in range(be):
            m.d.comb += [
                positive[e].eq(codes[e] > 0),
                relu[e].eq(Mux(codes[e][-1], 0, codes[e])),
            ]
        # The mask beat with this value beat's bits in its slot (slots after it are still 0).
        # One continuous expression, not a default plus per-slot overrides: Yosys splits the
        # latter into `always @*` blocks that Icarus never runs when their inputs stay constant
        # from time 0, leaving X on the output.
        merged = Signal(used)
        m.d.comb += merged.eq(Cat(Mux(slot == s, positive, partial[s * be:(s + 1) * be])
                                  for s in range(geo.slots)))

        act_free = ~self.o_act.valid | self.o_act.ready
        mask_free = ~self.o_mask.valid | self.o_mask.ready
        m.d.comb += self.i_stream.ready.eq(act_free & (~mask_end | mask_free))
        take = self.i_stream.valid & self.i_stream.ready

        with m.If(self.o_act.ready):
            m.d.sync += self.o_act.valid.eq(0)
        with m.If(self.o_mask.ready):
            m.d.sync += self.o_mask.valid.eq(0)
        with m.If(take):
            m.d.sync += [
                self.o_act.payload.eq(relu.as_value()),
                self.o_act.valid.eq(1),
                partial.eq(Mux(mask_end, 0, merged)),
            ]
            with m.If(mask_end):
                m.d.sync += [self.o_mask.payload.eq(merged), self.o_mask.valid.eq(1)]
            geo.advance(m, beat, slot, vector_end, mask_end)
        return m


class MaskApply(wiring.Component):
    """Zero the elements of a stream of dX vectors where the forward mask bitmap is 0.

    For each vector, ``ceil(vector_elems / bus_bits)`` mask beats are taken on ``i_mask`` (the
    beats :class:`ReluMaskEmit` sent on ``o_mask`` for the forward activation of the same shape)
    and ``vector_elems / bus_elems`` value beats on ``i_data``; every element whose mask bit is 0
    leaves on ``o_data`` as 0, the others unchanged. Model: ``ref.relu_mask_codes.apply_stream``.

    Relation to the core's output mask: the same bitmap, sent as the mask rows of a BWI GEMM
    (``has_mask``, ``vector_elems = tile_n``), makes the core skip the masked outputs; they read
    exactly 0 afterwards, so passing such a result through this unit changes nothing. This unit is
    for a dX computed *without* the mask (the dense core, or a sum of branch gradients at a
    residual add), where it gives the same values the masked GEMM would.

    Latency and throughput: ``o_data`` is a register; a value beat shows on it one cycle after its
    ``i_data`` transfer. The unit holds one mask beat. The next mask beat is taken in the cycle in
    which the value beat that uses the held one for the last time is taken (or whenever none is
    held), so with both inputs offered and ``o_data`` taken, one value beat passes per cycle, with
    no bubble between mask beats or vectors. The first value beat of a mask beat is taken at the
    earliest one cycle after that mask beat's transfer.

    Backpressure: ``i_data.ready`` is high when a mask beat is held and the ``o_data`` slot is free
    or being taken; it does not depend on ``i_data.valid``. ``i_mask.ready`` is high when no mask
    beat is held, or when the held one is used up by this cycle's ``i_data`` transfer, so it
    depends combinationally on ``i_data.valid`` and ``o_data.ready``.

    Parameters
    ----------
    operand_bits, bus_elems, vector_elems : int
        As for :class:`ReluMaskEmit`.

    Members
    -------
    i_data : ``In(stream.Signature(unsigned(bus_bits)))``
        dX value beats.
    i_mask : ``In(stream.Signature(unsigned(mask_bits)))``
        Forward mask bitmap beats.
    o_data : ``Out(stream.Signature(unsigned(bus_bits)))``
        Masked value beats, one per ``i_data`` beat.
    """

    def __init__(self, *, operand_bits: int, bus_elems: int, vector_elems: int) -> None:
        _check_vector_parameters("MaskApply", operand_bits, bus_elems, vector_elems)
        self._operand_bits = operand_bits
        self._bus_elems = bus_elems
        self._vector_elems = vector_elems
        self._geometry = _VectorGeometry(operand_bits, bus_elems, vector_elems)
        bus_bits = self._geometry.bus_bits
        super().__init__({
            "i_data": In(stream.Signature(unsigned(bus_bits))),
            "i_mask": In(stream.Signature(unsigned(self._geometry.mask_bits))),
            "o_data": Out(stream.Signature(unsigned(bus_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        geo, be, ob = self._geometry, self._bus_elems, self._operand_bits
        codes = data.ArrayLayout(signed(ob), be)(self.i_data.payload)
        beat, slot, vector_end, mask_end = geo.counters(m)

        held = Signal(geo.slots * be)  # bits past the vector (last, partial mask beat) are ignored
        held_valid = Signal()
        # This value beat's mask bits: slot `slot` of the held mask beat (an OR of one-hot
        # selected slots; a continuous expression, see ReluMaskEmit.elaborate).
        keep = Signal(be)
        m.d.comb += keep.eq(functools.reduce(operator.or_, (
            Mux(slot == s, held[s * be:(s + 1) * be], 0) for s in range(geo.slots))))
        masked = Cat(Mux(keep[e], codes[e], Const(0, signed(ob))) for e in range(be))

        out_free = ~self.o_data.valid | self.o_data.ready
        m.d.comb += self.i_data.ready.eq(held_valid & out_free)
        take = self.i_data.valid & self.i_data.ready
        used_up = take & mask_end
        m.d.comb += self.i_mask.ready.eq(~held_valid | used_up)

        with m.If(self.o_data.ready):
            m.d.sync += self.o_data.valid.eq(0)
        with m.If(take):
            m.d.sync += [self.o_data.payload.eq(masked), self.o_data.valid.eq(1)]
            geo.advance(m, beat, slot, vector_end, mask_end)
        with m.If(used_up):
            m.d.sync += held_valid.eq(0)
        with m.If(self.i_mask.valid & self.i_mask.ready):
            m.d.sync += [held.eq(self.i_mask.payload[:len(held)]), held_valid.eq(1)]
        return m
