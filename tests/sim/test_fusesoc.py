"""The generated FuseSoC cores drop into a FuseSoC tree: FuseSoC (from PyPI) lints and simulates them.

``stag generate`` writes a CAPI2 ``.core`` per module (:mod:`hw.fusesoc`). Here FuseSoC reads the
generated directory as its library and runs, through Edalize, the AXI top's ``lint`` target
(Verilator ``-Wall`` with the generator's waiver file) and ``sim`` target (Icarus: the self-checking
AXI-Lite smoke testbench must print PASS), and the compute core's ``lint`` and ``sim``
(elaboration) targets. A testbench that expects a wrong ID must make ``fusesoc run`` fail, so a
silent testbench cannot pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from hw import axi_registers as regs
from hw.config import preset
from hw.fusesoc import core_name
from hw.generate import generate


@pytest.fixture(scope="module")
def tiny_design(tmp_path_factory):
    return generate(preset("tiny"), tmp_path_factory.mktemp("fusesoc"))


def _fusesoc(library, work, *args) -> subprocess.CompletedProcess:
    # FuseSoC's console script is its `main`; calling it through this interpreter needs no PATH entry.
    command = [sys.executable, "-c", "import sys; from fusesoc.main import main; sys.exit(main())",
               "--cores-root", str(library), "run", "--build-root", str(work), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)


def test_every_module_has_a_core_naming_its_own_sources(tiny_design):
    names = set()
    for unit in tiny_design.modules:
        text = tiny_design.core_of(unit).read_text(encoding="utf-8")
        assert text.startswith("CAPI=2:\n")
        name = re.search(r"^name: (\S+)$", text, re.M)[1]
        assert name == core_name(tiny_design.config, unit)
        names.add(name)
        listed = re.findall(r"^      - (\S+)$", text, re.M)
        sources = [path.name for path in tiny_design.sources_of(unit)]
        assert listed[:len(sources)] == sources
        for file_name in listed:
            assert (tiny_design.directory / file_name).is_file(), f"{name} lists {file_name}, which is missing"
    assert len(names) == len(tiny_design.modules)


@pytest.mark.parametrize("unit", [None, "axi"], ids=["core", "axi"])
def test_fusesoc_lint_target_passes(tiny_design, unit, tmp_path):
    result = _fusesoc(tiny_design.directory, tmp_path, "--target", "lint", core_name(tiny_design.config, unit))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "%Warning" not in result.stdout + result.stderr


def test_fusesoc_sim_target_elaborates_the_core(tiny_design, tmp_path):
    result = _fusesoc(tiny_design.directory, tmp_path, "--target", "sim", core_name(tiny_design.config, None))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_fusesoc_sim_target_runs_the_axi_smoke_test(tiny_design, tmp_path):
    result = _fusesoc(tiny_design.directory, tmp_path, "--target", "sim", core_name(tiny_design.config, "axi"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f"PASS: {tiny_design.config.module_name('axi')}" in output
    assert "FAIL" not in output


def test_fusesoc_sim_target_fails_when_a_check_fails(tiny_design, tmp_path):
    library = tmp_path / "library"
    shutil.copytree(tiny_design.directory, library)
    testbench = library / tiny_design.smoke_testbench.name
    text = testbench.read_text(encoding="utf-8")
    right = f"32'h{regs.ID_VALUE:08x}"
    assert right in text
    testbench.write_text(text.replace(right, f"32'h{regs.ID_VALUE ^ 1:08x}"), encoding="utf-8")
    result = _fusesoc(library, tmp_path / "build", "--target", "sim", core_name(tiny_design.config, "axi"))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"FAIL: ID at 0x000 reads {regs.ID_VALUE:08x}" in output
