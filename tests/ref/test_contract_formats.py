"""Bitmap tile format: round trip, invariants, metadata size."""

from __future__ import annotations

import pytest
import torch

from ref.contract.formats import BitmapTile, decode_bitmap, encode_bitmap, metadata_bits

SEED = 1234


def _random_tile(rows: int, cols: int, density: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    vals = torch.randint(1, 128, (rows, cols), generator=g) * (torch.randint(0, 2, (rows, cols), generator=g) * 2 - 1)
    keep = torch.rand((rows, cols), generator=g) < density
    return torch.where(keep, vals, torch.zeros((), dtype=torch.int64))


@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (8, 8), (7, 16)])
def test_round_trip_and_invariants(density: float, shape: tuple[int, int]) -> None:
    print(f"seed={SEED} density={density} shape={shape}")
    tile = _random_tile(*shape, density, SEED)
    bt = encode_bitmap(tile)
    assert bt.shape == shape
    assert torch.equal(bt.bitmap, tile != 0)
    assert bt.values.numel() == int(bt.bitmap.sum()) == int((tile != 0).sum())
    assert not bool((bt.values == 0).any())
    # Values are packed in row-major order: compare with an explicit double loop.
    expected = [int(tile[r, c]) for r in range(shape[0]) for c in range(shape[1]) if tile[r, c] != 0]
    assert bt.values.tolist() == expected
    assert torch.equal(decode_bitmap(bt), tile)
    assert metadata_bits(bt) == shape[0] * shape[1]


def test_all_zero_tile() -> None:
    bt = encode_bitmap(torch.zeros((4, 6), dtype=torch.int64))
    assert bt.nnz == 0 and not bool(bt.bitmap.any())
    assert torch.equal(decode_bitmap(bt), torch.zeros((4, 6), dtype=torch.int64))


def test_rejects_inconsistent_tiles() -> None:
    bm = torch.tensor([[True, False], [False, True]])
    with pytest.raises(ValueError, match="values must hold"):
        BitmapTile((2, 2), bm, torch.tensor([1], dtype=torch.int64))
    with pytest.raises(ValueError, match="must not contain 0"):
        BitmapTile((2, 2), bm, torch.tensor([1, 0], dtype=torch.int64))
    with pytest.raises(ValueError, match="bitmap must have shape"):
        BitmapTile((2, 3), bm, torch.tensor([1, 2], dtype=torch.int64))
    with pytest.raises(ValueError, match="tile must be a 2-D int64 tensor"):
        encode_bitmap(torch.ones((2, 2), dtype=torch.float32))
