"""The AXI top level on Icarus and Verilator through cocotbext-axi, against ``ref``.

The testbench (``sim.tb_axi``, three tests) checks the register map on a free and on a randomly
paused AXI4-Lite port (every channel paused independently), the interrupt, every result beat
against ``ref.contract.evaluate`` and the counters read over AXI4-Lite against ``ref``'s MAC counts,
each program alone (the gapped ones with their register accesses paused too) and two programs
back to back with no reset or idle cycle between them (counters summed); here the two simulators'
records (values, cycles of every tile end and interrupt edge, counters) must be identical, so the
pauses are drawn from the seed.
"""

from __future__ import annotations

import pytest

from sim.axi_cases import axi_cases
from sim.core_vectors import write_vectors
from sim.crosscheck import record_differences
from sim.runner import SIMULATORS, run_cocotb

pytestmark = pytest.mark.cosim


def _run_both(built_designs, tmp_path, preset_name, seed):
    design, _ = built_designs(preset_name, "icarus", unit="axi")
    cases = axi_cases(design.config, seed)
    vectors = write_vectors(tmp_path / "vectors.json", cases)
    records = {}
    for sim in SIMULATORS:
        design, runner = built_designs(preset_name, sim, unit="axi")
        run = run_cocotb(runner, design, test_module="sim.tb_axi", seed=seed, unit="axi", test_dir=tmp_path / sim,
                         extra_env={"STAG_VECTORS": str(vectors.resolve())})
        assert run.tests == 3                 # test_registers, test_programs, test_back_to_back
        records[sim] = run.record_dir
        # One record per program, one for the registers, one for the back-to-back pair.
        assert len(list(run.record_dir.glob("*.json"))) == len(cases) + 2
    assert record_differences(records["icarus"], records["verilator"]) == []


@pytest.mark.parametrize("seed", [1, 2])
def test_axi_top_tiny(built_designs, tmp_path, seed):
    """Every sparsity mode once, four of five with random input gaps, result backpressure and
    AXI4-Lite pauses."""
    print(f"preset=tiny STAG_SEED={seed}")
    _run_both(built_designs, tmp_path, "tiny", seed)


@pytest.mark.long
def test_axi_top_default(built_designs, tmp_path):
    """The default core (8 lanes, 16x16x64 tiles): one ungapped and one gapped program."""
    seed = 3
    print(f"preset=default STAG_SEED={seed}")
    _run_both(built_designs, tmp_path, "default", seed)
