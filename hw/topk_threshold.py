"""SWAT's top-K threshold unit: exact K-th largest magnitude (or slice L1 norm), then ``>=`` masking.

The unit computes what ``ref.topk_codes.TopKUnitModel`` defines (and that model equals
``ref.policies.swat.topk_mask`` / ``channel_mask`` on integer tensors, periodic reuse included).

Storage decision: the unit keeps the tensor in an on-chip ``amaranth.lib.memory`` of ``max_elems``
codes (one ``operand_bits`` word per element), so the tensor crosses the input stream once and the
selection passes read the memory. Re-streaming from the host instead would need no memory but
``operand_bits + 1`` host reads of the tensor per recompute; a weight tensor of a small CNN layer
(the digits CNN's largest, conv3, has 9216 weights) fits in a few block RAMs. Tensors above
``max_elems`` (e.g. a whole activation batch) are out of this unit's reach.

How a tensor goes through (one command on ``i_cmd``, then ``n`` codes on ``i_data``):

1. **Load** (``n`` cycles at full input rate): each code is written to the memory; the same cycle
   counts it for the first selection bit.
2. **Select** (only when recomputing): a most-significant-bit-first radix select over item scores,
   one pass per remaining score bit, each pass reading all ``n`` codes from memory (``n + 2``
   cycles with its decision cycle). Score bits: ``operand_bits - 1 + slice_len.bit_length()``.
3. **Emit**: every code leaves on ``o_data`` with ``keep = score >= threshold`` and ``value`` =
   the code if kept, else 0. In channel mode (``slice_len > 1``) each slice is read twice: once to
   sum its score, once to emit it.
4. **Status**: one beat on ``o_status`` with the threshold applied, whether it was recomputed, and
   the number of codes kept.

Latency per tensor of ``n`` codes without stalls (measured in ``tests/hw/test_topk_unit.py``),
from the command transfer to the status transfer, ``P = operand_bits - 2 + slice_len.bit_length()``
selection passes after the load pass:

- element mode, recomputing: ``(P + 2) * n + 2 * P + 3`` cycles (int8: ``9n + 17``);
- channel mode, recomputing: ``(P + 3) * n + 2 * P + 3`` (int8, 3x3 slices: ``13n + 23``);
- reusing the stored threshold: ``2n + 2`` (element) or ``3n + 2`` (channel) cycles.

The command is accepted in the cycle after the previous tensor's status transfer. Throughput is
one code per cycle in and out; the passes in between stall the input.

Command preconditions (``ref.topk_codes.TopKUnitModel.process`` raises on a violation; the unit's
behaviour is then undefined): ``1 <= n <= max_elems``, ``slice_len >= 1`` divides ``n``,
``1 <= k <= n / slice_len``, and exactly ``n`` codes follow the command.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["TopKThresholdUnit", "topk_command_layout", "topk_output_layout", "topk_status_layout"]

MAX_ELEMS_LIMIT = 1 << 20
#: Width of a command's ``period`` field (``ref.topk_codes.PERIOD_BITS``; hw imports nothing of ours).
PERIOD_BITS = 16


def _count_bits(max_elems: int) -> int:
    return max_elems.bit_length()


def _score_bits(operand_bits: int, max_elems: int) -> int:
    # A slice holds at most max_elems codes of magnitude <= 2**(b-1).
    return operand_bits - 1 + max_elems.bit_length()


def topk_command_layout(max_elems: int) -> data.StructLayout:
    """One tensor command.

    Fields
    ------
    n : unsigned(max_elems.bit_length())
        Codes in the tensor, 1..max_elems.
    k : unsigned(max_elems.bit_length())
        Items to keep, ``ref.topk_codes.keep_count(keep, n // slice_len)``; ignored when the stored
        threshold is reused.
    slice_len : unsigned(max_elems.bit_length())
        Codes per item: 1 for element top-K, ``R*S`` for SWAT's channel (kernel-slice) mode.
    period : unsigned(16)
        Recompute the threshold every ``period`` tensors (0 acts as 1).
    restart : 1 bit
        Reset the tensor counter to 0 before this tensor (host: batch 0 of each epoch).
    force : 1 bit
        Recompute regardless of the counter (host: warm-up epochs, linear layers).
    """
    c = _count_bits(max_elems)
    return data.StructLayout({
        "n": unsigned(c), "k": unsigned(c), "slice_len": unsigned(c),
        "period": unsigned(PERIOD_BITS), "restart": 1, "force": 1,
    })  # fmt: skip


def topk_output_layout(operand_bits: int) -> data.StructLayout:
    """One code leaving the unit: ``value`` (the code if kept, else 0), ``keep``, ``last`` (of the tensor)."""
    return data.StructLayout({"value": signed(operand_bits), "keep": 1, "last": 1})


def topk_status_layout(operand_bits: int, max_elems: int) -> data.StructLayout:
    """One beat per tensor: the ``threshold`` applied, ``recomputed``, and ``kept`` (codes kept)."""
    return data.StructLayout({
        "threshold": unsigned(_score_bits(operand_bits, max_elems)),
        "recomputed": 1,
        "kept": unsigned(_count_bits(max_elems)),
    })


class TopKThresholdUnit(wiring.Component):
    """Exact top-K mask of a tensor of signed codes, with SWAT's periodic threshold reuse.

    See the module docstring for the algorithm, storage and latency.

    Parameters
    ----------
    operand_bits : int
        Width of the signed two's-complement codes, 2..32.
    max_elems : int
        Largest tensor (codes) the unit stores, 2..2**20; the memory depth.

    Members
    -------
    i_cmd : ``In(stream.Signature(topk_command_layout(max_elems)))``
        One command per tensor, accepted only while the unit is idle.
    i_data : ``In(stream.Signature(signed(operand_bits)))``
        The tensor's ``n`` codes in row-major order, one per beat.
    o_data : ``Out(stream.Signature(topk_output_layout(operand_bits)))``
        The ``n`` masked codes, in input order.
    o_status : ``Out(stream.Signature(topk_status_layout(operand_bits, max_elems)))``
        One beat per tensor, after its last ``o_data`` beat.
    """

    def __init__(self, *, operand_bits: int, max_elems: int) -> None:
        if not isinstance(operand_bits, int) or isinstance(operand_bits, bool) or not 2 <= operand_bits <= 32:
            raise ValueError(f"TopKThresholdUnit operand_bits must be an integer in 2..32, not {operand_bits!r}")
        if not isinstance(max_elems, int) or isinstance(max_elems, bool) or not 2 <= max_elems <= MAX_ELEMS_LIMIT:
            raise ValueError(f"TopKThresholdUnit max_elems must be an integer in 2..{MAX_ELEMS_LIMIT}, "
                             f"not {max_elems!r}")
        self._operand_bits = operand_bits
        self._max_elems = max_elems
        super().__init__({
            "i_cmd": In(stream.Signature(topk_command_layout(max_elems))),
            "i_data": In(stream.Signature(signed(operand_bits))),
            "o_data": Out(stream.Signature(topk_output_layout(operand_bits))),
            "o_status": Out(stream.Signature(topk_status_layout(operand_bits, max_elems))),
        })

    @property
    def operand_bits(self) -> int:
        return self._operand_bits

    @property
    def max_elems(self) -> int:
        return self._max_elems

    @property
    def score_bits(self) -> int:
        """Width of an item score and of the threshold."""
        return _score_bits(self._operand_bits, self._max_elems)

    def elaborate(self, platform):
        m = Module()
        b, c, s = self._operand_bits, _count_bits(self._max_elems), self.score_bits
        m.submodules.mem = mem = Memory(shape=signed(b), depth=self._max_elems, init=[])
        wr = mem.write_port()
        rd = mem.read_port()

        # Command, latched when accepted.
        n = Signal(c)
        slice_len = Signal(c)
        elem_mode = Signal()        # slice_len == 1: the score is the code's own magnitude
        period = Signal(PERIOD_BITS)
        recompute = Signal()
        # Stored threshold and the tensor counter of the periodic recompute.
        threshold = Signal(s)
        have_threshold = Signal()
        tensor_count = Signal(PERIOD_BITS)
        # Radix select: the threshold's bits found so far, the bit under test (one-hot) and the
        # mask of it and the bits above, the items still to rank, and this pass's count.
        found = Signal(s)
        bit = Signal(s)
        high = Signal(s)
        k_left = Signal(c)
        count = Signal(c)
        kept = Signal(c)

        # Sequencer: which memory address is read next, its place in its slice, and (emit) whether
        # this read sums the slice's score (phase A) or emits it (phase B).
        addr = Signal(c)
        pos = Signal(c)
        base = Signal(c)
        phase_b = Signal()
        done = Signal()
        # The read in flight: the memory's data output holds it while s1_valid.
        s1_valid = Signal()
        s1_emit = Signal()
        s1_end = Signal()
        s1_last = Signal()

        # Score of the current item: running sum over its codes (acc), complete at the slice end.
        src_valid = Signal()
        src_code = Signal(signed(b))
        src_end = Signal()
        acc = Signal(s)
        slice_score = Signal(s)     # emit: the score of the slice being emitted
        magnitude = Signal(b)       # |code| of -2**(b-1) is 2**(b-1): b unsigned bits suffice
        score = Signal(s)
        m.d.comb += [
            magnitude.eq(abs(src_code)),
            score.eq(acc + magnitude),
        ]
        candidate = found | bit
        hit = (score & high) == candidate
        with m.If(src_valid):
            m.d.sync += acc.eq(Mux(src_end, 0, score))
            with m.If(src_end):
                m.d.sync += [
                    count.eq(count + hit),
                    slice_score.eq(score),
                ]

        at_last = addr == n - 1
        at_slice_end = pos == slice_len - 1

        def restart_sequencer():
            m.d.sync += [addr.eq(0), pos.eq(0), base.eq(0), phase_b.eq(elem_mode), done.eq(0), acc.eq(0)]

        # Emit-side pipeline control: the read port advances when its held code is not an output
        # waiting for o_data.ready.
        advance = Signal()
        m.d.comb += advance.eq(~(s1_valid & s1_emit) | self.o_data.ready)

        # Decision at the end of a selection pass.
        take = count >= k_left

        # Top score bit of this command's slices: b - 2 + slice_len.bit_length().
        cmd = self.i_cmd.payload
        cmd_bitlen = Signal(range(c + 1))
        for i in range(c):
            with m.If(cmd.slice_len[i]):
                m.d.comb += cmd_bitlen.eq(i + 1)
        cmd_bit = Signal(s)
        m.d.comb += cmd_bit.eq(Const(1 << (b - 2), s) << cmd_bitlen)

        keep = Mux(elem_mode, abs(rd.data), slice_score) >= threshold  # the code held by the read port
        with m.FSM(name="fsm") as fsm:
            with m.State("IDLE"):
                with m.If(self.i_cmd.valid):
                    counter_now = Mux(cmd.restart, 0, tensor_count)
                    m.d.sync += [
                        n.eq(cmd.n), slice_len.eq(cmd.slice_len), elem_mode.eq(cmd.slice_len == 1),
                        period.eq(cmd.period), tensor_count.eq(counter_now),
                        recompute.eq(~have_threshold | cmd.force | (counter_now == 0)),
                        k_left.eq(cmd.k), count.eq(0), kept.eq(0), found.eq(0),
                        bit.eq(cmd_bit), high.eq(~(cmd_bit - 1)),
                        addr.eq(0), pos.eq(0), acc.eq(0),
                    ]  # fmt: skip
                    m.next = "LOAD"

            with m.State("LOAD"):
                m.d.comb += [
                    src_valid.eq(self.i_data.valid),
                    src_code.eq(self.i_data.payload),
                    src_end.eq(at_slice_end),
                    wr.addr.eq(addr),
                    wr.data.eq(self.i_data.payload),
                    wr.en.eq(self.i_data.valid),
                ]
                with m.If(self.i_data.valid):
                    m.d.sync += [addr.eq(addr + 1), pos.eq(Mux(at_slice_end, 0, pos + 1))]
                    with m.If(at_last):
                        restart_sequencer()
                        with m.If(recompute):
                            m.next = "DECIDE"
                        with m.Else():
                            m.next = "EMIT"

            with m.State("DECIDE"):
                m.d.sync += [
                    found.eq(Mux(take, candidate, found)),
                    k_left.eq(Mux(take, k_left, k_left - count)),
                    count.eq(0),
                    bit.eq(bit >> 1),
                    high.eq((high >> 1) | Const(1 << (s - 1), s)),
                ]
                restart_sequencer()
                with m.If(bit[0]):
                    m.d.sync += [threshold.eq(Mux(take, candidate, found)), have_threshold.eq(1)]
                    m.next = "EMIT"
                with m.Else():
                    m.next = "PASS"

            with m.State("PASS"):
                m.d.comb += [
                    rd.addr.eq(addr),
                    rd.en.eq(1),
                    src_valid.eq(s1_valid),
                    src_code.eq(rd.data),
                    src_end.eq(s1_end),
                ]
                m.d.sync += [s1_valid.eq(~done), s1_emit.eq(0), s1_end.eq(at_slice_end), s1_last.eq(at_last)]
                with m.If(~done):
                    m.d.sync += [addr.eq(addr + 1), pos.eq(Mux(at_slice_end, 0, pos + 1)), done.eq(at_last)]
                with m.If(s1_valid & s1_last):
                    m.next = "DECIDE"

            with m.State("EMIT"):
                m.d.comb += [
                    rd.addr.eq(addr),
                    rd.en.eq(advance),
                    # Phase-A codes only sum the slice score; they never wait on o_data.
                    src_valid.eq(s1_valid & ~s1_emit),
                    src_code.eq(rd.data),
                    src_end.eq(s1_end),
                ]
                with m.If(advance):
                    m.d.sync += [
                        s1_valid.eq(~done), s1_emit.eq(phase_b), s1_end.eq(at_slice_end),
                        s1_last.eq(phase_b & at_last),
                    ]
                    with m.If(~done):
                        with m.If(~at_slice_end):
                            m.d.sync += [addr.eq(addr + 1), pos.eq(pos + 1)]
                        with m.Elif(~phase_b):
                            m.d.sync += [addr.eq(base), pos.eq(0), phase_b.eq(1)]
                        with m.Else():
                            m.d.sync += [addr.eq(addr + 1), base.eq(addr + 1), pos.eq(0), phase_b.eq(elem_mode),
                                         done.eq(at_last)]
                with m.If(self.o_data.valid & self.o_data.ready):
                    m.d.sync += kept.eq(kept + self.o_data.payload.keep)
                    with m.If(s1_last):
                        m.next = "STATUS"

            with m.State("STATUS"):
                with m.If(self.o_status.ready):
                    m.d.sync += tensor_count.eq(Mux(tensor_count + 1 >= period, 0, tensor_count + 1))
                    m.next = "IDLE"

        # Port outputs as plain continuous assignments, outside the FSM's case statements: an
        # `always @*` block whose inputs keep their initial values (the state register stays IDLE
        # through reset) is never evaluated by Icarus, and i_cmd.ready would read X.
        m.d.comb += [
            self.i_cmd.ready.eq(fsm.ongoing("IDLE")),
            self.i_data.ready.eq(fsm.ongoing("LOAD")),
            self.o_data.valid.eq(fsm.ongoing("EMIT") & s1_valid & s1_emit),
            self.o_data.payload.value.eq(Mux(keep, rd.data, 0)),
            self.o_data.payload.keep.eq(keep),
            self.o_data.payload.last.eq(s1_last),
            self.o_status.valid.eq(fsm.ongoing("STATUS")),
            self.o_status.payload.threshold.eq(threshold),
            self.o_status.payload.recomputed.eq(recompute),
            self.o_status.payload.kept.eq(kept),
        ]
        return m
