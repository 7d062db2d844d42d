"""cocotb drivers for Amaranth ``stream.Signature`` ports of generated designs.

Amaranth flattens a stream member ``<name>`` into three ports, ``<name>__payload``,
``<name>__valid`` and ``<name>__ready``; the payload is one flat vector. These helpers pack and
unpack payloads through the same ``data.Layout`` objects the RTL was built from (``hw.layouts``),
so no bit offset is ever written by hand.

Timing discipline (identical on Icarus and Verilator): inputs are driven just after a rising
edge; the handshake is sampled in the ``ReadOnly`` phase of the same time step, when every
combinational path (e.g. ``ready`` from the consumer's ``ready``) has settled. A transfer seen
there happens at the next rising edge. Cycle numbers count rising edges since :class:`ClockCounter`
started.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from amaranth import Shape
from amaranth.lib import data
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["ClockCounter", "Received", "StreamSink", "StreamSource"]


class ClockCounter:
    """Counts rising edges of ``clock``; ``now`` is the index of the edge that comes next."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self.now = 0

    async def run(self) -> None:
        while True:
            await RisingEdge(self._clock)
            self.now += 1


def _codec(shape: Any) -> tuple[Any, Any]:
    """(encode, decode) between Python values and payload bits for a layout or a plain shape.

    A ``data.Layout`` payload is packed with ``layout.const(dict).as_bits()`` and unpacked with
    ``layout.from_bits`` (a ``data.Const`` with field access); a plain ``unsigned``/``signed``
    payload is an int.
    """
    if isinstance(shape, data.Layout) or (isinstance(shape, type) and issubclass(shape, data.Struct)):
        layout = data.Layout.cast(shape)
        return (lambda value: layout.const(value).as_bits()), layout.from_bits
    plain = Shape.cast(shape)

    def decode(bits: int) -> int:
        return bits - (1 << plain.width) if plain.signed and bits >> (plain.width - 1) else bits

    return (lambda value: value & ((1 << plain.width) - 1)), decode


def _port(dut: Any, name: str, member: str) -> Any:
    try:
        return getattr(dut, f"{name}__{member}")
    except AttributeError:
        raise AttributeError(f"design has no stream port '{name}__{member}'") from None


class StreamSource:
    """Sends payloads into an ``In(stream.Signature(layout))`` port of the DUT.

    ``idle_probability`` is the chance, before each beat, of one cycle with ``valid`` low (random
    input starvation); the random choices come from ``rng`` so a seed reproduces them.
    """

    def __init__(
        self,
        dut: Any,
        name: str,
        layout: data.Layout,
        *,
        clock: Any,
        counter: ClockCounter,
        rng: random.Random,
        idle_probability: float = 0.0,
    ) -> None:
        self._valid = _port(dut, name, "valid")
        self._ready = _port(dut, name, "ready")
        self._payload = _port(dut, name, "payload")
        self._encode, _ = _codec(layout)
        self._clock = clock
        self._counter = counter
        self._rng = rng
        self._idle = idle_probability
        self.accepted_at: list[int] = []  # edge index at which each beat was transferred
        self._valid.value = 0

    async def send(self, beats: Iterable[Mapping[str, Any] | int]) -> None:
        """Transfer every beat in order; returns just after the last transfer's edge."""
        for beat in beats:
            while self._idle and self._rng.random() < self._idle:
                self._valid.value = 0
                await RisingEdge(self._clock)
            self._payload.value = self._encode(beat)
            self._valid.value = 1
            while True:
                await ReadOnly()
                accepted = bool(self._ready.value)
                at = self._counter.now
                await RisingEdge(self._clock)
                if accepted:
                    self.accepted_at.append(at)
                    break
        self._valid.value = 0


@dataclass(frozen=True)
class Received:
    """One payload taken from an output stream and the edge index of its transfer."""

    payload: Any  # data.Const for layout payloads, int for plain shapes
    cycle: int


class StreamSink:
    """Takes payloads from an ``Out(stream.Signature(layout))`` port of the DUT.

    ``stall_probability`` is the chance, each cycle, of holding ``ready`` low (random output
    backpressure). The sink also checks the stream rules: once ``valid`` is high it must stay high,
    with an unchanged payload, until the transfer.
    """

    def __init__(
        self,
        dut: Any,
        name: str,
        layout: data.Layout,
        *,
        clock: Any,
        counter: ClockCounter,
        rng: random.Random,
        stall_probability: float = 0.0,
    ) -> None:
        self._name = name
        self._valid = _port(dut, name, "valid")
        self._ready = _port(dut, name, "ready")
        self._payload = _port(dut, name, "payload")
        _, self._decode = _codec(layout)
        self._clock = clock
        self._counter = counter
        self._rng = rng
        self._stall = stall_probability
        self._ready.value = 0

    async def receive(self, count: int) -> list[Received]:
        """Take ``count`` payloads; returns just after the last transfer's edge."""
        received: list[Received] = []
        pending: int | None = None  # payload bits offered but not yet taken
        while len(received) < count:
            ready = not (self._stall and self._rng.random() < self._stall)
            self._ready.value = int(ready)
            await ReadOnly()
            valid = bool(self._valid.value)
            if pending is not None:
                assert valid, f"{self._name}__valid dropped before the transfer (cycle {self._counter.now})"
                bits = int(self._payload.value)
                assert bits == pending, (
                    f"{self._name}__payload changed from {pending:#x} to {bits:#x} before the transfer "
                    f"(cycle {self._counter.now})"
                )
            if valid:
                bits = int(self._payload.value)
                if ready:
                    received.append(Received(self._decode(bits), self._counter.now))
                    pending = None
                else:
                    pending = bits
            await RisingEdge(self._clock)
        self._ready.value = 0
        return received
