"""Which cocotb test modules verify a generated design."""

from __future__ import annotations

from hw.config import StagConfig

__all__ = ["test_modules"]


def test_modules(config: StagConfig) -> tuple[str, ...]:
    """The cocotb modules to run against the top of ``config``'s design (its top is the PE lane)."""
    del config  # every configuration currently has the same top; later tops will choose here
    return ("sim.tb_pe_lane",)
