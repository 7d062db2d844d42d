"""Technology-independent synthesis (``stag synth --generic``): no vendor cell ever reaches the netlist.

The generated core (``tiny``) synthesizes to Yosys' generic gates only; a vector lane generated for
the ``ecp5`` target (MULT18X18D primitives) is rejected naming the primitive, and the same lane for
the ``generic`` target (plain ``*``) synthesizes. The area estimate is checked against the gate
weights applied by hand, and the hierarchy's totals against the per-module counts.
"""

from __future__ import annotations

import re

import pytest
from amaranth.back import verilog

from hw.config import preset
from hw.generate import generate
from hw.vector_lane import VectorLane
from stag.cli import main
from stag.generic_synth import GATE_AREA, VendorPrimitiveError, gate_area, synthesize_generic


def _instantiated_types(netlist: str) -> set[str]:
    """Module names instantiated in a ``write_verilog -noattr`` netlist (gates are written as expressions)."""
    defined = set(re.findall(r"^module \\?(\S+?)\s*\(", netlist, re.M))
    keywords = {"module", "endmodule", "input", "output", "wire", "reg", "assign", "always", "if", "else",
                "begin", "end", "initial", "case", "endcase", "default", "integer", "localparam", "parameter"}
    used = set(re.findall(r"^[ \t]*\\?([A-Za-z_][\w.$]*)(?:[ \t]*#\(.*?\))?[ \t]+\\?[\w.$\[\]]+[ \t]*\(", netlist,
                          re.M | re.S))
    return (used - keywords) - defined


@pytest.fixture(scope="module")
def tiny_generic(tmp_path_factory):
    root = tmp_path_factory.mktemp("generic")
    design = generate(preset("tiny"), root / "rtl")
    return synthesize_generic(design.sources_of(None), design.config.module_name(None), root / "synth"), root


def test_the_core_maps_to_generic_gates_only(tiny_generic):
    report, root = tiny_generic
    assert report.total_cells and all(kind.startswith("$_") for kind in report.total_cells)
    netlist = (root / "synth" / "netlist.v").read_text(encoding="utf-8")
    assert _instantiated_types(netlist) == set()
    for vendor in ("MULT18X18D", "TRELLIS", "DP16KD", "LUT4", "CCU2C", "SB_", "DSP48"):
        assert vendor not in netlist


def test_totals_and_area_follow_the_modules(tiny_generic):
    report, _ = tiny_generic
    # Amaranth names every submodule instance apart, so each module appears once in the hierarchy.
    by_type: dict[str, int] = {}
    for module in report.modules:
        for kind, n in module.cells.items():
            if kind.startswith("$_"):
                by_type[kind] = by_type.get(kind, 0) + n
    assert by_type == report.total_cells
    by_hand = 0.0
    for kind, n in report.total_cells.items():
        if kind in GATE_AREA:
            by_hand += GATE_AREA[kind] * n
        else:
            assert "DFF" in kind
            enable = 2.33 if re.match(r"\$_S?DFFC?E_", kind) else 0
            by_hand += n * (5.67 + enable + (1.33 if kind.startswith("$_SDFF") else 0))
    assert report.total_area_ge == pytest.approx(by_hand, abs=0.5)
    assert report.total_memory_bits == sum(m.memory_bits for m in report.modules) > 0
    assert report.depth is not None and report.depth >= max(m.depth or 0 for m in report.modules)


def test_gate_areas():
    assert gate_area("$_NAND_") == 1.0
    assert gate_area("$_DFF_P_") == pytest.approx(5.67)
    assert gate_area("$_DFFE_PP_") == pytest.approx(5.67 + 2.33)
    assert gate_area("$_SDFFE_PP0P_") == pytest.approx(5.67 + 2.33 + 1.33)
    assert gate_area("$_SDFF_PP0_") == pytest.approx(5.67 + 1.33)
    with pytest.raises(ValueError, match="MULT18X18D"):
        gate_area("MULT18X18D")


def _lane_verilog(tmp_path, target: str):
    lane = VectorLane(vector=2, tile_k=4, operand_bits=4, acc_bits=12, rows=4, target=target, result_depth=2)
    path = tmp_path / f"lane_{target}.v"
    path.write_text(verilog.convert(lane, name=f"lane_{target}", emit_src=False), encoding="utf-8")
    return path


def test_vendor_primitives_are_rejected_by_name(tmp_path):
    source = _lane_verilog(tmp_path, "ecp5")
    assert _instantiated_types(source.read_text(encoding="utf-8")) == {"MULT18X18D"}   # the check can see one
    with pytest.raises(VendorPrimitiveError, match=r"MULT18X18D \(2\)"):
        synthesize_generic([source], "lane_ecp5", tmp_path / "ecp5")
    assert not (tmp_path / "ecp5" / "generic.json").exists()


def test_the_generic_target_synthesizes_without_them(tmp_path):
    source = _lane_verilog(tmp_path, "generic")
    report = synthesize_generic([source], "lane_generic", tmp_path / "generic")
    assert all(kind.startswith("$_") for kind in report.total_cells)
    assert _instantiated_types((tmp_path / "generic" / "netlist.v").read_text(encoding="utf-8")) == set()


def test_cli_rejects_an_unknown_unit(tmp_path, capsys):
    status = main(["synth", "--generic", "--preset", "tiny", "--unit", "nope", "--out", str(tmp_path / "rtl"),
                   "--work", str(tmp_path / "work")])
    assert status != 0
    assert "--unit must be one of" in capsys.readouterr().err
    assert not (tmp_path / "rtl").exists()
