"""The generated sparse core on Icarus and Verilator against ``ref``: random and real-trace programs.

Every drained value is compared with ``ref.contract.evaluate`` inside the testbench, the MAC
counters with ``ref``'s counts; here the two simulators' records (values, the cycle of every
result beat, all counters) must then be identical.
"""

from __future__ import annotations

import dataclasses

import pytest

from hw.config import preset
from hw.generate import generate
from ref.contract.trace_programs import make_digits_trace, trace_programs
from ref.traces import load_trace
from sim.core_regression import prune_cases, regression_cases, resprop_cases, topk_cases
from sim.core_vectors import make_case, write_vectors
from sim.crosscheck import record_differences
from sim.runner import SIMULATORS, build, run_cocotb

pytestmark = pytest.mark.cosim

ALGOS = ("dense", "relu_mask", "zero_skip", "stochastic_prune", "resprop", "swat")


def _run_both(built_designs, tmp_path, preset_name, cases, seed):
    vectors = write_vectors(tmp_path / "vectors.json", cases)
    records = {}
    for sim in SIMULATORS:
        design, runner = built_designs(preset_name, sim)
        run = run_cocotb(runner, design, test_module="sim.tb_core", seed=seed, test_dir=tmp_path / sim,
                         extra_env={"STAG_VECTORS": str(vectors.resolve())})
        assert run.tests == 1
        records[sim] = run.record_dir
        assert len(list(run.record_dir.glob("*.json"))) == len(cases)
    assert record_differences(records["icarus"], records["verilator"]) == []


@pytest.mark.parametrize("seed", [1, 2])
def test_random_programs_every_mode_and_density_tiny(built_designs, tmp_path, seed):
    """5 modes x 7 densities (0..100 %), half of them under random stalls; and programs whose
    drains prune, compare with a top-K threshold or take ReSprop's difference on the result path."""
    print(f"preset=tiny STAG_SEED={seed}")
    design, _ = built_designs("tiny", "icarus")
    cfg = design.config
    cases = regression_cases(cfg, seed) + prune_cases(cfg, seed) + topk_cases(cfg, seed) + resprop_cases(cfg, seed)
    _run_both(built_designs, tmp_path, "tiny", cases, seed)


def test_random_programs_default(built_designs, tmp_path):
    """The default core (8 lanes, 16x16x64 tiles) on every mode at 30 %, and dense; a program that
    prunes, one that compares with a top-K threshold and a ReSprop pass on the result path (the
    tiny core runs every mode and density; ``test_random_programs_default_long`` more of each)."""
    seed = 3
    print(f"preset=default STAG_SEED={seed}")
    design, _ = built_designs("default", "icarus")
    cases = regression_cases(design.config, seed, modes=("a", "b", "mask", "all"), densities=(0.3,))
    cases += regression_cases(design.config, seed, modes=("dense",), densities=(1.0,))
    cases += prune_cases(design.config, seed, n_gemms=2)[:1]
    cases += topk_cases(design.config, seed, n_gemms=2)[:1]
    cases += resprop_cases(design.config, seed)[:1]
    _run_both(built_designs, tmp_path, "default", cases, seed)


@pytest.mark.long
def test_random_programs_default_long(built_designs, tmp_path):
    """The default core on every mode at 10 % and 50 %, and dense; two programs that prune, two that
    compare with a top-K threshold and two ReSprop passes on the result path."""
    seed = 3
    print(f"preset=default STAG_SEED={seed}")
    design, _ = built_designs("default", "icarus")
    cases = regression_cases(design.config, seed, modes=("a", "b", "mask", "all"), densities=(0.1, 0.5))
    cases += regression_cases(design.config, seed, modes=("dense",), densities=(1.0,))
    cases += prune_cases(design.config, seed, n_gemms=2)[:2]
    cases += topk_cases(design.config, seed, n_gemms=2)[:2]
    cases += resprop_cases(design.config, seed)[:2]
    _run_both(built_designs, tmp_path, "default", cases, seed)


def test_tile_n_not_a_power_of_two_both_simulators(tmp_path):
    """Issue 19: ``lanes = 2, tile_n = 6`` (three row groups) drained wrong values on Verilator and
    stalled on Icarus (the lanes' B-bitmap copies were written and read at different addresses,
    past the end of the memory on buffer set 1). Now every value equals ref and both agree."""
    seed = 1
    cfg = dataclasses.replace(preset("tiny"), name="tiny_n6", tile_n=6)
    print(f"config: tiny with tile_n=6 lanes={cfg.lanes} STAG_SEED={seed}")
    design = generate(cfg, tmp_path / "rtl")
    cases = regression_cases(cfg, seed, modes=("b", "all"), densities=(0.5, 1.0))
    cases += prune_cases(cfg, seed)[:1] + resprop_cases(cfg, seed)[:1]
    vectors = write_vectors(tmp_path / "vectors.json", cases)
    records = {}
    # Verilator first: before the fix it reported the wrong values, where Icarus hung.
    for sim in sorted(SIMULATORS, key=lambda s: s != "verilator"):
        runner = build(design, sim, tmp_path / "build" / sim)
        run = run_cocotb(runner, design, test_module="sim.tb_core", seed=seed, test_dir=tmp_path / sim,
                         extra_env={"STAG_VECTORS": str(vectors.resolve())})
        assert run.tests == 1
        records[sim] = run.record_dir
        assert len(list(run.record_dir.glob("*.json"))) == len(cases)
    assert record_differences(records["icarus"], records["verilator"]) == []


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    root = tmp_path_factory.mktemp("traces")
    return {algo: load_trace(make_digits_trace(root / algo, algo=algo, seed=0)) for algo in ALGOS}


@pytest.mark.parametrize("algo", ALGOS)
def test_trace_programs_every_layer_and_pass_tiny(built_designs, tmp_path, traces, algo):
    """Programs lowered from a real digits training iteration: every layer, FWD/BWI/BWW.

    Each pass is truncated to its first output tiles (all their K tiles) to bound run time; the
    operands, bitmaps and masks are the training run's own.
    """
    design, _ = built_designs("tiny", "icarus")
    cfg = design.config
    passes = trace_programs(traces[algo], tile_m=cfg.tile_m, tile_n=cfg.tile_n, tile_k=cfg.tile_k,
                            operand_bits=cfg.operand_bits, acc_bits=cfg.acc_bits, max_gemms=2)
    assert {p.pass_ for p in passes} == {"fwd", "bwi", "bww"}
    cases = [make_case(f"{p.layer}_{p.pass_}", p.program, cfg) for p in passes]
    print(f"algo={algo} trace seed=0 passes={[c.name for c in cases]}")
    _run_both(built_designs, tmp_path, "tiny", cases, 1)
