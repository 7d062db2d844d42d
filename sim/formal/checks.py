"""The formal checks and their mutants; each harness's docstring states its property.

Every check is a harness (:class:`sim.formal.rules.Harness`) on a small configuration of a real
block (the ``tiny`` preset, or a vector core of the same size), proved by bounded model checking
to the check's depth, or a structural check that a stream's ``valid`` has no combinational path
from its ``ready``. A *mutant* of a check is the same harness with the block's port broken in one
way between the block and the properties (a response dropped or doubled, a payload changed while
waiting, ``valid`` made to wait for ``ready``, a lane that stops taking work): each must fail,
which shows the property is not vacuous at that depth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.hdl import Assert, Assume

from hw.axi_top import AxiTop
from hw.config import preset
from hw.core import SparseCore
from hw.dispatcher import Dispatcher
from hw.vector_core import VectorCore, VectorCoreParams
from sim.formal.rules import Harness

__all__ = ["CHECKS", "FormalCheck"]

#: The vector core's formal configuration: the ``tiny`` preset's sizes.
VECTOR_TINY = VectorCoreParams(lanes=2, vector=4, tile_m=4, tile_k=8, operand_bits=4, acc_bits=12, bus_elems=4,
                               accumulators=2, counter_bits=8, lfsr_width=8, lfsr_taps=0xB8, prune_count_bits=10,
                               resprop_max_elems=16, resprop_max_batch=4)


@dataclass(frozen=True)
class FormalCheck:
    """One property set on one block.

    build(mutant): the harness, ``mutant`` None or one of ``mutants``.
    depth: cycles of bounded model checking (``structural`` checks have none).
    mutants: name -> the way that variant breaks the block (each must fail the check).
    structural: ``(ready wire, valid wire)`` pairs of the harness: the check is that no valid
        depends combinationally on its ready (instead of model checking).
    """

    name: str
    description: str
    build: Callable[[str | None], Harness]
    depth: int = 0
    mutants: dict[str, str] = field(default_factory=dict)
    structural: list[tuple[str, str]] = field(default_factory=list)


def _glitched(h: Harness, mutant: str | None, valid: Value, payload: Value, m: Module,
              name: str) -> tuple[Value, Value]:
    """The stream as the properties see it: itself, or broken as ``mutant`` says."""
    seen_valid = Signal(name=f"seen_{name}_valid")
    seen_payload = Signal(len(payload), name=f"seen_{name}_payload")
    glitch = getattr(h, "glitch", None)
    m.d.comb += [seen_valid.eq(valid), seen_payload.eq(payload)]
    if mutant == "valid_drops":
        m.d.comb += seen_valid.eq(valid & ~glitch)
    elif mutant == "payload_changes":
        m.d.comb += seen_payload.eq(payload ^ glitch)
    return seen_valid, seen_payload


STREAM_MUTANTS = {
    "valid_drops": "the result stream's valid falls for a cycle while a beat waits",
    "payload_changes": "a waiting result beat's bit 0 flips",
}


class CoreStreams(Harness):
    """A core's three streams: inputs by the rules (assumed), the result stream by the rules (asserted)."""

    def __init__(self, dut, mutant: str | None = None) -> None:
        super().__init__(dut)
        self.mutant = mutant
        self.glitch = self.free_input(1, "glitch")

    def properties(self, m):
        d = self.dut
        for port in ("i_cmd", "i_data"):
            self.assume_source(self.input(port, "valid"), getattr(d, port).ready, self.input(port, "payload"), port)
        ready = self.input("o_data", "ready")
        valid, payload = _glitched(self, self.mutant, d.o_data.valid, d.o_data.payload, m, "o_data")
        self.assert_source(valid, ready, payload, "o_data")


class DispatcherConservation(Harness):
    """The dispatcher hands each output that needs work to exactly one lane, once, and finishes.

    A watched output ``(m0, n0)`` is chosen by the solver. Per command (``start`` while not busy,
    the inputs held until ``busy`` falls): it is handed out at most once, and when ``busy`` falls it
    was handed out exactly when it needs work (sparse: unmasked with a nonzero A row AND B column;
    dense: always, its ``masked`` flag equal to the mask). Lanes are ready at least every other
    cycle, and ``busy`` falls within ``2 * tile_m * tile_n + 4`` cycles of ``start``.
    """

    def __init__(self, dut: Dispatcher, mutant: str | None = None) -> None:
        super().__init__(dut)
        self.mutant = mutant
        self.m0 = self.anyconst(range(dut._tm), "m0")
        self.n0 = self.anyconst(range(dut._tn), "n0")
        self.glitch = self.free_input(1, "glitch")

    def properties(self, m):
        d = self.dut
        lanes, tm, tn, sparse = d._lanes, d._tm, d._tn, d._sparse
        start = self.input("start")
        m.d.comb += Assume(~(start & d.busy))
        held = ["has_mask", "accumulate", "mask_rows"] + (["row_bitmaps", "col_bitmaps"] if sparse else [])
        active = Signal(name="active")            # a command started and has not finished
        # Held from the cycle after start until the cycle busy falls.
        holding = self.past(start | (active & d.busy), "holding")
        for name in held:
            with m.If(self.started & holding & ~start):
                m.d.comb += Assume(self.input(name) == self.past(self.input(name), name))
        used = Signal(lanes, name="used")         # lanes that took an item (the stuck_lane mutant)
        for j in range(lanes):
            ready = self.input("o_work", j, "ready")
            self.assume_fair(ready, 1, f"lane{j}_ready")
            if self.mutant == "stuck_lane":
                # The variant: a lane that took one item never takes another.
                self.drive(("o_work", j, "ready"), ready & ~used[j])
            with m.If(d.o_work[j].valid & d.o_work[j].ready):
                m.d.sync += used[j].eq(1)
        with m.If(start):
            m.d.sync += used.eq(0)

        # Hand-outs of the watched output in this cycle, as the properties see them.
        hits = []
        echo = Signal(lanes, name="echo")         # the duplicate mutant: a taken item shown again
        for j in range(lanes):
            port = d.o_work[j]
            taken = port.valid & port.ready & (port.payload.m == self.m0) & (port.payload.n == self.n0)
            if not sparse:
                masked = self.input("has_mask") & ~self.input("mask_rows")[self.m0].bit_select(self.n0, 1)
                with m.If(taken):
                    m.d.comb += Assert(port.payload.masked == masked, "a dense item's masked flag is wrong")
            m.d.sync += echo[j].eq(taken)
            if self.mutant == "lost":
                taken = taken & ~self.glitch
            elif self.mutant == "duplicate":
                taken = taken | (echo[j] & self.glitch)
            hits.append(taken)
        count = Signal(3, name="handed_out")
        total = Signal(3)
        m.d.comb += total.eq(count + sum(hits))
        with m.If(start):
            m.d.sync += [count.eq(0), active.eq(1)]
        with m.Else():
            m.d.sync += count.eq(total)
        m.d.comb += Assert(total <= 1, "the watched output was handed out twice")

        if sparse:
            row = self.input("row_bitmaps")[self.m0]
            col = self.input("col_bitmaps")[self.n0]
            unmasked = ~self.input("has_mask") | self.input("mask_rows")[self.m0].bit_select(self.n0, 1)
            needs = unmasked & ((row & col) != 0)
        else:
            needs = 1
        finished = active & ~start & self.past(d.busy, "busy") & ~d.busy
        with m.If(finished):
            m.d.comb += Assert(count == needs, "the watched output's hand-outs at the end differ from its need")
            m.d.sync += active.eq(0)

        bound = 2 * tm * tn + 4
        age = Signal(range(bound + 1), name="command_age")
        with m.If(start):
            m.d.sync += age.eq(0)
        with m.Elif(d.busy & (age != bound)):
            m.d.sync += age.eq(age + 1)
        m.d.comb += Assert(~(d.busy & (age == bound)), "a command was not dispatched within the bound")


class AxiLiteOnce(Harness):
    """The AXI top's AXI-Lite slave answers every request exactly once, within a bound.

    The master follows AXI (AW, W, AR held valid with stable payloads until taken); B and R follow
    the stream rules (asserted), never answer more writes (reads) than were taken, and complete
    the response handshake within 3 cycles of the request's while BREADY (RREADY) is never low two
    cycles in a row. The result
    stream follows the stream rules too.
    """

    def __init__(self, dut: AxiTop, mutant: str | None = None) -> None:
        super().__init__(dut)
        self.mutant = mutant
        self.glitch = self.free_input(1, "glitch")

    def properties(self, m):
        d = self.dut

        def free(name):
            return self.input(f"s_axil_{name}")

        for channel, payload in (("aw", Cat(free("awaddr"))), ("w", Cat(free("wdata"), free("wstrb"))),
                                 ("ar", Cat(free("araddr")))):
            self.assume_source(free(f"{channel}valid"), getattr(d, f"s_axil_{channel}ready"), payload, channel)
        for port in ("cmd", "data"):
            self.assume_source(self.input(f"s_axis_{port}_tvalid"), getattr(d, f"s_axis_{port}_tready"),
                               self.input(f"s_axis_{port}_tdata"), port)
        self.assert_source(d.m_axis_result_tvalid, self.input("m_axis_result_tready"),
                           Cat(d.m_axis_result_tdata, d.m_axis_result_tlast), "result")

        for resp, request_channels, payload, label in (
                ("b", ("aw", "w"), Cat(d.s_axil_bresp), "write"),
                ("r", ("ar",), Cat(d.s_axil_rdata, d.s_axil_rresp), "read")):
            ready = free(f"{resp}ready")
            valid, seen_payload = getattr(d, f"s_axil_{resp}valid"), payload
            echo = Signal(name=f"{resp}_echo")
            m.d.sync += echo.eq(valid & ready)
            if self.mutant == f"{resp}_lost":
                valid = valid & ~self.glitch
            elif self.mutant == f"{resp}_never":
                valid = 0
            elif self.mutant == f"{resp}_twice":
                valid = valid | (echo & self.glitch)
            elif self.mutant == f"{resp}_unstable":
                seen_payload = payload ^ self.glitch
            self.assert_source(valid, ready, seen_payload, resp)
            self.assume_fair(ready, 1, f"{resp}ready")
            # Requests taken and responses given so far (the depth keeps them from wrapping).
            requests = [Signal(5, name=f"{c}_taken") for c in request_channels]
            for count, c in zip(requests, request_channels, strict=True):
                with m.If(free(f"{c}valid") & getattr(d, f"s_axil_{c}ready")):
                    m.d.sync += count.eq(count + 1)
            answered = Signal(5, name=f"{resp}_given")
            with m.If(valid & ready):
                m.d.sync += answered.eq(answered + 1)
            taken = requests[0] if len(requests) == 1 else Mux(requests[0] < requests[1], requests[0], requests[1])
            m.d.comb += Assert(answered <= taken, f"a {label} response without a request")
            with m.If(valid & ready):
                m.d.comb += Assert(answered < taken, f"a {label} response without a request")
            # Cycles with a request taken and not yet answered: the response is offered at most two
            # cycles after the request (a RESPROP_P_DATA read) and READY is low at most one more.
            waiting = Signal(range(5), name=f"{label}_unanswered_for")
            with m.If(answered == taken):
                m.d.sync += waiting.eq(0)
            with m.Elif(waiting != 4):
                m.d.sync += waiting.eq(waiting + 1)
            m.d.comb += Assert(waiting != 4, f"a {label} request was not answered within 3 cycles")


AXI_MUTANTS = {
    "b_lost": "a write response is dropped (BVALID hidden for a cycle while the slave sees BREADY)",
    "b_never": "writes are never answered (BVALID never seen)",
    "b_twice": "a write response is given twice (BVALID shown again after the handshake)",
    "b_unstable": "a waiting write response's BRESP bit changes",
    "r_lost": "a read response is dropped",
    "r_never": "reads are never answered",
    "r_twice": "a read response is given twice",
    "r_unstable": "a waiting read response's data changes",
}


class ValidFromReady(Harness):
    """Structural: the named streams' ``valid`` as seen (``seen_<name>_valid``), for the structural check."""

    def __init__(self, dut, streams: list[tuple[str, Callable, Callable]], mutant: str | None = None) -> None:
        super().__init__(dut)
        self.streams = streams
        self.mutant = mutant

    def properties(self, m):
        for name, valid_of, ready_of in self.streams:
            ready = ready_of(self)
            seen = Signal(name=f"seen_{name}_valid", attrs={"keep": 1})    # kept for the structural check
            valid = valid_of(self.dut)
            m.d.comb += seen.eq(valid & ready if self.mutant == "valid_waits_for_ready" else valid)


def _core_streams() -> list[tuple[str, Callable, Callable]]:
    return [("o_data", lambda d: d.o_data.valid, lambda h: h.input("o_data", "ready"))]


def _axi_streams() -> list[tuple[str, Callable, Callable]]:
    return [
        ("result", lambda d: d.m_axis_result_tvalid, lambda h: h.input("m_axis_result_tready")),
        ("b", lambda d: d.s_axil_bvalid, lambda h: h.input("s_axil_bready")),
        ("r", lambda d: d.s_axil_rvalid, lambda h: h.input("s_axil_rready")),
    ]


def _tiny():
    return preset("tiny")


CHECKS: list[FormalCheck] = [
    FormalCheck(
        "core_streams", "sparse core (tiny): the result stream keeps valid and payload until taken, "
        "for every input sequence by the stream rules",
        lambda mutant: CoreStreams(SparseCore(_tiny()), mutant), depth=16, mutants=STREAM_MUTANTS),
    FormalCheck(
        "vector_core_streams", "vector core (tiny sizes): the result stream keeps valid and payload until taken",
        lambda mutant: CoreStreams(VectorCore(VECTOR_TINY), mutant), depth=16, mutants=STREAM_MUTANTS),
    FormalCheck(
        "core_valid_from_ready", "sparse core: o_data.valid has no combinational path from o_data.ready",
        lambda mutant: ValidFromReady(SparseCore(_tiny()), _core_streams(), mutant),
        mutants={"valid_waits_for_ready": "valid is gated by ready"},
        structural=[("free__o_data__ready", "seen_o_data_valid")]),
    FormalCheck(
        "vector_core_valid_from_ready", "vector core: o_data.valid has no combinational path from o_data.ready",
        lambda mutant: ValidFromReady(VectorCore(VECTOR_TINY), _core_streams(), mutant),
        mutants={"valid_waits_for_ready": "valid is gated by ready"},
        structural=[("free__o_data__ready", "seen_o_data_valid")]),
    FormalCheck(
        "axi_valid_from_ready", "AXI top: TVALID, BVALID and RVALID have no combinational path from their READY",
        lambda mutant: ValidFromReady(AxiTop(_tiny()), _axi_streams(), mutant),
        mutants={"valid_waits_for_ready": "each valid is gated by its ready"},
        structural=[("free__m_axis_result_tready", "seen_result_valid"),
                    ("free__s_axil_bready", "seen_b_valid"), ("free__s_axil_rready", "seen_r_valid")]),
    FormalCheck(
        "axi_lite_once", "AXI top (tiny): every AXI-Lite write and read is answered exactly once, within 3 "
        "cycles, by the stream rules; the result stream by the rules",
        lambda mutant: AxiLiteOnce(AxiTop(_tiny()), mutant), depth=12, mutants=AXI_MUTANTS),
    FormalCheck(
        "dispatcher_sparse", "sparse core's dispatcher (tiny): each output that needs work goes to one lane, "
        "once; each command finishes within the bound",
        lambda mutant: DispatcherConservation(
            Dispatcher(lanes=2, tile_m=4, tile_n=4, tile_k=8, sparse=True), mutant), depth=40,
        mutants={"lost": "a hand-out is not seen (the item vanishes)",
                 "duplicate": "a taken item is handed out again the next cycle",
                 "stuck_lane": "a lane that took one item never takes another (a deadlock)"}),
    FormalCheck(
        "dispatcher_dense", "dense core's dispatcher (tiny): every output goes to one lane once, with its mask flag",
        lambda mutant: DispatcherConservation(
            Dispatcher(lanes=2, tile_m=4, tile_n=4, tile_k=8, sparse=False), mutant), depth=40,
        mutants={"lost": "a hand-out is not seen (the item vanishes)",
                 "duplicate": "a taken item is handed out again the next cycle"}),
]
