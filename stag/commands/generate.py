"""``stag generate``: write a design's Verilog, port metadata, configuration and file lists."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hw.generate import generate
from stag.commands.common import add_design_arguments, config_from_args

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate Verilog for a configuration",
        description="Write the design into DIR/<name>/ (--out DIR, default rtl_out): per module (the core "
                    "stag_<name> and each unit stag_<name>_<unit>) its Verilog <module>.v, its ports "
                    "<name>[.<unit>].ports.json and its file list <module>.f (only the Verilog files it "
                    "needs); then <name>.config.json and <name>.f (every Verilog file). Prints every file "
                    "written. Output is deterministic and written atomically.")
    add_design_arguments(parser)
    parser.add_argument("--cost", action="store_true",
                        help="also synthesize every module (the core and each unit) for ECP5 with Yosys and "
                             "print its cells; writes <work>/<name>/cost/cost.json (minutes for the default core)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    config = config_from_args(args)
    design = generate(config, args.out)
    files = design.files()
    print(f"generated {config.name} ({config.top_name}, {config.operand_bits}-bit operands, "
          f"{config.acc_bits}-bit accumulator) in {time.perf_counter() - started:.1f} s: {len(files)} files "
          f"in {design.directory}/ (--out DIR writes DIR/{config.name}/)")
    width = max(len(str(path)) for path, _ in files)
    for path, what in files:
        print(f"  {path!s:<{width}}  {what}")
    if args.cost:
        _print_costs(design, Path(args.work) / config.name / "cost")
    return 0


def _print_costs(design, work: Path) -> None:
    from stag.cost import COST_COLUMNS, module_costs, write_costs  # the synthesis tools load only here

    print(f"cost of each module (Yosys synth_ecp5, out of context, {len(design.modules)} modules) ...", flush=True)
    costs = module_costs(design, work, progress=lambda line: print(line, flush=True))
    width = max(len(label) for label in costs)
    print(f"{'module':<{width}}  " + "  ".join(f"{heading:>6}" for _, heading in COST_COLUMNS))
    for label, report in costs.items():
        print(f"{label:<{width}}  " + "  ".join(f"{getattr(report, field):>6}" for field, _ in COST_COLUMNS))
    write_costs(costs, work / "cost.json")
    print(f"  {work / 'cost.json'}")
