"""Argument helpers shared by the ``stag`` subcommands."""

from __future__ import annotations

import argparse

from hw.config import PRESETS, StagConfig, load_config, preset

__all__ = ["add_design_arguments", "config_from_args"]


def add_design_arguments(parser: argparse.ArgumentParser) -> None:
    """``--preset NAME | --config FILE`` (exactly one; default: the ``default`` preset)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", metavar="NAME",
                       help=f"a named configuration: {', '.join(sorted(PRESETS))} (default: default)")
    group.add_argument("--config", metavar="FILE", help="a TOML configuration file (see configs/)")


def config_from_args(args: argparse.Namespace) -> StagConfig:
    """The configuration the arguments name; raises ``hw.config.ConfigError`` when invalid."""
    if args.config is not None:
        return load_config(args.config)
    return preset(args.preset or "default")
