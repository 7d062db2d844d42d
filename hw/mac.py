"""A signed multiplier with a fixed three-register pipeline, mapped onto an ECP5 DSP when asked.

Why the registers: Yosys does not pack fabric registers into ECP5 DSP blocks by itself. A plain
``a * b`` becomes a MULT18X18D in combinational mode (about 3.9 ns) whose operand and product
registers land in the fabric, often far from the DSP; an 8x8 int8 MAC array routed at 87 MHz
unregistered and 102 MHz with fabric registers on an LFE5U-85F, but at about 208 MHz with the
DSP's own input, pipeline and output registers enabled (measured with the open flow; see
docs/design_study.md). So the ``"ecp5"`` target instantiates the primitive directly with its
registers switched on, and the ``"generic"`` target is the portable Amaranth equivalent with the
same three registers, for simulation and other technologies.

The ECP5 primitive has only a blackbox in Yosys; ``hw/sim_models/MULT18X18D.v`` is a behavioural
model of the configuration used here, so the ``"ecp5"`` Verilog simulates on Icarus or Verilator.
"""

from __future__ import annotations

from pathlib import Path

from amaranth import ClockSignal, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MULT18X18D_MODEL", "TARGETS", "PipelinedMultiplier"]

#: Implementation targets of :class:`PipelinedMultiplier`.
TARGETS = ("ecp5", "generic")

#: Behavioural simulation model of the ECP5 MULT18X18D (REG_* = CLK0 configuration only).
MULT18X18D_MODEL = Path(__file__).resolve().parent / "sim_models" / "MULT18X18D.v"

# Operand width of the MULT18X18D.
_DSP_BITS = 18


class PipelinedMultiplier(wiring.Component):
    """Signed ``a * b`` with a fixed latency of three clock cycles and one clock enable.

    Pipeline: input register (``a``, ``b``), pipeline register (the product), output register.
    On an edge where ``en`` is 1 all three stages advance together; where ``en`` is 0 all three
    hold. The product of the operands sampled on an enabled edge is on ``product`` after the
    third enabled edge counting that one (:attr:`LATENCY`; with ``en`` held high, operands
    applied during cycle *t* give their product during cycle *t + 3*). Throughput: one product
    per enabled cycle. The registers have no reset (like the DSP with ``RST0`` tied low): they
    start at zero and are flushed by three enabled cycles.

    For ``target="ecp5"`` this is one ``MULT18X18D`` with ``REG_INPUTA_CLK``, ``REG_INPUTB_CLK``,
    ``REG_PIPELINE_CLK`` and ``REG_OUTPUT_CLK`` set to ``"CLK0"`` (all on ``CE0`` = ``en``,
    ``RST0`` = 0), signed operands sign-extended to 18 bits, and the product read from
    ``P[0:a_bits + b_bits]``. The DSP's own registers are what make it fast: Yosys would not
    move fabric registers into the DSP, and the combinational DSP limits the design to about
    100 MHz (see the module docstring). For ``target="generic"`` it is plain Amaranth (``*``)
    with the same three registers.

    Parameters
    ----------
    a_bits : int
        Width of the signed operand ``a``, 1..18 (one DSP operand).
    b_bits : int
        Width of the signed operand ``b``, 1..18.
    target : str
        ``"ecp5"`` (MULT18X18D instance) or ``"generic"`` (portable Amaranth).

    Members
    -------
    a : ``In(signed(a_bits))``
        First operand, two's complement.
    b : ``In(signed(b_bits))``
        Second operand, two's complement.
    en : ``In(1)``
        Clock enable of all three pipeline stages.
    product : ``Out(signed(a_bits + b_bits))``
        ``a * b``, exact (the full-width signed product), :attr:`LATENCY` enabled edges later.

    Raises
    ------
    ValueError
        If a width is not an integer in 1..18 or the target is not one of :data:`TARGETS`.
    """

    #: Enabled clock edges from sampling the operands to their product on ``product``.
    LATENCY = 3

    def __init__(self, *, a_bits: int, b_bits: int, target: str = "generic") -> None:
        for field, value in (("a_bits", a_bits), ("b_bits", b_bits)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _DSP_BITS:
                raise ValueError(f"PipelinedMultiplier {field} must be an integer in 1..{_DSP_BITS} "
                                 f"(one MULT18X18D operand), not {value!r}")
        if target not in TARGETS:
            raise ValueError(f"PipelinedMultiplier target must be one of {', '.join(map(repr, TARGETS))}, "
                             f"not {target!r}")
        self._a_bits = a_bits
        self._b_bits = b_bits
        self._target = target
        super().__init__({
            "a": In(signed(a_bits)),
            "b": In(signed(b_bits)),
            "en": In(1),
            "product": Out(signed(a_bits + b_bits)),
        })

    @property
    def a_bits(self) -> int:
        return self._a_bits

    @property
    def b_bits(self) -> int:
        return self._b_bits

    @property
    def target(self) -> str:
        return self._target

    def elaborate(self, platform):
        m = Module()
        if self._target == "ecp5":
            self._elaborate_ecp5(m)
        else:
            self._elaborate_generic(m)
        return m

    def _elaborate_generic(self, m: Module) -> None:
        # reset_less: the DSP's registers are not reset either (RST0 = 0), so both targets behave
        # the same cycle for cycle, reset or not.
        a_reg = Signal(signed(self._a_bits), reset_less=True)
        b_reg = Signal(signed(self._b_bits), reset_less=True)
        pipe = Signal(signed(self._a_bits + self._b_bits), reset_less=True)
        out_reg = Signal(signed(self._a_bits + self._b_bits), reset_less=True)
        with m.If(self.en):
            m.d.sync += [
                a_reg.eq(self.a),
                b_reg.eq(self.b),
                pipe.eq(a_reg * b_reg),
                out_reg.eq(pipe),
            ]
        m.d.comb += self.product.eq(out_reg)

    def _elaborate_ecp5(self, m: Module) -> None:
        width = self._a_bits + self._b_bits
        a_ext = Signal(signed(_DSP_BITS))
        b_ext = Signal(signed(_DSP_BITS))
        # The whole 36-bit product port and the sign flag are connected (every pin of the
        # primitive is, so that no tool has to guess a default); the product is its low bits.
        dsp_p = Signal(2 * _DSP_BITS)
        dsp_signedp = Signal()
        m.d.comb += [a_ext.eq(self.a), b_ext.eq(self.b), self.product.eq(dsp_p[:width])]  # .eq sign-extends
        ports = {}
        for i in range(_DSP_BITS):
            ports[f"i_A{i}"] = a_ext[i]
            ports[f"i_B{i}"] = b_ext[i]
            ports[f"i_C{i}"] = 0
        for i in range(2 * _DSP_BITS):
            ports[f"o_P{i}"] = dsp_p[i]
        for n in (1, 2, 3):   # the unused clock, enable and reset inputs, tied low
            ports[f"i_CLK{n}"] = 0
            ports[f"i_CE{n}"] = 0
            ports[f"i_RST{n}"] = 0
        m.submodules.dsp = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0",
            p_REG_INPUTB_CLK="CLK0",
            p_REG_PIPELINE_CLK="CLK0",
            p_REG_OUTPUT_CLK="CLK0",
            i_SIGNEDA=1,
            i_SIGNEDB=1,
            i_SOURCEA=0,
            i_SOURCEB=0,
            i_CLK0=ClockSignal("sync"),
            i_CE0=self.en,
            i_RST0=0,
            o_SIGNEDP=dsp_signedp,
            **ports,
        )
