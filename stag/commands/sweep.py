"""``stag sweep``: a design-space exploration over configuration fields and workloads, on Ray.

Examples::

    stag sweep examples/sweep_small.toml                 # a local Ray instance on every CPU
    stag sweep SPEC.toml --num-cpus 1                    # one worker
    stag sweep SPEC.toml --address 10.0.0.5:6379         # an existing Ray cluster
    stag sweep SPEC.toml --serial                        # no Ray: every point in this process

Every point of SPEC.toml (docs/sweep.md) is evaluated with its core's exact cycle model on a real
training iteration of each workload (cycles, dense-equivalent MACs per cycle) and, when the spec
asks, synthesized (LUT4, FF, DSP, BRAM) and routed (Fmax, GMAC/s). Results are streamed to
``<out>/<name>/results.jsonl`` with a progress line per point; a rerun skips every finished point.
The run ends with the Pareto fronts (throughput against LUT4 and against Fmax) in
``pareto.md`` and ``pareto.png`` beside it. Invalid points are reported with the configuration
error. A bad spec is one error line naming the key, exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from stag.cluster import Executor
from stag.sweep import SpecError, load_spec, run_sweep

__all__ = ["add_cluster_arguments", "add_parser", "executor_from_args", "run"]


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """``--address``, ``--num-cpus`` and ``--serial``: where the tasks run."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--address", default=None, metavar="HOST:PORT",
                       help="run on this existing Ray cluster (default: start a local Ray instance)")
    where.add_argument("--serial", action="store_true",
                       help="no Ray: run every task in this process, one after another")
    parser.add_argument("--num-cpus", type=int, default=None, metavar="N",
                        help="CPUs of the local Ray instance, one task each (default: every CPU)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="design-space exploration of a SPEC.toml on Ray, with Pareto fronts",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, metavar="SPEC.toml", help="the sweep specification (docs/sweep.md)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="results go to DIR/<name>/ (default: the spec's `out`, else runs/sweep)")
    parser.add_argument("--fresh", action="store_true", help="forget the finished points and evaluate every point")
    add_cluster_arguments(parser)
    parser.set_defaults(run=run)


def executor_from_args(args: argparse.Namespace) -> Executor:
    """The executor ``--address`` / ``--num-cpus`` / ``--serial`` ask for; ValueError when they conflict."""
    if args.num_cpus is not None and args.num_cpus < 1:
        raise ValueError(f"--num-cpus must be a positive integer, got {args.num_cpus}")
    if args.serial and args.num_cpus is not None:
        raise ValueError("--num-cpus sizes a local Ray instance; --serial runs without Ray")
    return Executor(serial=args.serial, address=args.address, num_cpus=args.num_cpus)


def run(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.spec)
        executor = executor_from_args(args)
    except (SpecError, ValueError) as exc:
        print(f"stag sweep: error: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        spec = dataclasses.replace(spec, out=args.out)
    outcome = run_sweep(spec, executor, fresh=args.fresh)
    print()
    print(outcome.table.read_text(encoding="utf-8").rstrip())
    print()
    print(f"{outcome.points} points: {outcome.skipped} skipped (cached), {outcome.evaluated} evaluated, "
          f"{outcome.invalid} invalid, {outcome.errors} failed, in {outcome.seconds:.1f} s")
    print(f"results    {outcome.results}")
    print(f"table      {outcome.table}")
    print(f"plot       {outcome.plot}")
    return 1 if outcome.errors else 0
