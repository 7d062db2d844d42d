"""Building blocks of the formal harnesses: free inputs, past values, stream and bus rules.

A harness (:class:`Harness`) instantiates a design, gives each of its inputs a free top-level
signal (the solver chooses its value every cycle), and adds ``Assume`` statements for what a legal
environment does and ``Assert`` statements for what the design promises. Reset is held low: the
initial state is the reset state (every register at its ``init``), which is what the
solver starts from.

The stream rules are amaranth's (``amaranth.lib.stream``): a source keeps ``valid`` high until the
sink takes the payload (``valid & ready`` in a cycle) and keeps the payload unchanged meanwhile;
its ``valid`` must not depend combinationally on ``ready`` (checked structurally,
:func:`sim.formal.runner.combinational_paths`).
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, ResetSignal, Signal, Value
from amaranth.hdl import Assert, Assume
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow

__all__ = ["Harness"]


class Harness(Elaboratable):
    """A design under free inputs, with helpers for rules; subclass and fill :meth:`properties`.

    ``dut`` is a :class:`amaranth.lib.wiring.Component`. After elaboration, :attr:`ports` lists the
    free inputs (the solver's choices) and the design's outputs, for ``rtlil.convert``.
    """

    def __init__(self, dut: wiring.Component) -> None:
        self.dut = dut
        self.free: dict[tuple, Signal] = {}
        self.outputs: dict[tuple, Value] = {}
        for path, flow, value in dut.signature.flatten(dut):
            if flow.flow == Flow.In:
                self.free[path] = Signal.like(value, name="free__" + "__".join(map(str, path)))
            else:
                self.outputs[path] = value
        self.ports = [Value.cast(v) for v in (*self.free.values(), *self.outputs.values())]
        self._constants: list[Signal] = []
        self._m: Module | None = None
        self.started = Signal()          # low in the initial cycle only: past values are defined

    # ---- for subclasses ----
    def properties(self, m: Module) -> None:
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        self._m = m
        m.submodules.dut = self.dut
        self._driven: dict[tuple, Value] = {}
        m.d.sync += self.started.eq(1)
        m.d.comb += Assume(~ResetSignal())
        for value in self._constants:
            with m.If(self.started):
                m.d.comb += Assume(value == self.past(value, value.name))
        self.properties(m)
        for path, free in self.free.items():
            m.d.comb += _member(self.dut, path).eq(self._driven.get(path, free))
        return m

    def drive(self, path: tuple, value: Value) -> None:
        """Drive the design's input at ``path`` with ``value`` instead of its free signal (a mutant's
        broken environment; the properties still see the free signal)."""
        self._driven[path] = value

    def input(self, *path) -> Signal:
        """The free signal driving the design's input at ``path``."""
        return self.free[path]

    def past(self, value: Value, name: str) -> Signal:
        """``value`` one cycle ago (its ``init`` in the first cycle; use with :attr:`started`).

        The register sits in a module of its own, so it updates every cycle even when asked for
        inside an ``m.If`` of the harness.
        """
        reg = Signal.like(value, name=f"past_{name}")
        own = Module()
        own.d.sync += reg.eq(value)
        self._m.submodules += own
        return reg

    def assume_source(self, valid: Value, ready: Value, payload: Value, name: str) -> None:
        """The environment drives a stream into the design by the rules (valid held, payload stable)."""
        m = self._m
        waiting = self.past(valid & ~ready, f"{name}_waiting")
        held = self.past(payload, f"{name}_payload")
        with m.If(self.started & waiting):
            m.d.comb += [Assume(valid), Assume(payload == held)]

    def assert_source(self, valid: Value, ready: Value, payload: Value, name: str) -> None:
        """The design drives a stream out by the rules: once offered, valid and payload hold until taken."""
        m = self._m
        waiting = self.past(valid & ~ready, f"{name}_waiting")
        held = self.past(payload, f"{name}_payload")
        with m.If(self.started & waiting):
            m.d.comb += [Assert(valid, f"{name}: valid fell before the payload was taken"),
                         Assert(payload == held, f"{name}: payload changed while waiting")]

    def assume_fair(self, signal: Value, longest_low: int, name: str) -> None:
        """The environment never holds ``signal`` low for more than ``longest_low`` cycles in a row."""
        m = self._m
        low = Signal(range(longest_low + 1), name=f"{name}_low_for")
        with m.If(signal):
            m.d.sync += low.eq(0)
        with m.Elif(low != longest_low):
            m.d.sync += low.eq(low + 1)
        m.d.comb += Assume(signal | (low != longest_low))

    def anyconst(self, shape, name: str) -> Signal:
        """A value the solver chooses once and that then stays constant (a free top-level input).

        Call it before elaboration (in the subclass's ``__init__``), so it is among :attr:`ports`.
        """
        value = Signal(shape, name=f"anyconst_{name}")
        self.ports.append(value)
        self._constants.append(value)
        return value

    def free_input(self, shape, name: str) -> Signal:
        """A signal the solver chooses every cycle, beside the design's inputs (a mutant's glitch).

        Call it before elaboration, as :meth:`anyconst`.
        """
        value = Signal(shape, name=f"free_{name}")
        self.ports.append(value)
        return value


def _member(component, path: tuple):
    value = component
    for part in path:
        value = value[part] if isinstance(part, int) else getattr(value, part)
    return value
