"""The machine a layer step runs on: the fields of a generated design that its programs and unit
commands depend on (``sim.layer_chain.step_params`` builds it from a ``hw.config.StagConfig``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StepParams"]


@dataclass(frozen=True)
class StepParams:
    """The machine a step's programs and unit commands run on.

    operand_bits: signed code width of every GEMM operand and unit stream (3..16).
    acc_bits: accumulator width of the core; tile_m, tile_n, tile_k: its tile sizes (``tile_k`` is
    also the vector length of the ReLU-mask units and the bitmap codec); bus_elems: codes per beat.
    lfsr_width, lfsr_taps: the pruner's LFSR; prune_frac_bits: fraction bits of its constant;
    prune_count_bits: width of its element count. topk_max_elems: largest top-K tensor.
    resprop_max_elems, resprop_max_batch: ReSprop P bank depth and largest batch.
    """

    operand_bits: int
    acc_bits: int
    tile_m: int
    tile_n: int
    tile_k: int
    bus_elems: int
    lfsr_width: int
    lfsr_taps: int
    prune_frac_bits: int
    prune_count_bits: int
    topk_max_elems: int
    resprop_max_elems: int
    resprop_max_batch: int

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"StepParams.{name} must be a positive integer, got {v!r}")
        if not 3 <= self.operand_bits <= 16:
            # ReSprop's dY needs operand_bits - 1 >= 2 bits; the torch checks stay exact up to 16.
            raise ValueError(f"StepParams.operand_bits must be in 3..16, got {self.operand_bits}")

    @property
    def tiles(self) -> tuple[int, int, int]:
        return (self.tile_m, self.tile_n, self.tile_k)
