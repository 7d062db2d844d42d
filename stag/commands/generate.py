"""``stag generate``: write a design's Verilog, port metadata, configuration and filelist."""

from __future__ import annotations

import argparse
import time

from hw.generate import generate
from stag.commands.common import add_design_arguments, config_from_args

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="generate Verilog for a configuration",
        description="Write rtl_out/<name>/: the Verilog, <name>.ports.json, <name>.config.json "
                    "and the filelist <name>.f. Output is deterministic and written atomically.")
    add_design_arguments(parser, work=False)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    config = config_from_args(args)
    design = generate(config, args.out)
    print(f"generated {config.name} ({config.top_name}, {config.operand_bits}-bit operands, "
          f"{config.acc_bits}-bit accumulator) in {time.perf_counter() - started:.1f} s")
    for path in (design.verilog, design.ports, design.resolved_config, design.filelist):
        print(f"  {path}")
    return 0
