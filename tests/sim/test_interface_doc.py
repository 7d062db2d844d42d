"""docs/interface.md stays true: its register table matches ``hw.axi_registers`` and its cocotb example runs.

The example is extracted from the markdown (the ```python block after the ``runnable`` marker),
written to a module and run on the ``tiny`` AXI top in Icarus, so the document cannot drift from
the driver or the RTL.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hw import axi_registers as regs
from sim.runner import run_cocotb

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "interface.md"


def _after(marker: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(marker)
    return text[start + len(marker):]


def _register_rows() -> dict[str, tuple[str, str, str]]:
    """name -> (offset, access, reset) from the register table after the register-map marker."""
    rows = {}
    for line in _after("<!-- register-map:").splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if cells[0] in ("offset", "---"):
            continue
        rows[cells[1]] = (cells[0], cells[2], cells[3])
    return rows


def test_register_table_matches_the_register_module():
    rows = _register_rows()
    for name in ("ID", "VERSION", "CTRL", "STATUS", "SNAPSHOT", "SCRATCH", "CMD_COUNT", "TILE_COUNT", "PRUNE_TAU",
                 "PRUNE_SEED", "PRUNE_SUM", "TOPK_THRESHOLD", "RESPROP_THR_MANT", "RESPROP_THR_EXP",
                 "RESPROP_TARGET", "RESPROP_ROWS", "RESPROP_COLS", "RESPROP_ROW_WORDS", "RESPROP_SAMPLES",
                 "RESPROP_SAMPLE", "RESPROP_CTRL", "RESPROP_LOAD", "RESPROP_NNZ", "RESPROP_EXP_NEXT",
                 "RESPROP_P_INDEX", "RESPROP_P_DATA"):
        assert int(rows[name][0], 16) == getattr(regs, name), name
    assert int(rows["ID"][2], 16) == regs.ID_VALUE
    assert int(rows["VERSION"][2], 16) == regs.VERSION_VALUE
    for field in regs.CONFIG_FIELDS:
        assert int(rows[field.upper()][0], 16) == regs.config_offset(field), field
    assert rows["COUNTER[f]_LO"][0] == f"{regs.counter_offset(0):#05x} + 8f"
    assert rows["COUNTER[f]_HI"][0] == f"{regs.counter_offset(0, high=True):#05x} + 8f"
    assert regs.counter_offset(1) - regs.counter_offset(0) == 8
    # Every row is a register the module knows, and none is missing.
    assert len(rows) == len(regs.MAPPED) + len(regs.CONFIG_FIELDS) + 2


def _example() -> str:
    rest = _after("<!-- runnable:")
    match = re.search(r"```python\n(.*?)```", rest, re.S)
    assert match, "no python block after the runnable marker"
    return match.group(1)


@pytest.mark.cosim
def test_cocotb_example_runs_on_tiny(built_designs, tmp_path, monkeypatch):
    module_dir = tmp_path / "example"
    module_dir.mkdir()
    (module_dir / "tb_doc_example.py").write_text(_example(), encoding="utf-8")
    # cocotb's runner hands the simulator this process's sys.path as PYTHONPATH.
    monkeypatch.syspath_prepend(str(module_dir))
    design, runner = built_designs("tiny", "icarus", unit="axi")
    run = run_cocotb(runner, design, test_module="tb_doc_example", seed=1, unit="axi", test_dir=tmp_path / "run")
    assert run.tests == 1
