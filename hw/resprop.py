"""ReSprop unit: the sparse gradient difference S = (dY - P) * 1[|dY - P| > thr] and its x2 / /2 controller.

Goli & Aamodt's ReSprop (ALGORITHMS.md section 4) reuses a stored gradient sample P of the previous
iteration and sends only the sparse difference S to the backward GEMMs. This unit streams one
layer's output-gradient codes dY through, emits S, counts nnz(S), adapts the threshold once per pass
(iteration) and stores the raw dY of one chosen sample as the next iteration's P. The bit-exact
definition is ``ref.resprop_codes.ReSpropCodes``; the float algorithm it reproduces on integer codes
is ``ref.policies.resprop.ReSpropPolicy`` with ``threshold_mode="adaptive_x2"``.

One *pass* is one layer-iteration: a command beat on ``i_cmd``, then ``n_samples * elems`` codes on
``i_dy`` in row-major ``[sample, element]`` order, giving as many codes on ``o_s`` and one beat on
``o_done``. One unit holds one layer's state (P and the threshold exponent); a host that shares it
between layers reloads the threshold with ``load_thr`` (``o_done.thr_exp`` is the value to save).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["EXP_BITS", "PERCENT_SCALE", "TARGET_BITS", "ReSpropUnit", "adapt_exponent_logic",
           "effective_threshold_logic", "resprop_command_layout", "resprop_done_layout"]

#: Width of the signed threshold exponent; it saturates at -128 and 127 (``ref.resprop_codes``).
EXP_BITS = 8
#: Width of the target non-zero percentage in hundredths of a percent (10000 = 100 %).
TARGET_BITS = 14
#: ``target`` units per 100 %.
PERCENT_SCALE = 10000


def _check_parameters(operand_bits: int, max_elems: int, max_batch: int) -> None:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(operand_bits) or not 2 <= operand_bits <= 32:
        raise ValueError(f"ReSpropUnit operand_bits must be an integer in 2..32, not {operand_bits!r}")
    if not is_int(max_elems) or not 1 <= max_elems <= 1 << 20 or max_elems & (max_elems - 1):
        raise ValueError(f"ReSpropUnit max_elems must be a power of two in 1..2**20, not {max_elems!r}")
    if not is_int(max_batch) or not 1 <= max_batch <= 65535:
        raise ValueError(f"ReSpropUnit max_batch must be an integer in 1..65535, not {max_batch!r}")


def resprop_command_layout(operand_bits: int, max_elems: int, max_batch: int) -> data.StructLayout:
    """One pass's parameters (the ``i_cmd`` payload).

    ``n_samples`` (N) and ``elems`` (E = K*P*Q of one sample) give the pass length N*E; ``sample``
    is the index j whose raw dY becomes the next P (``sample >= n_samples``: store none, keep P);
    ``dense``: S = dY and no threshold update (the policy's dense iterations, e.g. no P yet);
    ``target``: non-zero target in hundredths of a percent; ``load_thr``: first set the threshold to
    ``thr_mant * 2**thr_exp`` (otherwise ``thr_mant``/``thr_exp`` are ignored).
    """
    return data.StructLayout({
        "n_samples": unsigned(max_batch.bit_length()),
        "elems": unsigned(max_elems.bit_length()),
        "sample": unsigned(max_batch.bit_length()),
        "dense": unsigned(1),
        "target": unsigned(TARGET_BITS),
        "load_thr": unsigned(1),
        "thr_mant": unsigned(operand_bits),
        "thr_exp": signed(EXP_BITS),
    })


def _max_count(max_elems: int, max_batch: int) -> int:
    # The largest pass the command fields can express (values above max_* are legal: the P
    # address wraps), so no counter ever overflows.
    return ((1 << max_batch.bit_length()) - 1) * ((1 << max_elems.bit_length()) - 1)


def resprop_done_layout(operand_bits: int, max_elems: int, max_batch: int) -> data.StructLayout:
    """End of a pass (the ``o_done`` payload): nnz(S), the integer threshold T used, the new exponent."""
    return data.StructLayout({
        "nnz": unsigned(_max_count(max_elems, max_batch).bit_length()),
        "thr_used": unsigned(operand_bits),
        "thr_exp": signed(EXP_BITS),
    })


def effective_threshold_logic(m: Module, mant: Value, exp: Value, bits: int) -> Signal:
    """``T = min(floor(mant * 2**exp), 2**bits - 1)`` (``ref.resprop_codes.effective_threshold``),
    combinational, for an unsigned ``bits``-bit ``mant`` and a signed ``EXP_BITS``-bit ``exp``.

    Left shifts of ``bits`` or more saturate any nonzero mantissa; right shifts of ``bits`` or
    more leave 0, so both shifters are only ``bits`` positions deep.
    """
    sat = (1 << bits) - 1
    left = Signal(range(bits + 1))
    right = Signal(range(bits + 1))
    shifted_left = Signal(2 * bits)
    thr = Signal(bits)
    m.d.comb += [
        left.eq(Mux(exp >= bits, bits, Mux(exp >= 0, exp, 0))),
        right.eq(Mux(exp <= -bits, bits, Mux(exp < 0, -exp, 0))),
        shifted_left.eq(mant << left),
        thr.eq(Mux(exp >= 0, Mux(shifted_left > sat, sat, shifted_left), mant >> right)),
    ]
    return thr


def adapt_exponent_logic(exp: Value, diff: Value, dense: Value) -> Value:
    """ReSprop's x2 / /2 step (``ref.resprop_codes.adapt_exponent``) as an expression: ``exp - 1``
    if ``diff < 0``, ``exp + 1`` if ``diff > 0``, saturating at the ``EXP_BITS`` range; ``exp``
    unchanged on a dense pass or at ``diff == 0``. ``diff`` is the sign-carrying sum
    ``10000 * nnz - target * n``."""
    exp_min, exp_max = -(1 << (EXP_BITS - 1)), (1 << (EXP_BITS - 1)) - 1
    return Mux(dense | (diff == 0), exp,
               Mux(diff < 0, Mux(exp == exp_min, exp, exp - 1), Mux(exp == exp_max, exp, exp + 1)))


class ReSpropUnit(wiring.Component):
    """Streams dY codes to S codes for one ReSprop layer-iteration; keeps P and the threshold.

    Numerics (``ref.resprop_codes``): ``D = dY - P`` exactly, in ``operand_bits + 1`` signed bits
    (no saturation; the most negative code is an ordinary input). The threshold is
    ``thr_mant * 2**thr_exp``; the comparison uses ``T = min(floor(thr), 2**operand_bits - 1)``,
    computed once per pass, and keeps ``D`` where ``|D| > T`` (strict, the official tie rule).
    After a non-dense pass the exponent steps by -1 if ``10000 * nnz < target * N * E``, by +1 if
    ``>``, else stays (saturating at -128..127); the comparison accumulates ``10000*[S != 0] -
    target`` per element, so it needs no multiplier and no division.

    P storage: a ``2 * max_elems``-word memory of ``operand_bits``-bit codes, two banks (ping-pong).
    A pass reads P from one bank and writes the raw dY of sample ``sample`` into the other, so every
    sample of the pass sees the previous P; the banks swap when the ``o_done`` beat is taken, if the
    pass stored a sample. Element ``e`` of a sample uses address ``e mod max_elems``. Banks start
    zeroed; the threshold starts at ``0 * 2**0`` (load it with the first command).

    Latency and throughput: a command is taken in the IDLE state only. The first dY can transfer
    two cycles after the command. One dY per cycle; a dY transferred in cycle c is offered on
    ``o_s`` from cycle c + 2. ``o_done`` is offered from the cycle the last S is offered (it does
    not wait for that S to be taken); the next command is accepted the cycle after ``o_done`` is
    taken. With no stalls, a command taken in cycle c gives the done transfer in cycle c + n + 3
    (n = n_samples * elems) and the next command is taken in c + n + 4: n + 4 cycles per pass.
    A pass with ``n_samples * elems == 0`` emits no S and only the done beat (nnz 0, exponent kept).

    Parameters
    ----------
    operand_bits : int
        Width of the signed dY and P codes, 2..32. S has ``operand_bits + 1`` bits.
    max_elems : int
        P memory bank depth: the largest E = K*P*Q of one sample, a power of two in 1..2**20.
    max_batch : int
        Largest batch N, 1..65535 (sets the ``n_samples`` and ``sample`` widths).

    Members
    -------
    i_cmd : ``In(stream.Signature(resprop_command_layout(...)))``
        One beat per pass (see :func:`resprop_command_layout`).
    i_dy : ``In(stream.Signature(signed(operand_bits)))``
        The pass's dY codes, row-major ``[n_samples, elems]``.
    o_s : ``Out(stream.Signature(signed(operand_bits + 1)))``
        S, one code per dY, same order.
    o_done : ``Out(stream.Signature(resprop_done_layout(...)))``
        One beat per pass: ``nnz`` (non-zeros of S), ``thr_used`` (T of this pass) and ``thr_exp``
        (the threshold exponent after this pass's controller step).
    """

    def __init__(self, *, operand_bits: int, max_elems: int, max_batch: int) -> None:
        _check_parameters(operand_bits, max_elems, max_batch)
        self._operand_bits = operand_bits
        self._max_elems = max_elems
        self._max_batch = max_batch
        super().__init__({
            "i_cmd": In(stream.Signature(resprop_command_layout(operand_bits, max_elems, max_batch))),
            "i_dy": In(stream.Signature(signed(operand_bits))),
            "o_s": Out(stream.Signature(signed(operand_bits + 1))),
            "o_done": Out(stream.Signature(resprop_done_layout(operand_bits, max_elems, max_batch))),
        })

    @property
    def operand_bits(self) -> int:
        return self._operand_bits

    @property
    def max_elems(self) -> int:
        return self._max_elems

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def elaborate(self, platform):
        m = Module()
        bits = self._operand_bits
        addr_bits = (self._max_elems - 1).bit_length()
        cmd_layout = resprop_command_layout(bits, self._max_elems, self._max_batch)
        max_count = _max_count(self._max_elems, self._max_batch)

        m.submodules.p_mem = p_mem = Memory(shape=signed(bits), depth=2 * self._max_elems, init=[])
        rd = p_mem.read_port()
        wr = p_mem.write_port()

        cmd = Signal(cmd_layout)
        mant = Signal(bits)
        exp = Signal(signed(EXP_BITS))
        thr = Signal(bits)  # T of the running pass
        read_bank = Signal()
        elem = Signal(cmd_layout["elems"].shape)  # position of the next dY to accept
        smp = Signal(cmd_layout["n_samples"].shape)
        in_done = Signal()
        s1_valid = Signal()  # stage 1: a dY whose P word is on rd.data
        s1_dy = Signal(signed(bits))
        s1_last = Signal()
        nnz = Signal(range(max_count + 1))
        # sum over the pass of 10000*[S != 0] - target = 10000*nnz - target*n: its sign is the decision.
        diff_mag = ((1 << TARGET_BITS) - 1) * max_count
        diff = Signal(signed(diff_mag.bit_length() + 1))

        thr_next = effective_threshold_logic(m, mant, exp, bits)

        # Stage 1 -> output register: S and the counts.
        d = Signal(signed(bits + 1))
        s_value = Signal(signed(bits + 1))
        m.d.comb += [
            d.eq(s1_dy - rd.data),
            s_value.eq(Mux(cmd.dense, s1_dy, Mux(abs(d) > thr, d, 0))),
        ]
        advance = Signal()
        m.d.comb += advance.eq(s1_valid & (~self.o_s.valid | self.o_s.ready))
        with m.If(advance):
            m.d.sync += [
                self.o_s.payload.eq(s_value),
                self.o_s.valid.eq(1),
                nnz.eq(nnz + (s_value != 0)),
                diff.eq(diff + Mux(s_value != 0, PERCENT_SCALE, 0) - cmd.target),
            ]
        with m.Elif(self.o_s.ready):
            m.d.sync += self.o_s.valid.eq(0)

        # Input stage: accept a dY, read its P word, write it to the other bank if it is sample j.
        take = Signal()
        last_elem = Signal()
        last_smp = Signal()
        m.d.comb += [
            last_elem.eq(elem == cmd.elems - 1),
            last_smp.eq(smp == cmd.n_samples - 1),
            take.eq(self.i_dy.valid & self.i_dy.ready),
            rd.en.eq(take),
            rd.addr.eq(Mux(read_bank, self._max_elems, 0) | elem[:addr_bits]),
            wr.addr.eq(Mux(read_bank, 0, self._max_elems) | elem[:addr_bits]),
            wr.data.eq(self.i_dy.payload),
            wr.en.eq(take & (smp == cmd.sample)),
        ]
        with m.If(take):
            m.d.sync += [s1_valid.eq(1), s1_dy.eq(self.i_dy.payload), s1_last.eq(last_elem & last_smp)]
            with m.If(last_elem):
                m.d.sync += [elem.eq(0), smp.eq(smp + 1)]
                with m.If(last_smp):
                    m.d.sync += in_done.eq(1)
            with m.Else():
                m.d.sync += elem.eq(elem + 1)
        with m.Elif(advance):
            m.d.sync += s1_valid.eq(0)

        exp_next = Signal(signed(EXP_BITS))
        m.d.comb += [
            exp_next.eq(adapt_exponent_logic(exp, diff, cmd.dense)),
            self.o_done.payload.nnz.eq(nnz),
            self.o_done.payload.thr_used.eq(thr),
            self.o_done.payload.thr_exp.eq(exp_next),
        ]

        # Every combinational value here is an unconditional assignment (a continuous `assign`):
        # Icarus never evaluates an `always @*` block whose inputs keep their initial values (the
        # state stays IDLE through reset), so an FSM-scoped comb ready would read X
        # (docs/architecture.md, "An Icarus trap we hit").
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.i_cmd.valid):
                    m.d.sync += cmd.eq(self.i_cmd.payload)
                    with m.If(self.i_cmd.payload.load_thr):
                        m.d.sync += [mant.eq(self.i_cmd.payload.thr_mant), exp.eq(self.i_cmd.payload.thr_exp)]
                    m.next = "PREP"
            with m.State("PREP"):
                m.d.sync += [thr.eq(thr_next), elem.eq(0), smp.eq(0), in_done.eq(0), nnz.eq(0), diff.eq(0)]
                with m.If((cmd.n_samples == 0) | (cmd.elems == 0)):
                    m.next = "DONE"
                with m.Else():
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(advance & s1_last):
                    m.next = "DONE"
            with m.State("DONE"):
                with m.If(self.o_done.ready):
                    m.d.sync += exp.eq(exp_next)
                    with m.If((cmd.sample < cmd.n_samples) & (cmd.elems != 0)):
                        m.d.sync += read_bank.eq(~read_bank)
                    m.next = "IDLE"
        m.d.comb += [
            self.i_cmd.ready.eq(fsm.ongoing("IDLE")),
            self.i_dy.ready.eq(fsm.ongoing("RUN") & ~in_done & (~s1_valid | advance)),
            self.o_done.valid.eq(fsm.ongoing("DONE")),
        ]
        return m
