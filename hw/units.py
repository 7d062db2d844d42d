"""Gradient-path units generated beside the top, chosen by ``StagConfig.units``."""

from __future__ import annotations

from amaranth.lib import wiring

from hw.axi_top import AxiTop
from hw.bitmap_codec import BitmapDecoder, BitmapEncoder
from hw.config import UNITS, StagConfig
from hw.lfsr import GaloisLFSRUnit
from hw.pe_lane import PELane
from hw.relu_mask import MaskApply, ReluMaskEmit
from hw.resprop import ReSpropUnit
from hw.stochastic_pruner import StochasticPruner
from hw.topk_threshold import TopKThresholdUnit

__all__ = ["build_unit", "unit_dependencies"]


def unit_dependencies(unit: str | None) -> tuple[str | None, ...]:
    """Other modules of the design whose Verilog ``unit``'s Verilog instantiates (``None``: the top)."""
    return (None,) if unit == "axi" else ()


def build_unit(config: StagConfig, unit: str) -> wiring.Component:
    """A fresh component for ``unit`` (one of ``hw.config.UNITS``) configured by ``config``."""
    if unit == "pe_lane":
        return PELane(operand_bits=config.operand_bits, acc_bits=config.acc_bits, counter_bits=config.counter_bits)
    if unit == "lfsr":
        return GaloisLFSRUnit(width=config.lfsr_width, taps=config.lfsr_taps, seed=config.lfsr_seed)
    if unit == "relu_mask":
        return ReluMaskEmit(operand_bits=config.operand_bits, bus_elems=config.bus_elems, vector_elems=config.tile_k)
    if unit == "mask_apply":
        return MaskApply(operand_bits=config.operand_bits, bus_elems=config.bus_elems, vector_elems=config.tile_k)
    if unit == "topk":
        return TopKThresholdUnit(operand_bits=config.operand_bits, max_elems=config.topk_max_elems)
    if unit == "resprop":
        return ReSpropUnit(operand_bits=config.operand_bits, max_elems=config.resprop_max_elems,
                           max_batch=config.resprop_max_batch)
    if unit == "bitmap_encode":
        return BitmapEncoder(operand_bits=config.operand_bits, bus_elems=config.bus_elems, tile_k=config.tile_k)
    if unit == "bitmap_decode":
        return BitmapDecoder(operand_bits=config.operand_bits, bus_elems=config.bus_elems, tile_k=config.tile_k)
    if unit == "stochastic_pruner":
        return StochasticPruner(operand_bits=config.operand_bits, lfsr_width=config.lfsr_width,
                                lfsr_taps=config.lfsr_taps, lfsr_seed=config.lfsr_seed,
                                count_bits=config.prune_count_bits, frac_bits=config.prune_frac_bits)
    if unit == "axi":
        # The AXI top instantiates the generated core module (stag_<name>) rather than elaborating it
        # again; see unit_dependencies.
        return AxiTop(config, core_module=config.module_name(None))
    raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
