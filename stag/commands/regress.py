"""``stag regress``: a design's cosimulation regression sharded as Ray tasks, with JUnit XML.

Examples::

    stag regress --preset tiny                                  # every suite, both simulators, seed 1
    stag regress --preset tiny --sim icarus --suites lfsr,pe_lane --seeds 1,2,3
    stag regress --preset default --address 10.0.0.5:6379       # on an existing Ray cluster
    stag regress --preset tiny --serial                         # the same jobs in this process

The checks of ``stag sim``, cut into one job per (simulator, suite, seed): each job generates the
design, builds its module and runs its cocotb module in a directory of its own
(``<work>/<name>/regress/jobs/<sim>.<suite>.seed<N>/``), so jobs can run on any node of a
cluster. The simulators' records must then agree for every suite and seed. Writes
``<work>/<name>/regress/junit.xml`` (a test suite per job, plus the cross-simulator checks) and
``summary.json``. A sharded run and ``--serial`` give identical results per test. Exit status 0
when every test passed and the simulators agree, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hw.config import PRESETS
from sim.runner import SIMULATORS
from stag.commands.common import config_from_args
from stag.commands.sim import seed_list
from stag.commands.sweep import add_cluster_arguments, executor_from_args
from stag.regress import plan_jobs, run_regression

__all__ = ["add_parser", "run"]


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"--suites must list suite names, got {text!r}")
    return names


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("regress", help="a design's cosimulation regression as Ray tasks, with JUnit XML",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", metavar="NAME",
                       help=f"a named configuration: {', '.join(sorted(PRESETS))} (default: default)")
    group.add_argument("--config", metavar="FILE", help="a TOML configuration file (see configs/)")
    parser.add_argument("--work", default="sim_build", metavar="DIR",
                        help="jobs, records and reports go to DIR/<name>/regress/ (default: sim_build)")
    parser.add_argument("--sim", choices=(*SIMULATORS, "both"), default="both",
                        help="simulator(s) to run (default: both)")
    parser.add_argument("--seeds", type=seed_list, default=[1], metavar="N,N,...",
                        help="random seeds of stimulus and stalls (default: 1)")
    parser.add_argument("--suites", type=_names, default=None, metavar="NAME,...",
                        help="only these suites: core (the top's) or unit names (default: every suite)")
    add_cluster_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    sims = SIMULATORS if args.sim == "both" else (args.sim,)
    try:
        jobs = plan_jobs(config, sims, args.seeds, args.suites)
        executor = executor_from_args(args)
    except ValueError as exc:
        print(f"stag regress: error: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.work) / config.name / "regress"
    print(f"regress {config.name}: {len(jobs)} jobs ({', '.join(sims)}; suites "
          f"{', '.join(dict.fromkeys(j.suite for j in jobs))}; seeds {', '.join(map(str, args.seeds))}) "
          f"{executor.where}", flush=True)
    outcome = run_regression(config, jobs, executor, out_dir)
    summary = outcome.summary
    disagree = [c for c in summary["crosscheck"] if not c["agree"]]
    verdict = "PASS" if outcome.passed else "FAIL"
    agree = f", simulators agree on {len(summary['crosscheck'])} suite/seed pairs" if summary["crosscheck"] else ""
    print(f"{verdict}: {summary['tests'] - summary['failures']} of {summary['tests']} cocotb tests passed in "
          f"{len(jobs)} jobs{agree} on {len(summary['nodes'])} node(s), {summary['seconds']:.1f} s")
    for check in disagree:
        print(f"  {check['suite']} seed {check['seed']}: {'; '.join(check['problems'])}")
    print(f"junit      {outcome.junit}")
    print(f"summary    {outcome.summary_path}")
    return 0 if outcome.passed else 1
