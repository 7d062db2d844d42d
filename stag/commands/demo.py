"""``stag demo``: the main job on the default configuration.

Generate the design, lint it, run its cocotb regression on Icarus and Verilator, and print a
short summary.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hw.generate import generate
from sim.lint import lint
from sim.runner import SIMULATORS, CosimFailure
from stag.commands.common import add_design_arguments, config_from_args
from stag.commands.sim import seed_list
from stag.verify import verify_design

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="generate, lint and verify the default design",
                                   description=__doc__)
    add_design_arguments(parser)
    parser.add_argument("--seeds", type=seed_list, default=[1, 2], metavar="N,N,...",
                        help="random seeds (default: 1,2)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    config = config_from_args(args)
    print(f"== 1/3 generate: {config.name}")
    design = generate(config, args.out)
    lines = design.verilog.read_text(encoding="utf-8").count("\n")
    print(f"   {design.verilog} ({lines} lines), ports, configuration and filelist in {design.directory}")
    print("== 2/3 lint: verilator --lint-only -Wall")
    report = lint(design)
    print(f"   {report.summary()}")
    if not report.clean:
        return 1
    print(f"== 3/3 cosimulate on {' and '.join(SIMULATORS)} against ref")
    outcomes = verify_design(design, sims=SIMULATORS, seeds=args.seeds,
                             work_dir=Path(args.work) / config.name,
                             progress=lambda line: print(f"   {line}"))
    if not outcomes:
        raise CosimFailure("no cocotb run happened")
    tests = sum(o.tests for o in outcomes)
    print("== summary")
    print(f"   design     {config.top_name}: {config.operand_bits}-bit operands, {config.acc_bits}-bit "
          f"accumulator, {config.counter_bits}-bit counters")
    print("   lint       clean")
    print(f"   cosim      {tests} tests passed on {', '.join(SIMULATORS)}, seeds "
          f"{', '.join(map(str, args.seeds))}; simulators agree value for value, cycle for cycle")
    print(f"   time       {time.perf_counter() - started:.1f} s")
    return 0
