"""The verification flow behind ``stag sim`` and ``stag demo``: build, run, cross-check.

For a generated design: build it once per simulator, run its cocotb modules for every seed on
every simulator, and require identical records (values and cycle numbers) across simulators.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hw.generate import GeneratedDesign
from sim.core_vectors import write_vectors
from sim.crosscheck import record_differences
from sim.runner import CosimFailure, build, run_cocotb
from sim.suites import suites

__all__ = ["SimOutcome", "verify_design"]


@dataclass(frozen=True)
class SimOutcome:
    """One passing cocotb run."""

    sim: str
    seed: int
    module: str
    tests: int
    seconds: float
    record_dir: Path


def verify_design(
    design: GeneratedDesign,
    *,
    sims: Sequence[str],
    seeds: Sequence[int],
    work_dir: Path,
    progress: Callable[[str], None] = print,
) -> list[SimOutcome]:
    """Run every cocotb module of ``design``; raise :class:`CosimFailure` on the first failure."""
    outcomes: list[SimOutcome] = []
    design_suites = suites(design.config)
    total = len(sims) * len(seeds) * len(design_suites)
    for sim in sims:
        for suite in design_suites:
            module_name = design.config.module_name(suite.unit)
            started = time.perf_counter()
            progress(f"building {module_name} for {sim} ...")
            runner = build(design, sim, work_dir / sim / module_name / "build", unit=suite.unit)
            progress(f"built {module_name} for {sim} in {time.perf_counter() - started:.1f} s")
            for seed in seeds:
                started = time.perf_counter()
                test_dir = work_dir / sim / f"seed{seed}" / suite.test_module.rsplit(".", 1)[-1]
                extra_env = {}
                if suite.vectors is not None:
                    test_dir.mkdir(parents=True, exist_ok=True)
                    vectors = write_vectors(test_dir / "vectors.json", suite.vectors(design.config, seed))
                    extra_env["STAG_VECTORS"] = str(vectors.resolve())
                run = run_cocotb(runner, design, test_module=suite.test_module, seed=seed, unit=suite.unit,
                                 test_dir=test_dir, extra_env=extra_env)
                outcome = SimOutcome(sim, seed, suite.test_module, run.tests, time.perf_counter() - started,
                                     run.record_dir)
                outcomes.append(outcome)
                progress(f"[{len(outcomes)}/{total}] {sim} seed {seed} {suite.test_module}: "
                         f"{run.tests} tests passed ({outcome.seconds:.1f} s)")
    by_key: dict[tuple[int, str], list[SimOutcome]] = {}
    for outcome in outcomes:
        by_key.setdefault((outcome.seed, outcome.module), []).append(outcome)
    for (seed, module), group in by_key.items():
        for other in group[1:]:
            problems = record_differences(group[0].record_dir, other.record_dir)
            if problems:
                raise CosimFailure(f"{module} seed {seed}: {group[0].sim} and {other.sim} disagree: "
                                   + "; ".join(problems))
    return outcomes
