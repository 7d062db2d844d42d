"""The pruner's per-lane draws on the core's result path (Dai et al. on drained gradients).

A pruning DRAIN (``ref.contract.Drain(prune=True)``) prunes every drained code ``g`` with its own
LFSR draw ``d``, in drain order: element ``e`` of result beat ``i`` takes draw ``i*lanes + e``
of the sequence started at the program's seed (``ref.lfsr.GaloisLFSR``). The keep test
``|g| * 2**w >= d * tau`` needs the product ``d * tau``; this block computes it ahead of time, so
the requantizers (``hw.requantize.Requantizer``) only compare: for the beat in their second
register, lane ``e`` sees ``draw_m1[e] = ceil(d * tau / 2**w) - 1 = (d * tau - 1) >> w``.

Registers: ``ahead[e]``, the draw lane ``e`` uses for the *next* pruned beat, and ``draw_m1[e]``
for the current one. ``advance`` (the current beat left the second register of a pruning drain
with ``tau != 0``) moves one beat on: ``draw_m1 <- f(ahead)`` and ``ahead <- A**lanes * ahead``,
``A`` the draw map, a constant XOR network. The multiplier thus sits between two registers, and
the XOR network feeds only ``ahead``.

``load`` takes ``tau`` and ``seed``: ``ahead[e] <- A**(e+1) * seed`` (the first beat's draws);
the cycle after, the first beat's thresholds are formed. So the outputs hold the first beat's
values two cycles after ``load``, and a load must not meet a pruning drain (the host loads
before it sends the program: docs/interface.md). At ``tau = 0`` the pruner is bypassed and
draws nothing: ``advance`` is ignored.
"""

from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.lfsr import jump_columns, jump_logic

__all__ = ["PruneDraws"]


class PruneDraws(wiring.Component):
    """Per-lane draw thresholds for the result-path pruner.

    Parameters
    ----------
    lanes : int            elements per result beat
    lfsr_width, lfsr_taps : the Galois LFSR (``ref.lfsr``)
    tau_bits : int         width of ``tau`` (and of every threshold, which is at most ``tau``)

    Members
    -------
    i_tau : In(tau_bits), i_seed : In(lfsr_width), load : In(1)
        Start a pruned tensor: take ``tau`` and ``seed``.
    advance : In(1)        a pruned beat was consumed (ignored while ``tau = 0``)
    o_tau, o_tau_m1 : Out(tau_bits)      ``tau`` and ``tau - 1`` (registered at ``load``)
    o_draw_m1 : Out(ArrayLayout(tau_bits, lanes))   per lane, ``ceil(d * tau / 2**w) - 1``

    Latency: outputs valid two cycles after ``load``; one cycle after ``advance``.
    """

    def __init__(self, *, lanes: int, lfsr_width: int, lfsr_taps: int, tau_bits: int) -> None:
        self._lanes, self._width, self._taps, self._tau_bits = lanes, lfsr_width, lfsr_taps, tau_bits
        super().__init__({
            "i_tau": In(tau_bits),
            "i_seed": In(lfsr_width),
            "load": In(1),
            "advance": In(1),
            "o_tau": Out(tau_bits),
            "o_tau_m1": Out(tau_bits),
            "o_draw_m1": Out(data.ArrayLayout(unsigned(tau_bits), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, w, taps, tb = self._lanes, self._width, self._taps, self._tau_bits
        tau = Signal(tb)
        tau_m1 = Signal(tb)
        prime = Signal()          # the cycle after load: form the first beat's thresholds
        step = jump_columns(w, taps, lanes)
        moving = prime | (self.advance & (tau != 0))
        with m.If(self.load):
            m.d.sync += [tau.eq(self.i_tau), tau_m1.eq(self.i_tau - 1)]
        m.d.sync += prime.eq(self.load)
        for e in range(lanes):
            ahead = Signal(w, name=f"ahead{e}")
            first = jump_logic(m, self.i_seed, jump_columns(w, taps, e + 1), f"first{e}")
            stepped = jump_logic(m, ahead, step, f"stepped{e}")
            product = Signal(w + tb, name=f"product{e}")
            m.d.comb += product.eq(ahead * tau)
            with m.If(self.load):
                m.d.sync += ahead.eq(first)
            with m.Elif(moving):
                m.d.sync += [
                    ahead.eq(stepped),
                    # d >= 1 and tau >= 1 when it matters, so d * tau - 1 does not wrap.
                    self.o_draw_m1[e].eq((product - 1)[w:]),
                ]
        m.d.comb += [self.o_tau.eq(tau), self.o_tau_m1.eq(tau_m1)]
        return m
