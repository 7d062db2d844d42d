"""Gradient-path units generated beside the top, chosen by ``StagConfig.units``."""

from __future__ import annotations

from amaranth.lib import wiring

from hw.config import UNITS, StagConfig
from hw.lfsr import GaloisLFSRUnit
from hw.pe_lane import PELane

__all__ = ["build_unit"]


def build_unit(config: StagConfig, unit: str) -> wiring.Component:
    """A fresh component for ``unit`` (one of ``hw.config.UNITS``) configured by ``config``."""
    if unit == "pe_lane":
        return PELane(operand_bits=config.operand_bits, acc_bits=config.acc_bits, counter_bits=config.counter_bits)
    if unit == "lfsr":
        return GaloisLFSRUnit(width=config.lfsr_width, taps=config.lfsr_taps, seed=config.lfsr_seed)
    raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
