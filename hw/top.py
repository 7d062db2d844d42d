"""The top-level component of a generated design, chosen from the configuration.

The top is the sparse compute core (``hw.core``); as blocks land (gradient-mask units on the result
path, AXI top level) this is the one place that assembles them.
"""

from __future__ import annotations

from amaranth.lib import wiring

from hw.config import StagConfig
from hw.core import SparseCore

__all__ = ["build_top"]


def build_top(config: StagConfig) -> wiring.Component:
    """A fresh, unelaborated top-level component for ``config``."""
    return SparseCore(config)
