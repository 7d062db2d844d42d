"""The generated top-K threshold unit on Icarus and Verilator against ``ref.topk_codes``, several seeds."""

from __future__ import annotations

import pytest

from hw.config import preset
from sim.crosscheck import record_differences
from sim.runner import SIMULATORS, run_cocotb
from sim.topk_vectors import digits_weight_codes, write_topk_tensors

pytestmark = pytest.mark.cosim

# Layers (and modes) whose weights each preset's run uses: conv1 (16x1x3x3) fits tiny's 256 codes;
# the default adds conv2 (32x16x3x3 = 4608 codes) in element mode, a full-size tensor of the int8
# design (~41k cycles per run; its channel mode would add ~60k more).
BOTH = ("element", "channel")
TRACE_LAYERS = {"tiny": {"conv1": BOTH}, "default": {"conv1": BOTH, "conv2": ("element",)}}


@pytest.fixture(scope="module")
def trace_tensors(tmp_path_factory):
    """Per preset: a JSON file of quantized digits-trace weights (one training run, seed 0)."""
    root = tmp_path_factory.mktemp("topk_trace")
    cache = {}

    def get(preset_name: str):
        if preset_name not in cache:
            bits = preset(preset_name).operand_bits
            print(f"make_digits_trace(algo='swat', seed=0), {bits}-bit weights: {TRACE_LAYERS[preset_name]}")
            tensors = digits_weight_codes(root / preset_name, bits, TRACE_LAYERS[preset_name])
            cache[preset_name] = write_topk_tensors(root / f"{preset_name}.json", tensors)
        return cache[preset_name]

    return get


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("preset_name", ["tiny", pytest.param("default", marks=pytest.mark.long)])
def test_topk_unit_on_both_simulators(built_designs, trace_tensors, tmp_path, preset_name, seed):
    print(f"preset={preset_name} STAG_SEED={seed}")
    records = {}
    for sim in SIMULATORS:
        design, runner = built_designs(preset_name, sim, unit="topk")
        run = run_cocotb(runner, design, test_module="sim.tb_topk", seed=seed, unit="topk", test_dir=tmp_path / sim,
                         extra_env={"STAG_TOPK_TRACE": str(trace_tensors(preset_name).resolve())})
        assert run.tests == 4
        records[sim] = run.record_dir
    assert sorted(p.name for p in records["icarus"].iterdir()) == [
        "digits_trace_weights.json", "edge_cases.json", "period_reuse.json", "random_tensors.json"]
    assert record_differences(records["icarus"], records["verilator"]) == []
