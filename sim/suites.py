"""Which cocotb test modules verify which module of a generated design."""

from __future__ import annotations

from dataclasses import dataclass

from hw.config import StagConfig

__all__ = ["Suite", "suites"]

# cocotb test module of each generated unit (see hw.config.UNITS).
_UNIT_MODULES = {"lfsr": "sim.tb_lfsr"}


@dataclass(frozen=True)
class Suite:
    """A cocotb test module and the design module it runs against (``unit=None``: the top)."""

    test_module: str
    unit: str | None = None


def suites(config: StagConfig) -> tuple[Suite, ...]:
    """Every suite for ``config``'s design: the top's (the PE lane for now), then each unit's."""
    return (Suite("sim.tb_pe_lane"), *(Suite(_UNIT_MODULES[unit], unit) for unit in config.units))
