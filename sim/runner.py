"""Build generated Verilog and run cocotb test modules on Icarus or Verilator.

One build per (design, simulator) in its own directory; any number of test runs against it, each
in its own directory, so parallel pytest workers never share state. Failures raise
:class:`CosimFailure` with the failing test names and the seed, never ``SystemExit``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cocotb_tools.runner import get_results, get_runner

from hw.generate import GeneratedDesign
from sim import toolchain

__all__ = ["SIMULATORS", "CosimFailure", "CosimRun", "build", "build_sources", "run_cocotb", "run_cocotb_top"]

SIMULATORS = ("icarus", "verilator")

# Amaranth emits no `timescale`; Icarus would default to 1 s and reject a 10 ns clock.
_TIMESCALE = ("1ns", "1ps")

# Amaranth's Verilog widens and truncates implicitly; the lint step (sim.lint) judges warnings,
# the simulation build must not stop on them.
_VERILATOR_BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style")


class CosimFailure(AssertionError):
    """A cocotb run failed: the message names the design, simulator, seed and failing tests."""


@dataclass(frozen=True)
class CosimRun:
    """Where one cocotb run left its results."""

    results_xml: Path
    record_dir: Path
    tests: int


def build(design: GeneratedDesign, sim: str, build_dir: Path, *, unit: str | None = None, waves: bool = False,
          extra_sources: Sequence[Path] = (), extra_roots: Sequence[str] = ()):
    """Compile ``design``'s top (or one generated ``unit``) for ``sim``; returns the cocotb runner.

    ``extra_sources`` are compiled with it; ``extra_roots`` name modules among them that Icarus
    elaborates as further roots (``-s``; e.g. :mod:`sim.wave_window`)."""
    return build_sources([*design.sources_of(unit), *extra_sources], design.config.module_name(unit), sim,
                         build_dir, waves=waves, extra_roots=extra_roots)


def build_sources(sources: Sequence[Path], toplevel: str, sim: str, build_dir: Path, *, waves: bool = False,
                  extra_roots: Sequence[str] = ()):
    """Compile the Verilog module ``toplevel`` (defined by ``sources``) for ``sim``; returns the
    cocotb runner. The same settings as :func:`build`, for Verilog that is not a generated design."""
    if extra_roots and sim != "icarus":
        raise ValueError(f"extra root modules need Icarus, not {sim!r}")
    if sim not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    toolchain.activate()
    build_dir = Path(build_dir).resolve()
    runner = get_runner(sim)
    runner.build(
        sources=[Path(path).resolve() for path in sources],
        hdl_toplevel=toplevel,
        build_dir=build_dir,
        timescale=_TIMESCALE,
        build_args=(list(_VERILATOR_BUILD_ARGS) if sim == "verilator"
                    else [arg for root in extra_roots for arg in ("-s", root)]),
        waves=waves,
        always=True,
        log_file=build_dir / "build.log",
    )
    return runner


def run_cocotb(
    runner,
    design: GeneratedDesign,
    *,
    test_module: str,
    test_dir: Path,
    seed: int,
    testcase: str | None = None,
    unit: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    waves: bool = False,
    plusargs: Sequence[str] = (),
) -> CosimRun:
    """Run the cocotb tests of ``test_module`` on a built ``runner``; raise on any failure."""
    env = {"STAG_DESIGN_DIR": str(design.directory.resolve()), **(extra_env or {})}
    return run_cocotb_top(runner, design.config.module_name(unit), test_module=test_module, test_dir=test_dir,
                          seed=seed, testcase=testcase, extra_env=env, waves=waves, plusargs=plusargs)


def run_cocotb_top(
    runner,
    toplevel: str,
    *,
    test_module: str,
    test_dir: Path,
    seed: int,
    testcase: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    waves: bool = False,
    plusargs: Sequence[str] = (),
) -> CosimRun:
    """Run the cocotb tests of ``test_module`` on the module ``toplevel`` built by ``runner``
    (:func:`build_sources`); raise on any failure."""
    test_dir = Path(test_dir).resolve()  # the runner joins relative result paths onto test_dir
    test_dir.mkdir(parents=True, exist_ok=True)
    record_dir = test_dir / "records"
    record_dir.mkdir(exist_ok=True)
    env = {
        "STAG_SEED": str(seed),
        "STAG_RECORD_DIR": str(record_dir),
        # Import our packages from the simulator's embedded Python.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                    os.environ.get("PYTHONPATH", "")])),
        **(extra_env or {}),
    }
    results_xml = test_dir / "results.xml"
    where = f"{toplevel} on {runner.__class__.__name__.lower()} (STAG_SEED={seed})"
    try:
        runner.test(
            test_module=test_module,
            hdl_toplevel=toplevel,
            testcase=testcase,
            seed=seed,
            extra_env=env,
            test_dir=test_dir,
            results_xml=str(results_xml),
            waves=waves,
            plusargs=list(plusargs),
            log_file=test_dir / "sim.log",
        )
    except SystemExit as exc:
        raise CosimFailure(f"{test_module} failed on {where}: {_failures(results_xml)}; "
                           f"log: {test_dir / 'sim.log'}") from exc
    try:
        tests, failed = get_results(results_xml)
    except RuntimeError as exc:  # no results file: the simulator died
        raise CosimFailure(f"{test_module} did not finish on {where}: {exc}; "
                           f"log: {test_dir / 'sim.log'}") from None
    if failed:
        raise CosimFailure(f"{test_module}: {failed} of {tests} tests failed on {where}: "
                           f"{_failures(results_xml)}; log: {test_dir / 'sim.log'}")
    if tests == 0:
        raise CosimFailure(f"{test_module} ran no test on {where}")
    return CosimRun(results_xml=results_xml, record_dir=record_dir, tests=tests)


def _failures(results_xml: Path) -> str:
    """Names and messages of the failed tests in a cocotb results file."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(results_xml).getroot()
    except (OSError, ET.ParseError):
        return "no results file (the simulator did not finish)"
    failed = []
    for case in root.iter("testcase"):
        for failure in list(case.iter("failure")) + list(case.iter("error")):
            message = (failure.get("message") or failure.text or "").strip().splitlines()
            failed.append(f"{case.get('name')}: {message[0] if message else 'failed'}")
    return "; ".join(failed) or "see log"
