"""The core's standard regression: random programs over every sparsity mode and density.

Used by ``stag sim`` / ``stag demo`` (through :mod:`sim.suites`) and the cosim tests. Each case is
a random ``ref.contract`` program (``ref.contract.random_programs``) in one mode (A sparse, B
sparse, output mask, all three, dense) at one density of ``DENSITIES``; every other case runs
with random input starvation and output backpressure. Expected values come from ``ref``.
"""

from __future__ import annotations

import dataclasses

from hw.config import StagConfig
from ref.contract import Drain, PruneSetting, evaluate
from ref.contract.random_programs import MODES, random_program, random_resprop_program
from ref.topk_codes import keep_count, select_threshold
from sim.core_program import acc_buffers, resprop_row_words
from sim.core_vectors import VectorCase, make_case

__all__ = ["DENSITIES", "TOPK_KEEP", "prune_cases", "regression_cases", "resprop_cases", "topk_cases"]

#: Kept fraction of the top-K cases whose threshold is selected from their own codes.
TOPK_KEEP = 0.3

#: Operand / mask densities of the regression (the issue's list).
DENSITIES: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def regression_cases(config: StagConfig, seed: int, *, modes: tuple[str, ...] = MODES,
                     densities: tuple[float, ...] = DENSITIES, n_gemms: int | None = None,
                     k_tiles: int = 2) -> list[VectorCase]:
    """One case per (mode, density) for ``config``'s core, seeded from ``seed``.

    ``n_gemms`` output tiles per program (default: 2 on small tiles, 1 when a dense tile is more than
    4096 MACs, to keep simulation time in check); two K tiles each, so accumulation is exercised.
    """
    if n_gemms is None:
        n_gemms = 2 if config.tile_m * config.tile_n * config.tile_k <= 4096 else 1
    cases = []
    for mi, mode in enumerate(modes):
        for di, density in enumerate(densities):
            program = random_program(
                mode=mode, density=density, tile_m=config.tile_m, tile_n=config.tile_n, tile_k=config.tile_k,
                operand_bits=config.operand_bits, acc_bits=config.acc_bits, n_gemms=n_gemms, k_tiles=k_tiles,
                seed=seed * 1000 + mi * 10 + di, acc_buffers=acc_buffers(config))
            stalled = (mi + di) % 2 == 1
            cases.append(make_case(f"{mode}_d{round(density * 100):03d}", program, config,
                                   idle=0.3 if stalled else 0.0, stall=0.4 if stalled else 0.0))
    return cases


def prune_cases(config: StagConfig, seed: int, *, n_gemms: int | None = None) -> list[VectorCase]:
    """Programs whose even output tiles drain pruned (the result-path pruner): a mid-range tau, a
    tau of 1, a tau above the code range (the substitute saturates to qmax) and tau = 0 (bypass),
    on different modes and densities; half under random stalls. Seeds and taus come from ``seed``."""
    if n_gemms is None:
        n_gemms = 4 if config.tile_m * config.tile_n * config.tile_k <= 4096 else 2
    qmax = (1 << (config.operand_bits - 1)) - 1
    plans = (("a", 0.7, max(1, qmax // 2)), ("all", 1.0, 1), ("b", 0.5, qmax + 3), ("dense", 1.0, 0))
    cases = []
    for i, (mode, density, tau) in enumerate(plans):
        lfsr_seed = 1 + (seed * 7919 + i * 104729) % ((1 << config.lfsr_width) - 1)
        setting = PruneSetting(tau=tau, seed=lfsr_seed, lfsr_width=config.lfsr_width, lfsr_taps=config.lfsr_taps)
        program = random_program(
            mode=mode, density=density, tile_m=config.tile_m, tile_n=config.tile_n, tile_k=config.tile_k,
            operand_bits=config.operand_bits, acc_bits=config.acc_bits, n_gemms=n_gemms, k_tiles=2,
            seed=seed * 1000 + 900 + i, prune=setting, acc_buffers=acc_buffers(config))
        stalled = i % 2 == 1
        cases.append(make_case(f"prune_{mode}_d{round(density * 100):03d}_tau{tau}", program, config,
                               idle=0.3 if stalled else 0.0, stall=0.4 if stalled else 0.0))
    return cases


def topk_cases(config: StagConfig, seed: int, *, n_gemms: int | None = None) -> list[VectorCase]:
    """Programs whose odd output tiles drain with the top-K comparator (``Drain(topk=True)``): a
    threshold selected exactly over those tiles' codes (SWAT's rule with keep = ``TOPK_KEEP``), a
    threshold of 1, one above every code (keeps nothing) and 0 (keeps everything), on different
    modes and densities; half under random stalls."""
    if n_gemms is None:
        n_gemms = 4 if config.tile_m * config.tile_n * config.tile_k <= 4096 else 2
    qmax = (1 << (config.operand_bits - 1)) - 1
    plans = (("a", 0.7, None), ("all", 1.0, 1), ("b", 0.5, qmax + 1), ("dense", 1.0, 0))
    cases = []
    for i, (mode, density, threshold) in enumerate(plans):
        program = random_program(
            mode=mode, density=density, tile_m=config.tile_m, tile_n=config.tile_n, tile_k=config.tile_k,
            operand_bits=config.operand_bits, acc_bits=config.acc_bits, n_gemms=n_gemms, k_tiles=2,
            seed=seed * 1000 + 950 + i, topk_threshold=0 if threshold is None else threshold,
            acc_buffers=acc_buffers(config))
        if threshold is None:
            # The threshold SWAT's recomputation would store for the codes these drains emit.
            drained = evaluate(program).tiles
            codes = [int(v) for cmd, tile in zip((c for c in program.commands if isinstance(c, Drain)), drained,
                                                 strict=True) if cmd.topk for v in tile.flatten().tolist()]
            threshold = select_threshold(codes, keep_count(TOPK_KEEP, len(codes)), operand_bits=config.operand_bits)
            program = dataclasses.replace(program, topk_threshold=threshold)
        stalled = i % 2 == 1
        cases.append(make_case(f"topk_{mode}_d{round(density * 100):03d}_thr{threshold}", program, config,
                               idle=0.3 if stalled else 0.0, stall=0.4 if stalled else 0.0))
    return cases


def resprop_cases(config: StagConfig, seed: int) -> list[VectorCase]:
    """ReSprop passes on the result path (``Drain(resprop=True)``), each with its P written through
    the core's P port first and the stored P read back after:

    - a sample's rows straddle the row tiles (R = tile_m + 1), ragged columns, the drain's shift
      2 bits short so codes saturate both ways, threshold the median |D|, storing sample 1,
      target 15 %;
    - one row per sample (R = 1, a linear layer's dY: tile_m samples per tile), threshold
      ``1 * 2**-128`` (T = 0, the exponent at its minimum), target 100 %, storing none (j = N);
    - a dense pass (S = g; the exponent is kept), storing the last sample;
    - full-width codes and a threshold ``qmax * 2**4`` above every |D| (nothing kept; the core
      clamps T), target 0.01 % (the exponent steps down), storing sample 0.

    Half run under random stalls. Sizes shrink on tiles above 4096 MACs to keep simulation short,
    and to what the core's P bank and batch hold (``resprop_max_elems``, ``resprop_max_batch``;
    :func:`_fit_resprop`), so every configuration the validator accepts gets its four passes.
    """
    tm, tn, ob = config.tile_m, config.tile_n, config.operand_bits
    small = tm * tn * config.tile_k <= 4096
    plans = (
        # n_samples, rows_per_sample, cols, sample, mant, exp, target_cp, dense, out_bits, saturate_bits
        (3 if small else 2, tm + 1, tn + 1, 1, None, 0, 1500, False, ob - 1, 2),
        (tm + 2, 1, tn - 1 if tn > 1 else 1, tm + 2, 1, -128, 10000, False, ob - 1, 0),
        (2, 2, tn, 1, 0, 3, 0, True, ob, 0),
        (2, tm // 2 + 1, tn, 0, (1 << ob) - 1, 4, 1, False, ob, 0),
    )
    cases = []
    for i, plan in enumerate(plans):
        n, r, c, j, thr, exp, target, dense, out_bits, saturate_bits = _fit_resprop(config, *plan)
        program = random_resprop_program(
            n_samples=n, rows_per_sample=r, cols=c, tile_m=tm, tile_n=tn, tile_k=config.tile_k,
            operand_bits=ob, acc_bits=config.acc_bits, out_bits=out_bits, sample=j, mant=thr, exp=exp,
            target_cp=target, dense=dense, saturate_bits=saturate_bits, seed=seed * 1000 + 970 + i,
            acc_buffers=acc_buffers(config))
        assert program.resprop is not None
        stalled = i % 2 == 1
        setting = program.resprop
        name = (f"resprop_n{n}_r{r}_c{c}_j{j}_thr{setting.mant}e{setting.exp}_t{target}"
                + ("_dense" if dense else "") + (f"_sat{saturate_bits}" if saturate_bits else ""))
        cases.append(make_case(name, program, config, idle=0.3 if stalled else 0.0, stall=0.4 if stalled else 0.0))
    return cases


def _fit_resprop(config: StagConfig, n: int, r: int, c: int, j: int, *rest) -> tuple:
    """A ReSprop plan ``(n, r, c, j, ...)`` cut to what ``config``'s core holds: the columns to the
    column tiles one P bank holds, the rows per sample to the rows of those that fit, the batch to
    ``resprop_max_batch`` (the stored sample stays inside it, or past it where the plan stores
    none). Unchanged when it fits. One row of one column tile always fits (the validator asks
    ``resprop_max_elems >= tile_n``)."""
    tn = config.tile_n
    tiles_fit = config.resprop_words // resprop_row_words(tn, config)
    c = min(c, tiles_fit * tn)
    r = min(r, config.resprop_words // resprop_row_words(c, config))
    cut = min(n, config.resprop_max_batch)
    j = cut if j >= n else min(j, cut - 1)
    return (cut, r, c, j, *rest)
