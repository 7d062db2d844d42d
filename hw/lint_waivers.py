"""The waivers of the generated Verilog's lint (``verilator --lint-only -Wall``), with their reasons.

Amaranth's Verilog has warnings that are harmless by construction (alias wires kept for waveforms,
exact-width arithmetic relying on Verilog's extension rules, ...). Each waiver here names one such
warning and why it is harmless. ``sim.lint`` matches Verilator's messages against them (regular
expressions; never on a top-level port), and :func:`verilator_config` writes them as a Verilator
configuration file for flows that run Verilator themselves (the FuseSoC cores of ``hw.fusesoc``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LINT_WAIVERS", "Waiver", "verilator_config"]


@dataclass(frozen=True)
class Waiver:
    """Warnings of ``code`` whose message matches ``pattern`` (a regex) are accepted, for ``reason``.

    ``verilator_matches`` says the same for a Verilator configuration file (``lint_off -match``
    takes wildcards, not regular expressions): the messages to waive as ``*``/``?`` patterns, or
    empty to waive the whole rule. They can only be as strict as wildcards allow (see
    :func:`verilator_config`).
    """

    code: str
    pattern: str
    reason: str
    verilator_matches: tuple[str, ...] = ()


LINT_WAIVERS: tuple[Waiver, ...] = (
    Waiver("PROCASSINIT", r".*",
           "Amaranth gives every register a Verilog initial value equal to its reset value, so the "
           "FPGA power-up state matches reset; the register is also assigned in its always block."),
    Waiver("UNUSEDSIGNAL", r"Bits of signal are not used: '\$\d+'",
           "carry-out bits of Amaranth temporaries for arithmetic that wraps on purpose (counters, "
           "the accumulator) are dropped by the truncating assignment.",
           ("Bits of signal are not used: '$*",)),
    Waiver("UNUSEDSIGNAL", r"Signal is not used: '[A-Za-z0-9_$]+\.[A-Za-z0-9_.\[\]]+'",
           "Amaranth emits a named alias wire for every field of a struct-typed signal "
           "(e.g. 'i_stream__payload.a') for waveform readability; logic uses the flat vector.",
           ("Signal is not used: '*.*'",)),
    Waiver("UNUSEDSIGNAL", r"Signal is not used: '\$\d+'",
           "an Amaranth temporary ($N) whose value is read only through another net it was merged "
           "into, e.g. the unused counters of the PE lanes inside the core (the core counts MACs itself).",
           ("Signal is not used: '$*'",)),
    Waiver("UNUSEDSIGNAL", r"Signal is not used: '[A-Za-z_][A-Za-z0-9_]*(\$\d+)?(\[\d+\])?'",
           "Amaranth keeps every named internal signal (and each element of an array-typed one, and "
           "a submodule's copy of its ports, suffixed $N, and the elements of such a copy) as an "
           "alias wire for waveform readability while logic reads the underlying net; the top "
           "module's ports are excluded from this waiver.",
           ("Signal is not used: '*'",)),
    Waiver("UNUSEDSIGNAL", r"(Bits of signal are|Signal is) not used: '(dsp_p'\[35:\d+\]|dsp_signedp')",
           "hw.mac connects every output of the MULT18X18D primitive; only the low a_bits + b_bits "
           "bits of its 36-bit product carry the (sign-extended) product, the rest and SIGNEDP are "
           "not needed.",
           ("Bits of signal are not used: 'dsp_p'*", "Signal is not used: 'dsp_signedp'")),
    Waiver("WIDTHEXPAND", r".*",
           "Amaranth computes exact result widths and relies on Verilog's implicit extension of the "
           "narrower operand (zero for unsigned, sign for signed), which is Amaranth's own semantics; "
           "the arithmetic is verified bit-exactly in cosimulation."),
    Waiver("WIDTHTRUNC", r".*",
           "an Amaranth .eq() truncates a wider value to the target's width on purpose (wrapping "
           "counters and accumulators, indices into a smaller range, the boolean of a multi-bit "
           "test); every such value is verified bit-exactly in cosimulation."),
    Waiver("CASEINCOMPLETE", r".*",
           "Amaranth emits If/Switch as a casez preceded by the default assignment of every target, "
           "so a value no case covers keeps that default: the logic is complete."),
    Waiver("DECLFILENAME", r"does not match MODULE name: '[A-Za-z0-9_]+\.",
           "a design file holds its top module followed by the submodules Amaranth emits for it "
           "(named '<top>.<path>'); the file is named after the top.",
           ("*does not match MODULE name: '*.*",)),
)


def verilator_config() -> str:
    """:data:`LINT_WAIVERS` as a Verilator configuration file (``.vlt``, passed beside the sources).

    Wildcards cannot leave out a module's ports the way ``sim.lint`` does, so an unused top-level
    port is not reported through this file; ``stag generate`` lints every module with ``sim.lint``
    in the tests, which does report it.
    """
    lines = ["`verilator_config", "// Lint waivers of STAG's generated Verilog (hw/lint_waivers.py)."]
    for waiver in LINT_WAIVERS:
        lines.append(f"// {waiver.code}: {waiver.reason}")
        if not waiver.verilator_matches:
            lines.append(f"lint_off -rule {waiver.code}")
        for match in waiver.verilator_matches:
            lines.append(f'lint_off -rule {waiver.code} -file "*" -match "{match}"')
    return "\n".join(lines) + "\n"
