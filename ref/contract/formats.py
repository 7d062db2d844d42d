"""Operand storage formats of the accelerator: dense tiles and bitmap-compressed tiles.

A bitmap tile stores one presence bit per element (row-major) plus the nonzero values packed in
the same row-major order. This is the format the zero-skipping scheduler reads: the bitmap row of
A and the bitmap column of B are ANDed to find effectual (a, b) pairs, and a prefix sum (popcount)
over the bitmap gives each nonzero's address in ``values``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class BitmapTile:
    """A bitmap-compressed 2-D integer tile.

    Fields:
        shape:  (rows, cols) of the dense tile.
        bitmap: bool tensor [rows, cols]; True where the dense element is nonzero.
        values: int64 1-D tensor of the nonzero elements in row-major order;
                ``len(values) == bitmap.sum()`` and no value is 0.

    The invariants are checked on construction, so every BitmapTile decodes unambiguously.
    """

    shape: tuple[int, int]
    bitmap: torch.Tensor
    values: torch.Tensor

    def __post_init__(self) -> None:
        _check_shape(self.shape)
        if not isinstance(self.bitmap, torch.Tensor) or self.bitmap.dtype != torch.bool:
            raise ValueError("bitmap must be a bool tensor")
        if tuple(self.bitmap.shape) != tuple(self.shape):
            raise ValueError(f"bitmap must have shape {tuple(self.shape)}, got {tuple(self.bitmap.shape)}")
        if not isinstance(self.values, torch.Tensor) or self.values.dtype != torch.int64 or self.values.dim() != 1:
            raise ValueError("values must be a 1-D int64 tensor")
        nnz = int(self.bitmap.sum().item())
        if self.values.numel() != nnz:
            raise ValueError(f"values must hold bitmap.sum() = {nnz} elements, got {self.values.numel()}")
        if bool((self.values == 0).any()):
            raise ValueError("values must not contain 0 (zeros are encoded by the bitmap)")

    @property
    def nnz(self) -> int:
        """Number of stored (nonzero) values."""
        return int(self.values.numel())


def _check_shape(shape: tuple[int, int]) -> None:
    if (
        not isinstance(shape, tuple)
        or len(shape) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise ValueError(f"shape must be a tuple (rows, cols) of non-negative ints, got {shape!r}")


def _check_int_tile(tile: torch.Tensor, name: str) -> None:
    if not isinstance(tile, torch.Tensor) or tile.dtype != torch.int64 or tile.dim() != 2:
        got = f"{tile.dtype} tensor of {tile.dim()} dims" if isinstance(tile, torch.Tensor) else type(tile).__name__
        raise ValueError(f"{name} must be a 2-D int64 tensor, got {got}")


def encode_bitmap(tile: torch.Tensor) -> BitmapTile:
    """Compress a dense 2-D int64 tile [rows, cols] into a BitmapTile."""
    _check_int_tile(tile, "tile")
    bitmap = tile != 0
    # Boolean indexing walks the tensor in row-major order, which is the packing order of values.
    values = tile[bitmap].clone()
    return BitmapTile(shape=(int(tile.shape[0]), int(tile.shape[1])), bitmap=bitmap, values=values)


def decode_bitmap(bt: BitmapTile) -> torch.Tensor:
    """Expand a BitmapTile into its dense int64 tile [rows, cols] (exact inverse of encode_bitmap)."""
    dense = torch.zeros(bt.shape, dtype=torch.int64)
    dense[bt.bitmap] = bt.values
    return dense


def metadata_bits(bt: BitmapTile) -> int:
    """Storage overhead of the bitmap in bits: one bit per dense element (rows * cols)."""
    return bt.shape[0] * bt.shape[1]
