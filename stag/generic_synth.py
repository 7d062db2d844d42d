"""Technology-independent synthesis of generated Verilog, for ASIC flows and other FPGAs.

Yosys' generic ``synth`` maps a design onto its internal gate library (AND, NAND, OR, NOR, XOR,
XNOR, AND-NOT, OR-NOT, MUX, AOI/OAI, flip-flops) with no vendor cell, the view an ASIC flow starts
from. :func:`synthesize_generic` reports, for every module of the hierarchy and for the whole
design: the gate counts by type, the memory bits before mapping (an ASIC flow would put SRAM macros
there; this netlist holds them as flip-flops), an area estimate in NAND2 equivalents, and the
longest combinational path in gates (Yosys ``ltp -noff``, registers and ports as its ends).

**Vendor primitives.** Verilog that instantiates a cell no source defines (``MULT18X18D``,
``DP16KD``, ``SB_MAC16``, ``DSP48E1``, ...) is FPGA-specific: it is rejected with the primitives'
names before synthesis, so a netlist said to be generic never holds one.

**The area estimate** weighs each gate by the area of its counterpart in the NanGate 45 nm Open
Cell Library (X1 drive) relative to NAND2_X1 (0.798 um^2): INV 0.67, NAND2/NOR2 1, AND2/OR2 and
the AND-NOT/OR-NOT gates 1.33, AOI21/OAI21 1.33, AOI22/OAI22 1.67, XOR2/XNOR2 2, MUX2 2.33, DFF
5.67; a flip-flop with an enable adds a MUX2, one with a synchronous reset an AND2. It is an
estimate of logic area before placement, not a sign-off figure (no liberty file of a real PDK is
available from PyPI, ../shared/TOOLCHAIN.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from stag.synth import _yosys_attempt

__all__ = ["GATE_AREA", "GenericModule", "GenericReport", "VendorPrimitiveError", "gate_area", "synthesize_generic"]

#: Area of each Yosys gate in NAND2 equivalents (see the module docstring).
GATE_AREA: dict[str, float] = {
    "$_BUF_": 0.0, "$_NOT_": 0.67, "$_NAND_": 1.0, "$_NOR_": 1.0, "$_AND_": 1.33, "$_OR_": 1.33,
    "$_ANDNOT_": 1.33, "$_ORNOT_": 1.33, "$_XOR_": 2.0, "$_XNOR_": 2.0, "$_MUX_": 2.33, "$_NMUX_": 2.33,
    "$_AOI3_": 1.33, "$_OAI3_": 1.33, "$_AOI4_": 1.67, "$_OAI4_": 1.67,
}
DFF_AREA, ENABLE_AREA, SYNC_RESET_AREA, LATCH_AREA = 5.67, 2.33, 1.33, 4.0
#: NAND2_X1 of the NanGate 45 nm Open Cell Library, in um^2.
NAND2_UM2 = 0.798


class VendorPrimitiveError(ValueError):
    """The Verilog instantiates cells no source defines: vendor primitives of an FPGA family."""


def gate_area(cell_type: str) -> float:
    """Area of one Yosys gate-level cell in NAND2 equivalents; ValueError for any other cell."""
    if cell_type in GATE_AREA:
        return GATE_AREA[cell_type]
    match = re.fullmatch(r"\$_(DFF|DFFE|DLATCH|SDFF|SDFFE|SDFFCE|ALDFF|ALDFFE|DFFSR|DFFSRE)_[PN01]+_", cell_type)
    if match is None:
        raise ValueError(f"no area for cell type {cell_type!r}: not one of Yosys' generic gates")
    kind = match[1]
    if kind == "DLATCH":
        return LATCH_AREA
    area = DFF_AREA
    if kind.endswith("E") or kind == "SDFFCE":
        area += ENABLE_AREA
    if kind.startswith("SDFF"):
        area += SYNC_RESET_AREA
    return area


@dataclass(frozen=True)
class GenericModule:
    """One module after generic synthesis: its own cells (submodules not included)."""

    name: str
    cells: dict[str, int]
    memory_bits: int
    area_ge: float
    depth: int | None     # longest combinational path in gates; None if Yosys reported none

    @property
    def gates(self) -> int:
        return sum(n for cell, n in self.cells.items() if cell.startswith("$_"))


@dataclass(frozen=True)
class GenericReport:
    """Generic synthesis of one top module: each module, and totals over the whole hierarchy."""

    top: str
    modules: list[GenericModule]
    total_cells: dict[str, int]
    total_memory_bits: int
    total_area_ge: float

    @property
    def area_um2_45nm(self) -> float:
        return self.total_area_ge * NAND2_UM2

    @property
    def depth(self) -> int | None:
        depths = [m.depth for m in self.modules if m.depth is not None]
        return max(depths) if depths else None

    def to_json(self) -> dict:
        return {**asdict(self), "area_um2_45nm": self.area_um2_45nm, "depth": self.depth}


def _vendor_cells(netlist: dict) -> dict[str, int]:
    """Cell types of an elaborated (not synthesized) netlist that no module defines, with counts."""
    defined = set(netlist["modules"])
    found: dict[str, int] = {}
    for module in netlist["modules"].values():
        for cell in module.get("cells", {}).values():
            kind = cell["type"]
            if not kind.startswith("$") and kind not in defined:
                found[kind] = found.get(kind, 0) + 1
    return found


def _memory_bits(netlist: dict) -> dict[str, int]:
    """Bits of the memories ($mem_v2: width x size) each module holds itself, before they are mapped."""
    bits = {}
    for name, module in netlist["modules"].items():
        total = 0
        for cell in module.get("cells", {}).values():
            if cell["type"] == "$mem_v2":
                total += int(cell["parameters"]["WIDTH"], 2) * int(cell["parameters"]["SIZE"], 2)
        bits[name] = total
    return bits


def _hierarchy_total(top: str, own: dict[str, int], stats: dict) -> int:
    """``own`` summed over the hierarchy below ``top``, each submodule as often as it is instantiated."""
    def total(name: str) -> int:
        cells = stats.get("\\" + name, stats.get(name, {})).get("num_cells_by_type", {})
        return own.get(name, 0) + sum(n * total(kind.lstrip("\\")) for kind, n in cells.items()
                                      if not kind.startswith("$"))
    return total(top)


def _depths(ltp_text: str) -> dict[str, int]:
    return {m[1].lstrip("\\"): int(m[2])
            for m in re.finditer(r"Longest topological path in (\S+) \(length=(\d+)\)", ltp_text)}


def synthesize_generic(sources: list[Path], top: str, work_dir: Path) -> GenericReport:
    """Synthesize ``top`` (defined by the Verilog ``sources``) with Yosys' generic ``synth``.

    Writes ``elaborated.json``, ``netlist.v`` (the gate-level netlist), the Yosys logs and
    ``generic.json`` (this report) into ``work_dir``. Raises :class:`VendorPrimitiveError` when the
    sources instantiate a cell none of them defines, RuntimeError when Yosys fails.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for source in map(Path, sources):
        (work_dir / source.name).write_bytes(source.read_bytes())
        names.append(source.name)
    reads = "; ".join(f"read_verilog {name}" for name in names)
    problem = _yosys_attempt(f"{reads}; hierarchy -top {top}; proc; write_json elaborated.json", work_dir,
                             "yosys-elaborate.log", ("elaborated.json",))
    if problem:
        raise RuntimeError(f"Yosys could not elaborate {top}: {problem}")
    vendor = _vendor_cells(json.loads((work_dir / "elaborated.json").read_text(encoding="utf-8")))
    if vendor:
        listed = ", ".join(f"{kind} ({count})" for kind, count in sorted(vendor.items()))
        raise VendorPrimitiveError(
            f"{top} instantiates vendor primitives that no source defines: {listed}; a generic netlist "
            f"needs Verilog without them (generate it for the generic target)")
    script = (f"{reads}; synth -top {top} -run :fine; write_json memories.json; "
              f"synth -top {top} -run fine:; opt_clean -purge; tee -q -o gates.json stat -json -top {top}; "
              f"tee -q -o ltp.txt ltp -noff; write_verilog -noattr netlist.v")
    problem = _yosys_attempt(script, work_dir, "yosys-generic.log", ("memories.json", "gates.json"))
    if problem:
        raise RuntimeError(f"Yosys' generic synthesis of {top} failed: {problem}")
    memories = _memory_bits(json.loads((work_dir / "memories.json").read_text(encoding="utf-8")))
    gates = json.loads((work_dir / "gates.json").read_text(encoding="utf-8"))
    depths = _depths((work_dir / "ltp.txt").read_text(encoding="utf-8", errors="replace"))
    modules = []
    for raw_name, stats in gates["modules"].items():
        name = raw_name.lstrip("\\")
        cells = dict(stats.get("num_cells_by_type", {}))
        area = sum(gate_area(kind) * n for kind, n in cells.items() if kind.startswith("$"))
        memory_bits = memories.get(name, 0)
        modules.append(GenericModule(name, cells, memory_bits, round(area, 1), depths.get(name)))
    design = gates["design"]
    total_cells = {kind: n for kind, n in design.get("num_cells_by_type", {}).items() if kind.startswith("$")}
    total_area = sum(gate_area(kind) * n for kind, n in total_cells.items())
    total_memory = _hierarchy_total(top, memories, gates["modules"])
    report = GenericReport(top, modules, total_cells, total_memory, round(total_area, 1))
    (work_dir / "generic.json").write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return report

