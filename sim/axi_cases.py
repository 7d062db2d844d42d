"""Test programs for the AXI top level's testbench (``sim.tb_axi``), with ``ref``'s expected results.

Random ``ref.contract`` programs (``ref.contract.random_programs``) encoded with
:func:`sim.core_vectors.make_case`, so the vector file format and the expected beats are the core
testbench's. Each case carries its input-gap and result-backpressure probabilities; the AXI
testbench applies them through cocotbext-axi pause generators.
"""

from __future__ import annotations

from dataclasses import replace

from hw.config import StagConfig
from ref.contract.random_programs import MODES, random_program
from sim.core_program import acc_buffers
from sim.core_regression import prune_cases, resprop_cases, topk_cases
from sim.core_vectors import VectorCase, make_case

__all__ = ["axi_cases"]


def axi_cases(config: StagConfig, seed: int, *, count: int | None = None, n_gemms: int | None = None,
              k_tiles: int = 2) -> list[VectorCase]:
    """``count`` random programs for ``config`` (default: every sparsity mode once with 4 output
    tiles on small tiles; two modes with 1 output tile on tiles over 4096 MACs), ``k_tiles`` GEMMs
    per output tile, densities drawn from the seed; all but the first run with random input gaps
    and result backpressure (the first measures the ungapped rate)."""
    big = config.tile_m * config.tile_n * config.tile_k > 4096
    if count is None:
        count = 2 if big else len(MODES)
    if n_gemms is None:
        n_gemms = 1 if big else 4
    densities = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
    cases = []
    for i in range(count):
        mode = MODES[(seed + i) % len(MODES)]
        density = densities[(seed * 3 + i * 2) % len(densities)]
        program = random_program(mode=mode, density=density, tile_m=config.tile_m, tile_n=config.tile_n,
                                 tile_k=config.tile_k, operand_bits=config.operand_bits, acc_bits=config.acc_bits,
                                 n_gemms=n_gemms, k_tiles=k_tiles, seed=seed * 1000 + 500 + i,
                                 acc_buffers=acc_buffers(config))
        gapped = i > 0
        cases.append(make_case(f"axi{i}_{mode}_d{round(density * 100):03d}", program, config,
                               idle=0.3 if gapped else 0.0, stall=0.4 if gapped else 0.0))
    # Programs that prune on the result path, loaded through PRUNE_TAU / PRUNE_SEED.
    for case in prune_cases(config, seed, n_gemms=2)[:1 if big else 2]:
        cases.append(replace(case, name=f"axi_{case.name}"))
    # Programs whose drains compare with a top-K threshold written to TOPK_THRESHOLD.
    for case in topk_cases(config, seed, n_gemms=2)[:1]:
        cases.append(replace(case, name=f"axi_{case.name}"))
    # ReSprop passes: settings and P through the RESPROP_* registers, the stored P read back.
    for case in resprop_cases(config, seed)[:1 if big else 2]:
        cases.append(replace(case, name=f"axi_{case.name}"))
    return cases
