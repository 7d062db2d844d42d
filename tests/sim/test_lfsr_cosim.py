"""The generated LFSR unit on Icarus and Verilator against ``ref.lfsr``, several seeds."""

from __future__ import annotations

import pytest

from sim.crosscheck import record_differences
from sim.runner import SIMULATORS, run_cocotb

pytestmark = pytest.mark.cosim


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("preset_name", ["tiny", pytest.param("default", marks=pytest.mark.long)])
def test_lfsr_unit_on_both_simulators(built_designs, tmp_path, preset_name, seed):
    print(f"preset={preset_name} STAG_SEED={seed}")
    records = {}
    for sim in SIMULATORS:
        design, runner = built_designs(preset_name, sim, unit="lfsr")
        run = run_cocotb(runner, design, test_module="sim.tb_lfsr", seed=seed, unit="lfsr", test_dir=tmp_path / sim)
        assert run.tests == 3
        records[sim] = run.record_dir
    assert record_differences(records["icarus"], records["verilator"]) == []
