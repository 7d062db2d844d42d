"""Which cocotb test modules verify which module of a generated design."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hw.config import StagConfig
from sim.core_vectors import VectorCase

__all__ = ["Suite", "suites"]

# cocotb test module of each generated unit (see hw.config.UNITS).
_UNIT_MODULES = {"pe_lane": "sim.tb_pe_lane", "lfsr": "sim.tb_lfsr",
                 "relu_mask": "sim.tb_relu_mask", "mask_apply": "sim.tb_mask_apply", "topk": "sim.tb_topk",
                 "resprop": "sim.tb_resprop",
                 "bitmap_encode": "sim.tb_bitmap_codec", "bitmap_decode": "sim.tb_bitmap_codec",
                 "stochastic_pruner": "sim.tb_stochastic_pruner", "axi": "sim.tb_axi"}


@dataclass(frozen=True)
class Suite:
    """A cocotb test module and the design module it runs against (``unit=None``: the top).

    ``vectors(config, seed)``, when set, makes the test vectors the module reads from the file
    named by ``STAG_VECTORS`` (see :mod:`sim.core_vectors`).
    """

    test_module: str
    unit: str | None = None
    vectors: Callable[[StagConfig, int], list[VectorCase]] | None = None


def _core_vectors(config: StagConfig, seed: int) -> list[VectorCase]:
    # Imports torch; only when a core suite runs.
    from sim.core_regression import prune_cases, regression_cases, resprop_cases, topk_cases

    # Every mode and density, then the result path's pruner, top-K comparator and ReSprop difference.
    return (regression_cases(config, seed) + prune_cases(config, seed) + topk_cases(config, seed)
            + resprop_cases(config, seed))


def _axi_vectors(config: StagConfig, seed: int) -> list[VectorCase]:
    from sim.axi_cases import axi_cases  # imports torch; only when the AXI suite runs

    return axi_cases(config, seed)


#: Vector makers of the units whose testbench reads ``STAG_VECTORS``.
_UNIT_VECTORS = {"axi": _axi_vectors}


def suites(config: StagConfig) -> tuple[Suite, ...]:
    """Every suite for ``config``'s design: the top's (the sparse core), then each unit's."""
    return (Suite("sim.tb_core", vectors=_core_vectors),
            *(Suite(_UNIT_MODULES[unit], unit, _UNIT_VECTORS.get(unit)) for unit in config.units))
