"""``stag sim``: run a design's cocotb regression on Icarus and/or Verilator."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hw.generate import generate
from sim.runner import SIMULATORS
from stag.commands.common import add_design_arguments, config_from_args
from stag.verify import verify_design

__all__ = ["add_parser", "run", "seed_list"]


def seed_list(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]``; seeds are non-negative integers."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or any(seed < 0 for seed in seeds):
        raise argparse.ArgumentTypeError(f"--seeds must list non-negative integers, got {text!r}")
    return seeds


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sim", help="run the cocotb regression of a design",
        description="Generate the design, build it for each simulator and run its cocotb tests "
                    "for each seed; values and cycle counts must match ref and agree across simulators.")
    add_design_arguments(parser)
    parser.add_argument("--sim", choices=(*SIMULATORS, "both"), default="both",
                        help="simulator(s) to run (default: both)")
    parser.add_argument("--seeds", type=seed_list, default=[1], metavar="N,N,...",
                        help="random seeds of stimulus and stalls (default: 1)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    design = generate(config, args.out)
    sims = SIMULATORS if args.sim == "both" else (args.sim,)
    started = time.perf_counter()
    outcomes = verify_design(design, sims=sims, seeds=args.seeds, work_dir=Path(args.work) / config.name)
    tests = sum(o.tests for o in outcomes)
    agree = " and agree value for value, cycle for cycle" if len(sims) > 1 else ""
    print(f"PASS: {tests} cocotb tests of {config.name} on {', '.join(sims)} "
          f"(seeds {', '.join(map(str, args.seeds))}){agree} in {time.perf_counter() - started:.1f} s")
    return 0
