"""PE lane: a signed multiply-accumulate with operand zero detection.

A zero operand issues no multiplication: the multiplier's operand registers hold their previous
value (no toggling, the zero-gating of Gong et al. and Sarma et al.) and the beat is counted as a
skipped MAC. Dot products are delimited by the ``first``/``last`` flags of the request payload, so
any number of accumulations can stream through back to back.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.layouts import mac_request_layout, mac_result_layout

__all__ = ["PELane"]


class PELane(wiring.Component):
    """Signed MAC lane with zero skipping, valid/ready input and output streams.

    Pipeline: operand register, product register, accumulator (three stages). The whole pipeline
    advances on a cycle in which the output register is empty or being drained, so ``i_stream.ready``
    is ``~o_stream.valid | o_stream.ready`` (a combinational path from ``o_stream.ready``; no path
    from ``i_stream.valid``).

    Latency (:attr:`LATENCY` = 3 cycles): the result of a ``last`` request transferred on clock
    edge *t* is valid on ``o_stream`` right after edge *t + 2*, so it transfers on edge *t + 3* at
    the earliest. Throughput: one request per cycle.
    Accumulation wraps modulo ``2**acc_bits`` (two's complement); a configuration that sizes
    ``acc_bits`` from the longest reduction never wraps.

    Parameters
    ----------
    operand_bits : int
        Width of the signed operands ``a`` and ``b``, 2..32.
    acc_bits : int
        Width of the signed accumulator, at least ``2 * operand_bits`` (one full product).
    counter_bits : int
        Width of the two performance counters, 8..64. Counters wrap.

    Members
    -------
    i_stream : ``In(stream.Signature(mac_request_layout(operand_bits)))``
        Requests ``{a, b, first, last}``.
    o_stream : ``Out(stream.Signature(mac_result_layout(acc_bits)))``
        One ``{acc}`` per request with ``last`` set.
    macs_issued : ``Out(counter_bits)``
        Requests whose operands were both nonzero (a multiplication was done).
    macs_skipped : ``Out(counter_bits)``
        Requests with a zero operand (no multiplication).
    """

    #: Edges from a ``last`` request's transfer to the earliest transfer of its result.
    LATENCY = 3

    def __init__(self, *, operand_bits: int, acc_bits: int, counter_bits: int) -> None:
        for field, value, low, high in (
            ("operand_bits", operand_bits, 2, 32),
            ("counter_bits", counter_bits, 8, 64),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"PELane {field} must be an integer in {low}..{high}, not {value!r}")
        if not isinstance(acc_bits, int) or isinstance(acc_bits, bool) or acc_bits < 2 * operand_bits:
            raise ValueError(
                f"PELane acc_bits must be an integer >= 2 * operand_bits = {2 * operand_bits} "
                f"(one full product), not {acc_bits!r}"
            )
        self._operand_bits = operand_bits
        self._acc_bits = acc_bits
        self._counter_bits = counter_bits
        super().__init__({
            "i_stream": In(stream.Signature(mac_request_layout(operand_bits))),
            "o_stream": Out(stream.Signature(mac_result_layout(acc_bits))),
            "macs_issued": Out(counter_bits),
            "macs_skipped": Out(counter_bits),
        })

    @property
    def operand_bits(self) -> int:
        return self._operand_bits

    @property
    def acc_bits(self) -> int:
        return self._acc_bits

    @property
    def counter_bits(self) -> int:
        return self._counter_bits

    def elaborate(self, platform):
        m = Module()
        request = self.i_stream.payload

        # One stall signal for the whole pipeline: everything moves unless a finished result sits
        # in the output register and the consumer does not take it this cycle.
        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o_stream.valid | self.o_stream.ready),
            self.i_stream.ready.eq(advance),
        ]

        # Stage 1: operand registers. They load only for effectual requests, so a skipped MAC
        # leaves the multiplier inputs unchanged.
        s1_valid = Signal()
        s1_effectual = Signal()
        s1_first = Signal()
        s1_last = Signal()
        s1_a = Signal(signed(self._operand_bits))
        s1_b = Signal(signed(self._operand_bits))
        effectual = (request.a != 0) & (request.b != 0)
        with m.If(advance):
            m.d.sync += s1_valid.eq(self.i_stream.valid)
            with m.If(self.i_stream.valid):
                m.d.sync += [
                    s1_effectual.eq(effectual),
                    s1_first.eq(request.first),
                    s1_last.eq(request.last),
                ]
                with m.If(effectual):
                    m.d.sync += [s1_a.eq(request.a), s1_b.eq(request.b)]

        # Stage 2: product register (maps onto a DSP's pipeline register).
        s2_valid = Signal()
        s2_effectual = Signal()
        s2_first = Signal()
        s2_last = Signal()
        s2_product = Signal(signed(2 * self._operand_bits))
        with m.If(advance):
            m.d.sync += [
                s2_valid.eq(s1_valid),
                s2_effectual.eq(s1_effectual),
                s2_first.eq(s1_first),
                s2_last.eq(s1_last),
            ]
            with m.If(s1_valid & s1_effectual):
                m.d.sync += s2_product.eq(s1_a * s1_b)

        # Stage 3: accumulate, emit on `last`, count.
        acc = Signal(signed(self._acc_bits))
        acc_next = Signal(signed(self._acc_bits))
        # A skipped MAC adds nothing; `first` restarts the sum from zero instead of the old value.
        # Written as unconditional Mux assignments on purpose: they become continuous `assign`s,
        # which Icarus evaluates at time 0. A comb `m.If` process holding only its default value
        # stays X in Icarus until one of its inputs changes (4-state cosim caught this).
        # Truncation to acc_bits is the documented wrap-around.
        m.d.comb += acc_next.eq(Mux(s2_first, 0, acc) + Mux(s2_effectual, s2_product, 0))

        with m.If(advance):
            with m.If(s2_valid):
                m.d.sync += acc.eq(acc_next)
                with m.If(s2_effectual):
                    m.d.sync += self.macs_issued.eq(self.macs_issued + 1)
                with m.Else():
                    m.d.sync += self.macs_skipped.eq(self.macs_skipped + 1)
            with m.If(s2_valid & s2_last):
                m.d.sync += [
                    self.o_stream.payload.acc.eq(acc_next),
                    self.o_stream.valid.eq(1),
                ]
            with m.Else():
                m.d.sync += self.o_stream.valid.eq(0)
        return m
