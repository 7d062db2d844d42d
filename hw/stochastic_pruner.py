"""Stochastic gradient pruner (Dai et al.): dY codes in, codes in {0, ±tau, g} out, one per cycle.

The rule, its integer form and the tensor modes are defined by ``ref.stochastic_prune_codes``
(``prune_codes``, ``PrunerModel``); this unit reproduces them bit for bit. Uniforms come from the
project's Galois LFSR unit (``hw.lfsr.GaloisLFSRUnit``, instantiated here): one draw per pruned
element, in stream (row-major) order, none while ``tau = 0``.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.lfsr import GaloisLFSRUnit, _check_lfsr_parameters

__all__ = ["PruneMode", "StochasticPruner", "pruner_control_layout"]

#: Integer bits of the constant c_fixed: c = c_fixed / 2**frac_bits < 2**C_INT_BITS. The largest
#: constant in use, Phi^-1((1+0.99)/2) * sqrt(pi/2) = 3.23, needs 2; 4 leaves room for p > 0.9999.
C_INT_BITS = 4


class PruneMode(enum.Enum, shape=1):
    """How a tensor gets its threshold (the order of ``ref.stochastic_prune_codes.MODES``)."""

    TWO_PASS = 0  # the tensor arrives twice: summed, then pruned with its own tau
    PREVIOUS = 1  # the tensor arrives once: pruned with the previous tensor's tau while summed


def pruner_control_layout(count_bits: int, frac_bits: int) -> data.StructLayout:
    """One tensor job on ``i_ctrl``.

    Fields
    ------
    mode : :class:`PruneMode`
    n : unsigned(count_bits)
        Elements in the tensor (1..2**count_bits - 1); a job with ``n = 0`` is accepted and ignored.
    c_fixed : unsigned(frac_bits + C_INT_BITS)
        The constant ``ref.numerics.to_fixed(tau_constant(p, rule), frac_bits)``; 0 gives
        ``tau = 0`` (bypass, the policy's p = 0).
    """
    return data.StructLayout({
        "mode": PruneMode,
        "n": unsigned(count_bits),
        "c_fixed": unsigned(frac_bits + C_INT_BITS),
    })


def _check(name: str, value, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"StochasticPruner {name} must be an integer in {low}..{high}, not {value!r}")


class StochasticPruner(wiring.Component):
    """Prunes a stream of signed dY codes, one element per beat.

    Protocol. Each tensor is one ``i_ctrl`` transfer (accepted only while idle) followed by its
    elements on ``i_stream`` in row-major order:

    - ``TWO_PASS``: ``n`` elements (summed, no output), then the same ``n`` elements again, each
      leaving on ``o_stream`` pruned with this tensor's own tau.
    - ``PREVIOUS``: ``n`` elements, each leaving pruned with the threshold register's value (the
      previous tensor's tau; 0 after reset), while they are summed.

    After the summing pass, ``tau = floor(c_fixed * sum|g| / (n * 2**frac_bits))``
    (``ref.numerics.tau_fixed``) is computed as ``floor(floor(c_fixed * sum / 2**frac_bits) / n)``
    by a restoring divider, one quotient bit per cycle, and written to the threshold register
    ``tau`` (an output). The quotient needs only ``operand_bits + 3`` bits because
    ``sum <= n * 2**(operand_bits-1)`` and ``c < 2**C_INT_BITS``.

    Pruning (``ref.stochastic_prune_codes.prune_codes``), with draw ``d`` of the LFSR::

        drop iff |g| * 2**lfsr_width < d * tau   -> 0
        else g if |g| >= tau, else sign(g) * min(tau, 2**(operand_bits-1) - 1)

    At ``tau = 0`` every element passes unchanged and the LFSR does not advance.

    Timing. One element per cycle in every pass; a pruned element is on ``o_stream`` the cycle
    after its ``i_stream`` transfer (one output register, full throughput under backpressure).
    Between the summing pass and the next pass (``TWO_PASS``: the pruning pass; ``PREVIOUS``:
    the next ``i_ctrl``) the unit is busy for ``operand_bits + 4`` cycles: one to form
    ``c_fixed * sum / 2**frac_bits`` and ``operand_bits + 3`` divider steps; ``i_stream.ready``
    and ``i_ctrl.ready`` are low then. Per tensor, from its ``i_ctrl`` transfer to the next one
    with no stalls: ``n + operand_bits + 5`` cycles in ``PREVIOUS`` mode and
    ``2n + operand_bits + 5`` in ``TWO_PASS``.

    Parameters
    ----------
    operand_bits : int
        Signed code width, 2..32.
    lfsr_width, lfsr_taps, lfsr_seed : int
        The LFSR (see ``hw.lfsr.GaloisLFSRUnit``).
    count_bits : int
        Width of the element count ``n``, 1..32.
    frac_bits : int
        Fraction bits of ``c_fixed``, 0..32.

    Members
    -------
    i_ctrl : ``In(stream.Signature(pruner_control_layout(count_bits, frac_bits)))``
    i_stream : ``In(stream.Signature(signed(operand_bits)))``
        dY codes; every code, ``-2**(operand_bits-1)`` included, is valid.
    o_stream : ``Out(stream.Signature(signed(operand_bits)))``
        Pruned codes, one per element of a pruning pass.
    i_seed : ``In(stream.Signature(unsigned(lfsr_width)))``
        Reseeds the LFSR (``GaloisLFSRUnit.i_seed``: always ready, 0 ignored).
    tau : ``Out(unsigned(operand_bits + 3))``
        The threshold register.
    """

    def __init__(self, *, operand_bits: int, lfsr_width: int, lfsr_taps: int, lfsr_seed: int,
                 count_bits: int, frac_bits: int) -> None:
        _check("operand_bits", operand_bits, 2, 32)
        _check("count_bits", count_bits, 1, 32)
        _check("frac_bits", frac_bits, 0, 32)
        _check_lfsr_parameters(lfsr_width, lfsr_taps, lfsr_seed)  # the LFSR unit's own checks and messages
        self._lfsr_params = (lfsr_width, lfsr_taps, lfsr_seed)
        self._operand_bits = operand_bits
        self._count_bits = count_bits
        self._frac_bits = frac_bits
        super().__init__({
            "i_ctrl": In(stream.Signature(pruner_control_layout(count_bits, frac_bits))),
            "i_stream": In(stream.Signature(signed(operand_bits))),
            "o_stream": Out(stream.Signature(signed(operand_bits))),
            "i_seed": In(stream.Signature(unsigned(lfsr_width))),
            "tau": Out(unsigned(self.tau_bits)),
        })

    @property
    def operand_bits(self) -> int:
        return self._operand_bits

    @property
    def lfsr_width(self) -> int:
        return self._lfsr_params[0]

    @property
    def lfsr_taps(self) -> int:
        return self._lfsr_params[1]

    @property
    def lfsr_seed(self) -> int:
        return self._lfsr_params[2]

    @property
    def count_bits(self) -> int:
        return self._count_bits

    @property
    def frac_bits(self) -> int:
        return self._frac_bits

    @property
    def tau_bits(self) -> int:
        """Width of tau: ``tau < 2**C_INT_BITS * 2**(operand_bits-1)``."""
        return self._operand_bits + C_INT_BITS - 1

    def elaborate(self, platform):
        m = Module()
        b, w, f = self._operand_bits, self.lfsr_width, self._frac_bits
        tau_bits, count_bits = self.tau_bits, self._count_bits
        sum_bits = count_bits + b - 1  # sum of n < 2**count_bits magnitudes <= 2**(b-1)
        quot_bits = count_bits + tau_bits  # floor(c*sum / 2**f) < n * 2**tau_bits

        # Built here, not in __init__, so a pruner that is never elaborated leaves no unused LFSR.
        width, taps, seed = self._lfsr_params
        m.submodules.lfsr = lfsr = GaloisLFSRUnit(width=width, taps=taps, seed=seed)
        wiring.connect(m, wiring.flipped(self.i_seed), lfsr.i_seed)

        mode = Signal(PruneMode)
        n = Signal(count_bits)
        c_fixed = Signal(f + C_INT_BITS)
        left = Signal(count_bits)  # elements still to come in this pass
        total = Signal(sum_bits)
        tau = Signal(tau_bits)
        rem = Signal(quot_bits)
        divisor = Signal(count_bits + tau_bits - 1)  # n << step
        quotient = Signal(tau_bits)
        step = Signal(range(tau_bits))
        m.d.comb += self.tau.eq(tau)

        # Per-element datapath (combinational from the input beat and the offered draw).
        g = self.i_stream.payload
        mag = Signal(b)  # |g|: unsigned, so |-2**(b-1)| = 2**(b-1) fits
        m.d.comb += mag.eq(Mux(g < 0, -g, g))
        drop = Signal()
        m.d.comb += drop.eq((mag << w) < lfsr.o_stream.payload * tau)
        qmax = (1 << (b - 1)) - 1
        clamped = Signal(b)  # min(tau, qmax): the substituted value must be a b-bit code
        m.d.comb += clamped.eq(Mux(tau > qmax, qmax, tau))
        # Every combinational signal here is one unconditional expression (a Verilog `assign`):
        # Icarus never runs an `always @*` block whose inputs do not change after time 0, so a
        # ready computed in one would stay X while the unit idles in its reset state.
        pruned = Signal(signed(b))
        m.d.comb += pruned.eq(Mux(tau == 0, g, Mux(drop, 0, Mux(mag < tau, Mux(g < 0, -clamped, clamped), g))))

        # Output register: a beat may enter whenever the register is empty or being emptied.
        out_valid = Signal()
        out_payload = Signal(signed(b))
        m.d.comb += [self.o_stream.valid.eq(out_valid), self.o_stream.payload.eq(out_payload)]
        with m.If(self.o_stream.ready):
            m.d.sync += out_valid.eq(0)

        taken = self.i_stream.valid & self.i_stream.ready
        last = left == 1

        with m.FSM() as fsm:
            with m.State("IDLE"):
                ctrl = self.i_ctrl.payload
                with m.If(self.i_ctrl.valid & (ctrl.n != 0)):
                    m.d.sync += [mode.eq(ctrl.mode), n.eq(ctrl.n), c_fixed.eq(ctrl.c_fixed),
                                 left.eq(ctrl.n), total.eq(0)]
                    with m.If(ctrl.mode == PruneMode.TWO_PASS):
                        m.next = "SUM"
                    with m.Else():
                        m.next = "PRUNE"
            with m.State("SUM"):
                with m.If(taken):
                    m.d.sync += [total.eq(total + mag), left.eq(left - 1)]
                    with m.If(last):
                        m.next = "SCALE"
            with m.State("SCALE"):
                # floor(x / (n * 2**f)) == floor(floor(x / 2**f) / n) for integers x >= 0, n > 0.
                m.d.sync += [rem.eq((c_fixed * total) >> f), divisor.eq(n << (tau_bits - 1)),
                             quotient.eq(0), step.eq(tau_bits - 1)]
                m.next = "DIVIDE"
            with m.State("DIVIDE"):
                fits = rem >= divisor
                m.d.sync += [quotient.eq((quotient << 1) | fits), divisor.eq(divisor >> 1)]
                with m.If(fits):
                    m.d.sync += rem.eq(rem - divisor)
                with m.If(step == 0):
                    m.d.sync += tau.eq((quotient << 1) | fits)
                    with m.If(mode == PruneMode.TWO_PASS):
                        m.d.sync += left.eq(n)
                        m.next = "PRUNE"
                    with m.Else():
                        m.next = "IDLE"
                with m.Else():
                    m.d.sync += step.eq(step - 1)
            with m.State("PRUNE"):
                with m.If(taken):
                    m.d.sync += [out_valid.eq(1), out_payload.eq(pruned), left.eq(left - 1)]
                    with m.If(mode == PruneMode.PREVIOUS):
                        m.d.sync += total.eq(total + mag)
                    with m.If(last):
                        with m.If(mode == PruneMode.PREVIOUS):
                            m.next = "SCALE"
                        with m.Else():
                            m.next = "IDLE"
        pruning = fsm.ongoing("PRUNE")
        m.d.comb += [
            self.i_ctrl.ready.eq(fsm.ongoing("IDLE")),
            self.i_stream.ready.eq(fsm.ongoing("SUM") | (pruning & (~out_valid | self.o_stream.ready))),
            lfsr.o_stream.ready.eq(pruning & taken & (tau != 0)),  # one draw per pruned element
        ]
        return m
