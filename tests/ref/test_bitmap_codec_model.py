"""The integer codec model ``ref.bitmap_codec`` against the contract's formats and docs/core.md.

The model is what the cocotb testbench of the codec units compares with, so it is checked here
against ``ref.contract.formats.encode_bitmap`` / ``decode_bitmap`` (a second implementation) and
against the hand-worked beats of the worked example in docs/core.md.
"""

from __future__ import annotations

import random

import pytest
import torch

from ref.bitmap_codec import (
    compressed_beats,
    decode_compressed,
    decode_dense,
    dense_beats,
    encode_compressed,
    pack_codes,
    unpack_codes,
)
from ref.contract import decode_bitmap, encode_bitmap

TINY = {"operand_bits": 4, "bus_elems": 4, "tile_k": 8}


def test_worked_example_of_docs_core_md():
    """A rows 0..3 of docs/core.md's worked example: beats 0..7 of its data table."""
    rows = [[0, 3, 0, 0, -2, 0, 0, 1], [0] * 8, [5, -1, 2, 0, 7, -8, 0, 4], [0, 0, 0, 0, 0, 0, 0, -3]]
    beats = [b for r in rows for b in encode_compressed(r, **TINY)]
    assert beats == [0x0092, 0x01E3, 0x0000, 0x00B7, 0x72F5, 0x0048, 0x0080, 0x000D]
    at, decoded = 0, []
    for _ in rows:
        values, at = decode_compressed(beats, **TINY, start=at)
        decoded.append(values)
    assert decoded == rows and at == len(beats)
    # B column 0 of the same example, dense: 1, 2, 0, -4 | 1, 0, 3, -1.
    assert dense_beats([1, 2, 0, -4, 1, 0, 3, -1], **TINY) == [0xC021, 0xF301]


@pytest.mark.parametrize("geometry", [(4, 4, 8), (8, 16, 64), (2, 1, 5), (3, 2, 12), (16, 4, 16)])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_model_agrees_with_contract_formats(geometry, density):
    ob, w, k = geometry
    geo = {"operand_bits": ob, "bus_elems": w, "tile_k": k}
    seed = sum(geometry) * 100 + int(density * 10)
    print(f"seed={seed}")
    rng = random.Random(seed)
    low, high = -(1 << (ob - 1)), (1 << (ob - 1)) - 1
    for _ in range(20):
        vector = [rng.choice((low, high, rng.randint(low, high) or low)) if rng.random() < density else 0
                  for _ in range(k)]
        bt = encode_bitmap(torch.tensor([vector], dtype=torch.int64))
        beats = encode_compressed(vector, **geo)
        assert len(beats) == compressed_beats(bt.nnz, **geo)
        nb = -(-k // (w * ob))
        bitmap = sum(b << (j * w * ob) for j, b in enumerate(beats[:nb]))
        assert [bool((bitmap >> i) & 1) for i in range(k)] == bt.bitmap[0].tolist()
        packed = [v for b in beats[nb:] for v in unpack_codes(b, w, ob)]
        assert packed[:bt.nnz] == bt.values.tolist() and not any(packed[bt.nnz:])
        values, end = decode_compressed(beats, **geo)
        assert end == len(beats)
        assert values == decode_bitmap(bt)[0].tolist() == vector
        assert decode_dense(dense_beats(vector, **geo), **geo) == vector


def test_pack_and_unpack_extremes():
    assert pack_codes([-8, 7, -1, 0], 4) == 0x0F78
    assert unpack_codes(0x0F78, 4, 4) == [-8, 7, -1, 0]
    assert unpack_codes(pack_codes([-(1 << 31), (1 << 31) - 1], 32), 2, 32) == [-(1 << 31), (1 << 31) - 1]


def test_decoder_ignores_bits_the_core_ignores():
    # Bitmap 0b1 plus junk at k >= 8 (bits 8..15); value beat with junk in its padding elements.
    values, end = decode_compressed([0xFF01, 0xABC5], **TINY)
    assert values == [5, 0, 0, 0, 0, 0, 0, 0] and end == 2


@pytest.mark.parametrize("call,message", [
    (lambda: encode_compressed([0] * 7, **TINY), "a vector has tile_k = 8 elements, got 7"),
    (lambda: encode_compressed([8] + [0] * 7, **TINY), "outside the signed 4-bit range"),
    (lambda: dense_beats([0] * 6, operand_bits=4, bus_elems=4, tile_k=6), "tile_k must be a multiple of bus_elems"),
    (lambda: decode_compressed([0x0003], **TINY), "needs 1 value beats, the stream has 0"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
