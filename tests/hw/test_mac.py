# amaranth: UnusedElaboratable=no
"""The pipelined multiplier: Amaranth-simulator test of the generic target against Python products,
Icarus cosimulation of both targets (the ECP5 one through the behavioural MULT18X18D model) against
the same expected products cycle by cycle, and Verilator lint of the generic target."""

from __future__ import annotations

import random
import re
import shutil
import subprocess

import pytest
from amaranth import ClockDomain, Elaboratable, Module
from amaranth.back import verilog
from amaranth.sim import Simulator

from hw.mac import MULT18X18D_MODEL, PipelinedMultiplier
from sim import toolchain
from sim.lint import LINT_WAIVERS

SEEDS = (1, 2)
WIDTHS = ((8, 8), (18, 18), (5, 13), (1, 18))


def operand(rng: random.Random, bits: int) -> int:
    """A random signed ``bits``-bit value, the extremes (and -1, 0, 1) often."""
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if rng.random() < 0.3:
        return rng.choice([v for v in (low, high, -1, 0, 1) if low <= v <= high])
    return rng.randint(low, high)


def stimulus(rng: random.Random, a_bits: int, b_bits: int, cycles: int) -> list[tuple[int, int, int]]:
    """(a, b, en) per cycle: en random (70 % high) but high for the last 3 cycles' flush."""
    return [(operand(rng, a_bits), operand(rng, b_bits), int(rng.random() < 0.7 or i >= cycles - 3))
            for i in range(cycles)]


def expected_outputs(stim: list[tuple[int, int, int]]) -> list[int]:
    """``product`` during each cycle (before that cycle's edge): a 3-register pipeline on ``en``,
    every register starting at zero."""
    a_reg = b_reg = pipe = out = 0
    outputs = []
    for a, b, en in stim:
        outputs.append(out)
        if en:
            out, pipe, a_reg, b_reg = pipe, a_reg * b_reg, a, b
    return outputs


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("a_bits", "b_bits"), WIDTHS)
def test_generic_matches_python_products_with_random_enable(a_bits, b_bits, seed):
    print(f"seed={seed} a_bits={a_bits} b_bits={b_bits}")
    rng = random.Random(seed * 1000 + a_bits * 37 + b_bits)
    stim = stimulus(rng, a_bits, b_bits, 400)
    expected = expected_outputs(stim)
    dut = PipelinedMultiplier(a_bits=a_bits, b_bits=b_bits, target="generic")
    seen: list[int] = []

    async def bench(ctx):
        for a, b, en in stim:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            seen.append(ctx.get(dut.product))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    mismatches = [(i, s, e) for i, (s, e) in enumerate(zip(seen, expected, strict=True)) if s != e]
    assert not mismatches, f"seed {seed}: first mismatches (cycle, got, expected) {mismatches[:5]}"


@pytest.mark.parametrize("seed", SEEDS)
def test_latency_is_three_cycles_with_enable_high(seed):
    print(f"seed={seed}")
    rng = random.Random(seed)
    dut = PipelinedMultiplier(a_bits=8, b_bits=8, target="generic")
    pairs = [(operand(rng, 8), operand(rng, 8)) for _ in range(50)]

    async def bench(ctx):
        ctx.set(dut.en, 1)
        outputs = []
        for a, b in [*pairs, (0, 0), (0, 0), (0, 0)]:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            outputs.append(ctx.get(dut.product))
            await ctx.tick()
        # Operands applied during cycle t give their product during cycle t + 3.
        assert outputs[3:] == [a * b for a, b in pairs]
        assert outputs[:3] == [0, 0, 0]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_enable_low_holds_every_stage():
    dut = PipelinedMultiplier(a_bits=8, b_bits=8, target="generic")

    async def bench(ctx):
        ctx.set(dut.en, 1)
        for a, b in ((3, 4), (-5, 6), (7, -8)):
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.tick()
        ctx.set(dut.en, 0)
        ctx.set(dut.a, 100)
        ctx.set(dut.b, 100)
        for _ in range(5):  # stalled: nothing moves, the new operands are not sampled
            await ctx.tick()
            assert ctx.get(dut.product) == 12
        ctx.set(dut.en, 1)
        outputs = []
        for _ in range(3):
            await ctx.tick()
            outputs.append(ctx.get(dut.product))
        assert outputs == [-30, -56, 10000]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"a_bits": 0, "b_bits": 8}, r"a_bits must be an integer in 1\.\.18 .*not 0"),
    ({"a_bits": 8, "b_bits": 19}, r"b_bits must be an integer in 1\.\.18 .*not 19"),
    ({"a_bits": True, "b_bits": 8}, r"a_bits must be an integer in 1\.\.18 .*not True"),
    ({"a_bits": 8, "b_bits": 8, "target": "ice40"}, r"target must be one of 'ecp5', 'generic', not 'ice40'"),
])
def test_invalid_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PipelinedMultiplier(**kwargs)


def _tb_source(a_bits: int, b_bits: int, cycles: int) -> str:
    width = 1 + 2 * (a_bits + b_bits)
    p_bits = a_bits + b_bits
    return f"""`timescale 1ns/1ps
module tb;
    reg clk = 1'b0;
    reg rst = 1'b0;
    reg en;
    reg [{a_bits - 1}:0] a;
    reg [{b_bits - 1}:0] b;
    reg [{p_bits - 1}:0] expected;
    wire [{p_bits - 1}:0] p_generic;
    wire [{p_bits - 1}:0] p_ecp5;
    reg [{width - 1}:0] vectors [0:{cycles - 1}];
    integer i;
    integer errors = 0;
    mac_generic generic (.clk(clk), .rst(rst), .en(en), .a(a), .b(b), .product(p_generic));
    mac_ecp5 ecp5 (.clk(clk), .rst(rst), .en(en), .a(a), .b(b), .product(p_ecp5));
    initial begin
        $readmemh("vectors.hex", vectors);
        for (i = 0; i < {cycles}; i = i + 1) begin
            {{en, a, b, expected}} = vectors[i];
            #1;
            if (p_generic !== expected || p_ecp5 !== expected) begin
                if (errors < 10)
                    $display("MISMATCH cycle %0d: generic %h ecp5 %h expected %h", i, p_generic, p_ecp5, expected);
                errors = errors + 1;
            end
            #4 clk = 1'b1;
            #5 clk = 1'b0;
        end
        if (errors == 0) $display("PASS %0d cycles", {cycles});
        else $display("FAIL %0d mismatching cycles", errors);
        $finish;
    end
endmodule
"""


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("a_bits", "b_bits"), WIDTHS)
def test_both_targets_agree_on_icarus(tmp_path, a_bits, b_bits, seed):
    """The ECP5 target (MULT18X18D with the behavioural model) and the generic target give the
    expected product on every cycle of the same random stream, ``en`` toggling."""
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed (make setup installs it)")
    print(f"seed={seed} a_bits={a_bits} b_bits={b_bits}")
    rng = random.Random(seed * 7919 + a_bits * 37 + b_bits)
    cycles = 600
    stim = stimulus(rng, a_bits, b_bits, cycles)
    expected = expected_outputs(stim)
    p_bits = a_bits + b_bits
    lines = []
    for (a, b, en), p in zip(stim, expected, strict=True):
        word = (((en << a_bits | a & ((1 << a_bits) - 1)) << b_bits | b & ((1 << b_bits) - 1)) << p_bits
                | p & ((1 << p_bits) - 1))
        lines.append(f"{word:x}")
    (tmp_path / "vectors.hex").write_text("\n".join(lines) + "\n")
    for target in ("generic", "ecp5"):
        dut = PipelinedMultiplier(a_bits=a_bits, b_bits=b_bits, target=target)
        (tmp_path / f"mac_{target}.v").write_text(verilog.convert(dut, name=f"mac_{target}", emit_src=False))
    (tmp_path / "tb.v").write_text(_tb_source(a_bits, b_bits, cycles))
    subprocess.run(["iverilog", "-g2005", "-o", "tb.vvp", "-s", "tb", "tb.v", "mac_generic.v", "mac_ecp5.v",
                    str(MULT18X18D_MODEL)], cwd=tmp_path, check=True, capture_output=True, text=True)
    result = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, check=True, capture_output=True, text=True)
    assert f"PASS {cycles} cycles" in result.stdout, f"seed {seed}:\n{result.stdout}"


def test_ecp5_target_instantiates_a_registered_dsp():
    text = verilog.convert(PipelinedMultiplier(a_bits=8, b_bits=8, target="ecp5"), name="mac_ecp5",
                           emit_src=False)
    assert "MULT18X18D" in text
    for parameter in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_PIPELINE_CLK", "REG_OUTPUT_CLK"):
        assert f'.{parameter}("CLK0")' in text
    assert ".CE0(en)" in text and ".RST0(1'h0)" in text
    assert ".SIGNEDA(1'h1)" in text and ".SIGNEDB(1'h1)" in text
    # Sign extension to 18 bits: the operands' top bit drives the DSP's upper inputs.
    assert ".A17(a[7])" in text and ".B17(b[7])" in text


class _ResetLess(Elaboratable):
    """The multiplier in a clock domain without reset, as it is meant: its registers have no reset
    (neither has the DSP, RST0 = 0), so a standalone conversion's ``rst`` port would be unused."""

    def __init__(self, mac: PipelinedMultiplier) -> None:
        self.mac = mac
        self.domain = ClockDomain("sync", reset_less=True)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.domain
        m.submodules.mac = self.mac
        return m


@pytest.mark.parametrize(("a_bits", "b_bits"), [(8, 8), (18, 18)])
def test_generic_target_is_verilator_lint_clean(tmp_path, a_bits, b_bits):
    verilator = toolchain.which("verilator")
    if verilator is None:
        pytest.skip("verilator not installed (make setup installs the PyPI wheel)")
    mac = PipelinedMultiplier(a_bits=a_bits, b_bits=b_bits, target="generic")
    top = _ResetLess(mac)
    text = verilog.convert(top, name="mac_generic", emit_src=False,
                           ports=[top.domain.clk, mac.a, mac.b, mac.en, mac.product])
    (tmp_path / "mac_generic.v").write_text(text)
    result = subprocess.run([verilator, "--lint-only", "-Wall", "-Wno-fatal", "mac_generic.v"], cwd=tmp_path,
                            capture_output=True, text=True, env=toolchain.tool_environment(), check=False)
    # The project's documented waivers (sim.lint), never for a port of the top module (the first
    # module in the file; the submodule's copies of its ports are ordinary alias wires).
    top_end = text.splitlines().index("endmodule") + 1
    ports = {"clk", "a", "b", "en", "product"}
    unwaived = []
    for line in result.stderr.splitlines():
        match = re.match(r"^%Warning-([A-Z0-9_]+): [^:]+:(\d+):\d+: (.*)$", line)
        if match is None:
            if line.startswith("%"):
                unwaived.append(line)
            continue
        code, number, message = match[1], int(match[2]), match[3]
        names = set(re.findall(r"'([^']*)'", message))
        protected = number <= top_end and code in ("UNUSEDSIGNAL", "UNDRIVEN") and names & ports
        if protected or not any(w.code == code and re.search(w.pattern, message) for w in LINT_WAIVERS):
            unwaived.append(line)
    assert result.returncode == 0 and not unwaived, "\n".join(unwaived or [result.stderr])
