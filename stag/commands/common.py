"""Argument helpers shared by the ``stag`` subcommands."""

from __future__ import annotations

import argparse

from hw.config import PRESETS, StagConfig, load_config, preset

__all__ = ["add_design_arguments", "config_from_args"]


def add_design_arguments(parser: argparse.ArgumentParser, *, work: bool = True, out_flag: str = "--out") -> None:
    """``--preset NAME | --config FILE`` (default: the ``default`` preset), ``--out DIR`` (or
    ``out_flag``, stored as ``args.out`` or ``args.rtl``) where designs are generated, and (with
    ``work``) ``--work DIR`` for builds, runs and reports."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", metavar="NAME",
                       help=f"a named configuration: {', '.join(sorted(PRESETS))} (default: default)")
    group.add_argument("--config", metavar="FILE", help="a TOML configuration file (see configs/)")
    parser.add_argument(out_flag, default="rtl_out", metavar="DIR",
                        help="the design is generated into DIR/<name>/ (default: rtl_out)")
    if work:
        parser.add_argument("--work", default="sim_build", metavar="DIR",
                            help="directory for builds, simulation runs and reports (default: sim_build)")


def config_from_args(args: argparse.Namespace) -> StagConfig:
    """The configuration the arguments name; raises ``hw.config.ConfigError`` when invalid."""
    if args.config is not None:
        return load_config(args.config)
    return preset(args.preset or "default")
