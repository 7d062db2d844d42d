"""``stag sweep``: design-space exploration over configuration fields and workloads (docs/sweep.md).

:mod:`stag.sweep.spec` reads ``SPEC.toml`` into points, :mod:`stag.sweep.cores` knows each core's
fields, cycle model and synthesis, :mod:`stag.sweep.run` evaluates the points as Ray tasks with a
per-point cache, :mod:`stag.sweep.pareto` draws and tabulates the Pareto fronts.
"""

from stag.sweep.pareto import pareto_front
from stag.sweep.run import SweepOutcome, read_results, run_sweep
from stag.sweep.spec import Point, SpecError, SweepSpec, load_spec, parse_spec

__all__ = ["Point", "SpecError", "SweepOutcome", "SweepSpec", "load_spec", "pareto_front", "parse_spec",
           "read_results", "run_sweep"]
