"""The generated stochastic pruner on Icarus and Verilator against ``ref``, with a real digits dY.

The testbench compares every code and threshold with ``ref.stochastic_prune_codes``; here the two
simulators' records (codes, thresholds, the cycle of every transfer) must be identical.
"""

from __future__ import annotations

import json

import pytest

from ref.numerics import quantize_symmetric, to_fixed
from sim.crosscheck import record_differences
from sim.runner import SIMULATORS, run_cocotb

pytestmark = pytest.mark.cosim


@pytest.fixture(scope="module")
def digits_fc_dy(tmp_path_factory):
    """The fc layer's dY (32 x 10) of a real digits training iteration under the pruning policy."""
    from ref.contract.trace_programs import make_digits_trace
    from ref.traces import load_trace

    print("make_digits_trace(algo='stochastic_prune', seed=0), layer fc")
    trace = load_trace(make_digits_trace(tmp_path_factory.mktemp("trace"), algo="stochastic_prune", seed=0))
    return trace.records[0].layers["fc"]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("preset_name", ["tiny", pytest.param("default", marks=pytest.mark.long)])
def test_stochastic_pruner_on_both_simulators(built_designs, tmp_path, digits_fc_dy, preset_name, seed):
    print(f"preset={preset_name} STAG_SEED={seed}")
    design, _ = built_designs(preset_name, "icarus", unit="stochastic_pruner")
    config = design.config
    q, _ = quantize_symmetric(digits_fc_dy.tensors["dy"], config.operand_bits)
    # The policy's own LFSR state applies where the design's LFSR is the policy's (default: 16 bits).
    state = int(digits_fc_dy.scalars["lfsr_state_before"]) if config.lfsr_width == 16 else config.lfsr_seed
    tensor = tmp_path / "tensor.json"
    tensor.write_text(json.dumps({"codes": q.flatten().tolist(), "lfsr_state": state,
                                  "c_fixed": to_fixed(digits_fc_dy.policy["c"], config.prune_frac_bits)}))
    records = {}
    for sim in SIMULATORS:
        design, runner = built_designs(preset_name, sim, unit="stochastic_pruner")
        run = run_cocotb(runner, design, test_module="sim.tb_stochastic_pruner", seed=seed, unit="stochastic_pruner",
                         test_dir=tmp_path / sim, extra_env={"STAG_PRUNER_TENSOR": str(tensor.resolve())})
        assert run.tests == 3
        records[sim] = run.record_dir
    assert record_differences(records["icarus"], records["verilator"]) == []
