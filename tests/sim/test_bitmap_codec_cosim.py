"""The generated bitmap encoder and decoder on Icarus and Verilator against ``ref.bitmap_codec``.

Besides its random and extreme vectors, the testbench gets operand vectors of a real digits
training step (stochastic_prune: ReLU activations and pruned gradients, quantized to the design's
``operand_bits`` as the contract does) through ``STAG_CODEC_VECTORS``.
"""

from __future__ import annotations

import tempfile

import pytest

from hw.config import preset
from ref.contract import make_digits_trace
from ref.traces import load_trace
from sim.bitmap_codec_vectors import trace_vectors, write_codec_vectors
from sim.crosscheck import record_differences
from sim.runner import SIMULATORS, run_cocotb

pytestmark = pytest.mark.cosim


@pytest.fixture(scope="module")
def codec_vectors(tmp_path_factory):
    """``preset name -> JSON file`` of 24 bitmap-format operand vectors from one training step."""
    root = tmp_path_factory.mktemp("codec_vectors")
    with tempfile.TemporaryDirectory() as trace_root:
        print("make_digits_trace(algo='stochastic_prune', seed=0)")
        trace = load_trace(make_digits_trace(f"{trace_root}/sp", algo="stochastic_prune", seed=0))
        files = {}
        for name in ("tiny", "default"):
            cfg = preset(name)
            vectors = trace_vectors(trace, operand_bits=cfg.operand_bits, tile_k=cfg.tile_k, limit=24)
            files[name] = write_codec_vectors(root / f"{name}.json", vectors)
    return files


@pytest.mark.parametrize("unit", ["bitmap_encode", "bitmap_decode"])
@pytest.mark.parametrize("preset_name", ["tiny", pytest.param("default", marks=pytest.mark.long)])
def test_bitmap_codec_on_both_simulators(built_designs, tmp_path, codec_vectors, preset_name, unit):
    for seed in (1, 2):
        print(f"preset={preset_name} unit={unit} STAG_SEED={seed}")
        records = {}
        for sim in SIMULATORS:
            design, runner = built_designs(preset_name, sim, unit=unit)
            run = run_cocotb(runner, design, test_module="sim.tb_bitmap_codec", seed=seed, unit=unit,
                             test_dir=tmp_path / f"{sim}_{seed}",
                             extra_env={"STAG_CODEC_VECTORS": str(codec_vectors[preset_name].resolve())})
            assert run.tests == 4
            records[sim] = run.record_dir
        assert sorted(p.name for p in records["icarus"].iterdir()) == sorted(
            ["random_vectors_under_stalls.json", "extreme_and_empty_vectors.json", "trace_vectors.json"]
            + [f"throughput_{d}.json" for d in (0, 10, 50, 90, 100)])
        assert record_differences(records["icarus"], records["verilator"]) == []
