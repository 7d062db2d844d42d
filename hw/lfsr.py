"""Galois LFSR unit: one pseudo-random ``width``-bit draw per cycle, reproducible bit for bit.

This is the uniform-random source of the stochastic gradient pruner (Dai et al.). Its sequence is
the one ``ref.lfsr.GaloisLFSR`` defines: one *shift* maps state ``s`` to ``s >> 1``, XORed with
``taps`` when the bit shifted out was 1; one *draw* is ``width`` shifts, unrolled here into a
single XOR network so a new draw is ready every cycle.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["GaloisLFSRUnit", "draw_network"]


def _check_lfsr_parameters(width: int, taps: int, seed: int) -> None:
    if not isinstance(width, int) or isinstance(width, bool) or not 2 <= width <= 32:
        raise ValueError(f"GaloisLFSRUnit width must be an integer in 2..32, not {width!r}")
    if not isinstance(taps, int) or not 0 < taps < (1 << width) or not (taps >> (width - 1)) & 1:
        raise ValueError(f"GaloisLFSRUnit taps must be a {width}-bit mask with bit {width - 1} set, not {taps!r}")
    if not isinstance(seed, int) or not 0 < seed < (1 << width):
        raise ValueError(f"GaloisLFSRUnit seed must be an integer in 1..{(1 << width) - 1}, not {seed!r}")


def draw_network(state: int, width: int, taps: int) -> int:
    """``width`` Galois shifts of the integer ``state`` (elaboration-time constant folding)."""
    for _ in range(width):
        state = (state >> 1) ^ (taps if state & 1 else 0)
    return state


def jump_columns(width: int, taps: int, draws: int) -> list[int]:
    """The GF(2)-linear map "advance ``draws`` draws" as its columns: column ``j`` is the state
    reached from the state ``1 << j`` (elaboration-time constants)."""
    columns = []
    for j in range(width):
        state = 1 << j
        for _ in range(draws):
            state = draw_network(state, width, taps)
        columns.append(state)
    return columns


def jump_logic(m: Module, state, columns: list[int], name: str) -> Signal:
    """``state`` advanced by the linear map ``columns`` (:func:`jump_columns`): one XOR of the
    state bits per result bit, at most ``width`` inputs deep."""
    width = len(columns)
    out = Signal(width, name=name)
    for i in range(width):
        terms = [state[j] for j in range(width) if columns[j] >> i & 1]
        m.d.comb += out[i].eq(Cat(*terms).xor() if terms else 0)
    return out


def _draw_logic(m: Module, state, width: int, taps: int, name: str) -> Signal:
    """``width`` Galois shifts of ``state`` as combinational logic; returns the result signal.

    Every shift step gets its own signal: an expression that used the previous step twice
    (shifted, and its low bit) would otherwise grow as 2**width in the netlist description.
    """
    for step in range(width):
        shifted = Signal(width, name=f"{name}_shift{step}")
        m.d.comb += shifted.eq((state >> 1) ^ Mux(state[0], Const(taps, width), Const(0, width)))
        state = shifted
    return state


class GaloisLFSRUnit(wiring.Component):
    """Stream of LFSR draws, with a reseed input.

    The draw on ``o_stream.payload`` is a register, so the output is glitch-free and the XOR
    network sits between two registers. ``o_stream.valid`` is always 1 after reset; every
    transfer advances to the next draw. After reset the first payload is the first draw of
    ``GaloisLFSR(width, taps, seed)``.

    A transfer on ``i_seed`` (always ready) restarts the sequence: from the next cycle on the
    payload is the first draw of ``GaloisLFSR(width, taps, seed=<value>)``; a simultaneous
    ``o_stream`` transfer consumed the old draw. A zero seed would lock a Galois LFSR at 0, so
    a transfer of 0 is ignored (the sequence continues).

    Latency: a reseed shows on the payload one cycle after its transfer. Throughput: one draw
    per cycle.

    Parameters
    ----------
    width : int
        State and draw width, 2..32 bits.
    taps : int
        Right-shift Galois feedback mask; bit ``width - 1`` must be set. Use a maximal-length
        mask (``ref.lfsr.DEFAULT_TAPS``) for period ``2**width - 1``.
    seed : int
        Reset state, 1..2**width - 1.

    Members
    -------
    o_stream : ``Out(stream.Signature(unsigned(width)))``
        The draws; a uniform in (0, 1) is ``payload / 2**width``.
    i_seed : ``In(stream.Signature(unsigned(width)))``
        Reseed requests; ``ready`` is always 1.
    """

    def __init__(self, *, width: int, taps: int, seed: int) -> None:
        _check_lfsr_parameters(width, taps, seed)
        self._width = width
        self._taps = taps
        self._seed = seed
        super().__init__({
            "o_stream": Out(stream.Signature(unsigned(width))),
            "i_seed": In(stream.Signature(unsigned(width))),
        })

    @property
    def width(self) -> int:
        return self._width

    @property
    def taps(self) -> int:
        return self._taps

    @property
    def seed(self) -> int:
        return self._seed

    def elaborate(self, platform):
        m = Module()
        width, taps = self._width, self._taps
        # The register holds the draw being offered; its reset value is the first draw.
        draw = Signal(width, init=draw_network(self._seed, width, taps))
        next_draw = _draw_logic(m, draw, width, taps, "next")
        reseeded = _draw_logic(m, self.i_seed.payload, width, taps, "reseed")
        m.d.comb += [
            self.o_stream.payload.eq(draw),
            self.o_stream.valid.eq(1),
            self.i_seed.ready.eq(1),
        ]
        with m.If(self.i_seed.valid & (self.i_seed.payload != 0)):
            m.d.sync += draw.eq(reseeded)
        with m.Elif(self.o_stream.ready):
            m.d.sync += draw.eq(next_draw)
        return m
