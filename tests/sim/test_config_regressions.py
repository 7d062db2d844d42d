"""Valid configurations outside the presets get a regression that fits them (issue 19).

The validator accepted these, and their own regression (``stag sim --config``) then failed before
simulating or in the harness: ``accumulators = 1`` (the programs alternated two accumulators),
``resprop_max_elems = tile_n`` and ``resprop_max_batch = 1`` (the ReSprop programs did not fit the
P bank), ``operand_bits = 3`` (the ReSprop testbench's dY ramp left the code range),
``topk_max_elems = 2`` (the top-K testbench drew from an empty range and sent longer tensors).
"""

from __future__ import annotations

import dataclasses

import pytest

from hw.config import preset
from hw.generate import generate
from sim.core_program import acc_buffers, encode_program
from sim.core_regression import resprop_cases
from sim.suites import suites
from stag.verify import verify_design

#: Everything the issue listed at once, on the tiny core (units: the testbenches that failed).
ODD = dataclasses.replace(preset("tiny"), name="tiny_odd", accumulators=1, operand_bits=3, topk_max_elems=2,
                          resprop_max_elems=4, resprop_max_batch=1, units=("topk", "resprop", "axi"))


@pytest.mark.parametrize("fields", [
    dict(accumulators=1),
    dict(resprop_max_elems=4),                       # one output row of one column tile per P bank
    dict(resprop_max_batch=1),
    dict(tile_m=16, resprop_max_elems=8, resprop_max_batch=2),
], ids=["accumulators1", "p_bank_one_row", "batch1", "tall_tiles_small_p"])
def test_regression_programs_fit_the_configuration(fields):
    """Every suite's vectors are made (each program is encoded for the core, which checks that it
    fits: accumulators, P bank, batch); they failed with ProgramMismatch before."""
    cfg = dataclasses.replace(preset("tiny"), **fields)
    for suite in suites(cfg):
        if suite.vectors is not None:
            assert suite.vectors(cfg, 1), suite.test_module
    assert len(resprop_cases(cfg, 1)) == 4


def test_resprop_cases_of_the_presets_are_unchanged_by_the_fitting():
    """The cut to the P bank leaves a configuration that holds the plans as it was."""
    names = [c.name.split("_thr")[0] for c in resprop_cases(preset("tiny"), 1)]
    assert names == ["resprop_n3_r5_c5_j1", "resprop_n6_r1_c3_j6", "resprop_n2_r2_c4_j1", "resprop_n2_r3_c4_j0"]


def test_acc_buffers_of_a_one_accumulator_core():
    assert acc_buffers(ODD) == 1 and acc_buffers(preset("default")) == 2
    from ref.contract.random_programs import random_program

    program = random_program(mode="all", density=0.5, tile_m=ODD.tile_m, tile_n=ODD.tile_n, tile_k=ODD.tile_k,
                             operand_bits=ODD.operand_bits, acc_bits=ODD.acc_bits, n_gemms=3, seed=1,
                             acc_buffers=acc_buffers(ODD))
    encode_program(program, ODD)


@pytest.mark.cosim
def test_odd_configuration_passes_its_own_regression_on_both_simulators(tmp_path):
    """The core's regression, the AXI top's, and the top-K and ReSprop units' testbenches of ``ODD``
    on Icarus and Verilator, which must agree value for value and cycle for cycle (``stag sim``'s
    own flow, ``stag.verify.verify_design``)."""
    print(f"config: {ODD.to_dict()} seed=1")
    design = generate(ODD, tmp_path / "rtl")
    outcomes = verify_design(design, sims=("icarus", "verilator"), seeds=(1,), work_dir=tmp_path / "sim",
                             progress=print)
    assert {o.module for o in outcomes} == {"sim.tb_core", "sim.tb_topk", "sim.tb_resprop", "sim.tb_axi"}
    assert len(outcomes) == 8 and all(o.tests > 0 for o in outcomes)
