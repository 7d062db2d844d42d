"""The vector core's Verilog on Icarus and Verilator (cocotb, sim.tb_vector_core): every result beat
equals ref on random programs with stalls, both simulators agree value for value and cycle for
cycle, and without stalls the cycle model predicts their cycles; a pruning program's sum of |g|
equals ref's, and so do a ReSprop pass's nonzero count, next exponent and stored P. Both
multiplier targets: the ecp5 one with the behavioural MULT18X18D model."""

from __future__ import annotations

import dataclasses
import json

import pytest
from amaranth.back import verilog

from hw.mac import MULT18X18D_MODEL
from hw.vector_core import VectorCore, VectorCoreParams
from ref.contract.commands import PruneSetting
from ref.contract.random_programs import random_program, random_resprop_program
from ref.vector_cycle_model import predict_vector_cycles
from sim.runner import SIMULATORS, build_sources, run_cocotb_top
from sim.vector_cases import VectorCase, write_vector_cases

PARAMS = VectorCoreParams(lanes=2, vector=4, tile_m=6, tile_k=8, operand_bits=4, acc_bits=14, bus_elems=4)
SEED = 2026


def _cases(params: VectorCoreParams) -> list[VectorCase]:
    cases = []
    for index, (mode, density, a_format, idle, stall) in enumerate([
        ("all", 0.3, "bitmap", 0.0, 0.0), ("a", 0.2, "bitmap", 0.3, 0.3), ("mask", 0.5, "bitmap", 0.2, 0.4),
        ("dense", 1.0, "dense", 0.0, 0.2), ("a", 0.0, "bitmap", 0.1, 0.1),
    ]):
        program = random_program(mode=mode, density=density, tile_m=params.tile_m, tile_n=params.vector,
                                 tile_k=params.tile_k, operand_bits=params.operand_bits, acc_bits=params.acc_bits,
                                 n_gemms=3, k_tiles=2, seed=SEED + index, a_format=a_format, b_format="dense",
                                 topk_threshold=2)
        cases.append(VectorCase(f"case{index}_{mode}", program, idle=idle, stall=stall))
    # The result path's pruner: even-numbered drains prune (random_program), the LFSR running on.
    setting = PruneSetting(tau=3, seed=77, lfsr_width=params.lfsr_width, lfsr_taps=params.lfsr_taps)
    program = random_program(mode="a", density=0.6, tile_m=params.tile_m, tile_n=params.vector, tile_k=params.tile_k,
                             operand_bits=params.operand_bits, acc_bits=params.acc_bits, n_gemms=3, k_tiles=2,
                             seed=SEED + 9, a_format="bitmap", b_format="dense", prune=setting)
    cases.append(VectorCase("case_prune", program, idle=0.2, stall=0.2))
    # ReSprop's difference: a sample straddling row tiles, ragged columns, P through the port.
    program = random_resprop_program(n_samples=3, rows_per_sample=params.tile_m + 1, cols=params.vector + 1,
                                     tile_m=params.tile_m, tile_n=params.vector, tile_k=params.tile_k,
                                     operand_bits=params.operand_bits, acc_bits=params.acc_bits,
                                     out_bits=params.operand_bits - 1, sample=1, target_cp=9000, k_tiles=2,
                                     seed=SEED + 11)
    cases.append(VectorCase("case_resprop", program, idle=0.1, stall=0.3))
    return cases


@pytest.mark.parametrize("target", ["generic", "ecp5"])
def test_vector_core_on_both_simulators(tmp_path, target):
    print(f"seed {SEED}")
    params = dataclasses.replace(PARAMS, target=target)
    source = tmp_path / "vector_core.v"
    source.write_text(verilog.convert(VectorCore(params), name="vector_core", emit_src=False), encoding="utf-8")
    sources = [source, MULT18X18D_MODEL] if target == "ecp5" else [source]
    cases = _cases(params)
    vectors = write_vector_cases(cases, params, tmp_path / "vectors.json")
    records = {}
    for sim in SIMULATORS:
        runner = build_sources(sources, "vector_core", sim, tmp_path / f"build_{sim}")
        run = run_cocotb_top(runner, "vector_core", test_module="sim.tb_vector_core", test_dir=tmp_path / f"run_{sim}",
                             seed=SEED, extra_env={"STAG_VECTORS": str(vectors)})
        records[sim] = {path.stem: json.loads(path.read_text()) for path in sorted(run.record_dir.glob("*.json"))}
    assert records["icarus"] == records["verilator"]
    assert len(records["icarus"]) == len(cases)
    # The case without stalls: the cycle model predicts the last result beat's cycle.
    first = cases[0]
    predicted = predict_vector_cycles(first.program, lanes=params.lanes, vector=params.vector, tile_m=params.tile_m,
                                      tile_k=params.tile_k, bus_elems=params.bus_elems,
                                      operand_bits=params.operand_bits, sparse=params.sparse)
    assert predicted.total == records["icarus"][first.name]["result_cycles"][-1] + 1
