"""The accelerator's program contract: command set, exact integer evaluator, and layer lowering.

See docs/contract.md. Public API:

- formats:  BitmapTile, encode_bitmap, decode_bitmap, metadata_bits
- commands: Operand, TileGemm, Drain, Region, Program
- evaluate: evaluate, ProgramResult, CommandCount, wrap
- lowering: lower_pass, run_pass, lower_gemm, gemm_formats, im2col, LoweredPass, PassResult
"""

from ref.contract.commands import Drain, Operand, Program, Region, TileGemm
from ref.contract.evaluate import CommandCount, ProgramResult, evaluate, wrap
from ref.contract.formats import BitmapTile, decode_bitmap, encode_bitmap, metadata_bits
from ref.contract.lowering import LoweredPass, PassResult, gemm_formats, im2col, lower_gemm, lower_pass, run_pass

__all__ = [
    "BitmapTile",
    "CommandCount",
    "Drain",
    "LoweredPass",
    "Operand",
    "PassResult",
    "Program",
    "ProgramResult",
    "Region",
    "TileGemm",
    "decode_bitmap",
    "encode_bitmap",
    "evaluate",
    "gemm_formats",
    "im2col",
    "lower_gemm",
    "lower_pass",
    "metadata_bits",
    "run_pass",
    "wrap",
]
