"""The generated ReSprop unit on Icarus and Verilator against ``ref.resprop_codes``, two seeds.

Besides random passes, each run streams two consecutive iterations of a real digits training run
(conv2's dY, quantized to the preset's operand width; cut to fit the tiny preset's P bank).
"""

from __future__ import annotations

import pytest

from hw.config import preset
from sim.crosscheck import record_differences
from sim.resprop_vectors import digits_trace_passes, make_resprop_trace, save_passes
from sim.runner import SIMULATORS, run_cocotb

pytestmark = pytest.mark.cosim


@pytest.fixture(scope="module")
def resprop_trace(tmp_path_factory):
    print("make_resprop_trace(seed=0)")
    return make_resprop_trace(tmp_path_factory.mktemp("resprop_trace"), seed=0)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("preset_name", ["tiny", pytest.param("default", marks=pytest.mark.long)])
def test_resprop_unit_on_both_simulators(built_designs, tmp_path, resprop_trace, preset_name, seed):
    print(f"preset={preset_name} STAG_SEED={seed}")
    cfg = preset(preset_name)
    passes, _ = digits_trace_passes(resprop_trace, cfg.operand_bits, layer="conv2", samples=4,
                                    max_elems=min(cfg.resprop_max_elems, 512))
    vectors = tmp_path / "trace_passes.json"
    save_passes(vectors, passes)
    records = {}
    for sim in SIMULATORS:
        design, runner = built_designs(preset_name, sim, unit="resprop")
        run = run_cocotb(runner, design, test_module="sim.tb_resprop", seed=seed, unit="resprop",
                         test_dir=tmp_path / sim, extra_env={"STAG_RESPROP_VECTORS": str(vectors)})
        assert run.tests == 3
        records[sim] = run.record_dir
    assert record_differences(records["icarus"], records["verilator"]) == []
