"""ReSprop's difference of a code that is still being saturated, decided beside the saturation.

The requantizer's code is ``g = clamp(r, -L, L)`` (``r`` the rounded value, ``L`` the limit,
``hw.requantize.Requantizer``). ReSprop needs ``D = g - P`` and whether ``|D| > T``
(``ref.resprop_codes.sparse_difference``). Formed after the saturation, that is a subtract and a
compare in series behind the saturation's comparators and select, which made it the clock path
of the whole core. Here the two saturated cases ``g = L`` and ``g = -L`` depend only on ``L``,
``P`` and ``T``, so they are decided a cycle early and registered; the unsaturated case ``g = r``
is one add and two compares of registered operands. The saturation's own decisions select among
the three, so no carry chain follows them, and the requantizer's shared limit register gains no
load (each lane forms ``L`` from ``out_bits`` itself). ``L`` is registered from ``out_bits``
before it enters the subtracts: the drain's ``out_bits`` comes from its command register across
the core, and that route plus the thermometer decode in series with ``-L - P`` and the compare
was the 4-lane vector core's clock path (47.9 MHz). ``out_bits`` is held for a whole drain, so a
copy one cycle old is the same value.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SaturatedDifference"]


class SaturatedDifference(wiring.Component):
    """``D = clamp(r, -L, L) - P`` and ``|D| > T`` for one code, in two parts around one register.

    Latency: ``i_p`` and ``i_thr`` are taken in a cycle with ``en`` high (the cycle before the
    code's saturation decision, as the requantizer's second register takes the rounded value);
    ``i_out_bits`` is registered every cycle, so it must hold its value from the cycle before
    ``en`` through it. ``o_keep`` and ``o_diff`` are combinational from the ``en`` register and
    ``i_rounded``, ``i_above``, ``i_below``, and hold while ``en`` is low.

    With ``output_register``, ``o_keep`` and ``o_diff`` are registered at the next ``en`` (so they
    show a code's result one ``en`` cycle after ``i_rounded``, ``i_above`` and ``i_below`` carried
    it, and hold while ``en`` is low): the unsaturated case's compares and the selects then have a
    clock period of their own, as the requantizer's ``decision_register`` has for its own.

    Parameters
    ----------
    code_bits : int
        The code width ``b``: P is a signed ``b``-bit code, ``0 <= T <= 2**b - 1`` and the
        drain's ``out_bits`` is in ``2..b`` (so ``1 <= L <= 2**(b-1) - 1``).

    Members
    -------
    en : In(1)                   take ``i_p``, ``i_thr``, ``i_out_bits``
    i_p : In(signed(b))          ``P``
    i_thr : In(unsigned(b))      ``T``
    i_out_bits : In(6)           the drain's code width: ``L = 2**(out_bits-1) - 1`` (read a
                                 cycle before ``en``)
    i_rounded : In(signed(b + 2))
        The low ``b + 2`` bits of ``r``. Only read when ``r`` is not saturated, and then
        ``|r| <= L < 2**(b-1)``, so those bits are ``r``.
    i_above : In(1), i_below : In(1)
        The saturation's decisions ``r > L`` and ``r < -L`` (from the full-width ``r``).
    o_keep : Out(1)              ``|D| > T``
    o_diff : Out(signed(b + 2))  ``D``
    """

    def __init__(self, code_bits: int, *, output_register: bool = False) -> None:
        b = code_bits
        self._bits = b
        self._output_register = output_register
        super().__init__({
            "en": In(1),
            "i_p": In(signed(b)),
            "i_thr": In(unsigned(b)),
            "i_out_bits": In(6),
            "i_rounded": In(signed(b + 2)),
            "i_above": In(1),
            "i_below": In(1),
            "o_keep": Out(1),
            "o_diff": Out(signed(b + 2)),
        })

    def elaborate(self, platform):
        m = Module()
        b = self._bits
        p, thr = self.i_p, self.i_thr

        # ---- before the register: the saturated cases, and the unsaturated case's bounds ----------
        # L = 2**(out_bits-1) - 1 as a thermometer code: bit i is set while i < out_bits - 1.
        # Registered free-running (not on en): out_bits is held through a drain (class docstring).
        limit = Signal(unsigned(b))
        m.d.sync += limit.eq(Cat(self.i_out_bits > i + 1 for i in range(b)))

        def kept(d):
            return (d > thr) | (-d > thr)

        d_above = Signal(signed(b + 2))      # g = L
        d_below = Signal(signed(b + 2))      # g = -L
        m.d.comb += [d_above.eq(limit - p), d_below.eq(-limit - p)]

        r_d_above = Signal(signed(b + 2))
        r_d_below = Signal(signed(b + 2))
        r_keep_above = Signal()
        r_keep_below = Signal()
        r_x = Signal(signed(b + 2))          # P + T: g = r is kept above it
        r_y_m1 = Signal(signed(b + 2))       # P - T - 1: or at or below this
        r_neg_p = Signal(signed(b + 1))
        with m.If(self.en):
            m.d.sync += [
                r_d_above.eq(d_above), r_d_below.eq(d_below),
                r_keep_above.eq(kept(d_above)), r_keep_below.eq(kept(d_below)),
                r_x.eq(p + thr), r_y_m1.eq(p - thr - 1), r_neg_p.eq(-p),
            ]

        # ---- after it: the saturation's decisions select ------------------------------------------
        r = self.i_rounded
        above, below = self.i_above, self.i_below
        keep = Mux(above, r_keep_above, Mux(below, r_keep_below, (r > r_x) | (r <= r_y_m1)))
        diff = Mux(above, r_d_above, Mux(below, r_d_below, r + r_neg_p))
        if self._output_register:
            with m.If(self.en):
                m.d.sync += [self.o_keep.eq(keep), self.o_diff.eq(diff)]
        else:
            m.d.comb += [self.o_keep.eq(keep), self.o_diff.eq(diff)]
        return m
