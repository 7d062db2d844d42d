"""The top-level component of a generated design, chosen from the configuration.

For now the generated design is the PE lane; as blocks land (PE array, schedulers, gradient-mask
units, AXI top level) this is the one place that assembles them.
"""

from __future__ import annotations

from amaranth.lib import wiring

from hw.config import StagConfig
from hw.pe_lane import PELane

__all__ = ["build_top"]


def build_top(config: StagConfig) -> wiring.Component:
    """A fresh, unelaborated top-level component for ``config``."""
    return PELane(
        operand_bits=config.operand_bits,
        acc_bits=config.acc_bits,
        counter_bits=config.counter_bits,
    )
