"""The accelerator's program contract: command set, exact integer evaluator, and layer lowering.

See docs/contract.md. Public API:

- formats:  BitmapTile, encode_bitmap, decode_bitmap, metadata_bits
- commands: Operand, TileGemm, Drain, Region, Program, PruneSetting, ReSpropSetting
- evaluate: evaluate, ProgramResult, CommandCount, drain_mask, drain_keep_mask, resprop_tile, wrap
- lowering: lower_pass, run_pass, lower_gemm, gemm_formats, im2col, LoweredPass, PassResult
- random_programs: random_program (random sparse programs for RTL verification and benchmarks)
- trace_programs: trace_programs, TracePass, truncate_program, make_digits_trace (programs from
  captured training traces)
- units: the gradient-path units' commands (ReluMaskEmit, MaskApply, StochasticPrune, TopKSelect,
  ReSpropDifference, BitmapEncode, BitmapDecode) and ``evaluate_unit``, on a ``machine.StepParams``
- layer_step: one training step of a conv layer as a chain of programs and unit commands
"""

from ref.contract.commands import Drain, Operand, Program, PruneSetting, Region, ReSpropSetting, TileGemm
from ref.contract.evaluate import (
    CommandCount,
    ProgramResult,
    drain_keep_mask,
    drain_mask,
    evaluate,
    resprop_tile,
    wrap,
)
from ref.contract.formats import BitmapTile, decode_bitmap, encode_bitmap, metadata_bits
from ref.contract.lowering import LoweredPass, PassResult, gemm_formats, im2col, lower_gemm, lower_pass, run_pass
from ref.contract.random_programs import random_program
from ref.contract.trace_programs import TracePass, make_digits_trace, trace_programs, truncate_program

__all__ = [
    "BitmapTile",
    "CommandCount",
    "Drain",
    "LoweredPass",
    "Operand",
    "PassResult",
    "Program",
    "ProgramResult",
    "PruneSetting",
    "ReSpropSetting",
    "Region",
    "TileGemm",
    "TracePass",
    "decode_bitmap",
    "drain_keep_mask",
    "drain_mask",
    "encode_bitmap",
    "evaluate",
    "gemm_formats",
    "im2col",
    "lower_gemm",
    "lower_pass",
    "make_digits_trace",
    "metadata_bits",
    "random_program",
    "resprop_tile",
    "run_pass",
    "trace_programs",
    "truncate_program",
    "wrap",
]
