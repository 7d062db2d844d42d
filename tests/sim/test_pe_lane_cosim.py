"""The generated PE lane Verilog on Icarus and Verilator against ``ref``, several seeds.

Each cocotb test compares every value and both counters with ``ref.pe_lane``; this test then
requires the two simulators to have observed identical values and identical cycle numbers.
"""

from __future__ import annotations

import pytest

from sim.crosscheck import record_differences
from sim.runner import SIMULATORS, run_cocotb

pytestmark = pytest.mark.cosim


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("preset_name", ["tiny", pytest.param("default", marks=pytest.mark.long)])
def test_pe_lane_on_both_simulators(built_designs, tmp_path, preset_name, seed):
    print(f"preset={preset_name} STAG_SEED={seed}")
    records = {}
    for sim in SIMULATORS:
        design, runner = built_designs(preset_name, sim, "pe_lane")
        run = run_cocotb(runner, design, test_module="sim.tb_pe_lane", seed=seed, test_dir=tmp_path / sim,
                         unit="pe_lane")
        assert run.tests == 5
        records[sim] = run.record_dir
    assert record_differences(records["icarus"], records["verilator"]) == []
