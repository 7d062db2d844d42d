"""ref.vector_extent: the rows and k of a tile that the vector core is sent."""

from __future__ import annotations

import pytest
import torch

from ref.contract.commands import Operand, TileGemm
from ref.vector_extent import tile_extent


def _gemm(a: torch.Tensor, mask=None, accumulate=False) -> TileGemm:
    return TileGemm(0, Operand.bitmap(a), Operand.dense(torch.ones((a.shape[1], 4), dtype=torch.int64)), mask,
                    accumulate)


def test_extent_covers_the_last_nonzero_row_and_column():
    a = torch.zeros((6, 8), dtype=torch.int64)
    a[3, 4] = 2
    assert tile_extent(_gemm(a)) == (4, 5)
    assert tile_extent(_gemm(a), k_step=4) == (4, 8)     # whole beats of B rows
    assert tile_extent(_gemm(torch.zeros((6, 8), dtype=torch.int64)), k_step=2) == (0, 2)


def test_extent_covers_rows_the_mask_changes_under_accumulation():
    a = torch.zeros((6, 8), dtype=torch.int64)
    a[1, 0] = 1
    mask = torch.ones((6, 4), dtype=torch.bool)
    mask[4, 2] = False                                   # must be zeroed when accumulating
    assert tile_extent(_gemm(a, mask, accumulate=True)) == (5, 1)
    assert tile_extent(_gemm(a, mask, accumulate=False)) == (2, 1)   # cleared anyway


def test_extent_rejects_a_bad_step():
    with pytest.raises(ValueError, match="k_step must be an int >= 1"):
        tile_extent(_gemm(torch.ones((2, 2), dtype=torch.int64)), k_step=0)
