"""The generated ReLU + mask emit and mask-apply units on Icarus and Verilator against ``ref``.

Random edge-case vectors and vectors of a real digits training trace; presets tiny and default,
seeds 1 and 2; the two simulators' records must be identical.
"""

from __future__ import annotations

import pytest

from hw.config import preset
from sim.crosscheck import record_differences
from sim.relu_mask_vectors import digits_relu_vectors, write_relu_vectors
from sim.runner import SIMULATORS, run_cocotb

pytestmark = pytest.mark.cosim

TB = {"relu_mask": "sim.tb_relu_mask", "mask_apply": "sim.tb_mask_apply"}


@pytest.fixture(scope="module")
def trace_vectors(tmp_path_factory):
    """``get(preset_name) -> path`` of the digits-trace vectors for that preset's codes and tile_k."""
    from ref.contract.trace_programs import make_digits_trace
    from ref.traces import load_trace

    root = tmp_path_factory.mktemp("relu_mask_trace")
    print("make_digits_trace(algo='relu_mask', seed=0)")
    trace = load_trace(make_digits_trace(root, algo="relu_mask", seed=0))
    paths = {}

    def get(preset_name: str):
        if preset_name not in paths:
            cfg = preset(preset_name)
            vec = digits_relu_vectors(trace, operand_bits=cfg.operand_bits, vector_elems=cfg.tile_k,
                                      max_vectors=4096 // cfg.tile_k)
            paths[preset_name] = write_relu_vectors(root / f"{preset_name}.json", vec)
        return paths[preset_name]

    return get


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("preset_name", ["tiny", pytest.param("default", marks=pytest.mark.long)])
@pytest.mark.parametrize("unit", ["relu_mask", "mask_apply"])
def test_unit_on_both_simulators(built_designs, trace_vectors, tmp_path, unit, preset_name, seed):
    print(f"unit={unit} preset={preset_name} STAG_SEED={seed}")
    records = {}
    for sim in SIMULATORS:
        design, runner = built_designs(preset_name, sim, unit=unit)
        run = run_cocotb(runner, design, test_module=TB[unit], seed=seed, unit=unit, test_dir=tmp_path / sim,
                         extra_env={"STAG_RELU_MASK_TRACE": str(trace_vectors(preset_name).resolve())})
        assert run.tests == 3
        records[sim] = run.record_dir
    assert (records["icarus"] / "digits_trace.json").exists(), "the trace test did not run"
    assert record_differences(records["icarus"], records["verilator"]) == []
