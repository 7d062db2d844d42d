"""Gradient-path units generated beside the top, chosen by ``StagConfig.units``."""

from __future__ import annotations

from amaranth.lib import wiring

from hw.config import UNITS, StagConfig
from hw.lfsr import GaloisLFSRUnit

__all__ = ["build_unit"]


def build_unit(config: StagConfig, unit: str) -> wiring.Component:
    """A fresh component for ``unit`` (one of ``hw.config.UNITS``) configured by ``config``."""
    if unit == "lfsr":
        return GaloisLFSRUnit(width=config.lfsr_width, taps=config.lfsr_taps, seed=config.lfsr_seed)
    raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
