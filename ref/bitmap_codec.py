"""Integer model of the bitmap codec: one ``tile_k`` operand vector <-> the core's data-stream beats.

This is the hardware-numerics view of ``ref.contract.formats`` (``encode_bitmap`` /
``decode_bitmap``) for a single vector, in the wire format of docs/core.md ("The data stream"),
with plain Python ints only (no torch) so a cocotb testbench can use it inside the simulator:

- a *beat* is ``bus_elems * operand_bits`` bits; element ``e`` sits at bits
  ``[e*operand_bits, (e+1)*operand_bits)`` as a two's-complement ``operand_bits`` code;
- a *dense* vector is ``tile_k / bus_elems`` beats, element ``k`` in beat ``k div bus_elems``;
- a *compressed* vector is ``ceil(tile_k / bus_bits)`` bitmap beats (bit ``k`` of the bitmap is
  bit ``k mod bus_bits`` of beat ``k div bus_bits``, 1 iff element ``k`` is nonzero), then the
  nonzeros in increasing ``k``, ``bus_elems`` per beat, in ``ceil(nnz / bus_elems)`` beats, the
  unused elements of the last beat 0. An all-zero vector has no value beats.

The decoder follows the core's reading rules: bitmap bits at ``k >= tile_k`` and the padding
elements of the last value beat are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "compressed_beats",
    "decode_compressed",
    "decode_dense",
    "dense_beats",
    "encode_compressed",
    "pack_codes",
    "unpack_codes",
]


def _check_geometry(operand_bits: int, bus_elems: int, tile_k: int) -> None:
    for name, value in (("operand_bits", operand_bits), ("bus_elems", bus_elems), ("tile_k", tile_k)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if operand_bits < 2:
        raise ValueError(f"operand_bits must be at least 2, not {operand_bits}")
    if tile_k % bus_elems:
        raise ValueError(f"tile_k must be a multiple of bus_elems = {bus_elems}, not {tile_k}")


def _check_vector(values: Sequence[int], operand_bits: int, tile_k: int) -> list[int]:
    values = [int(v) for v in values]
    if len(values) != tile_k:
        raise ValueError(f"a vector has tile_k = {tile_k} elements, got {len(values)}")
    low, high = -(1 << (operand_bits - 1)), (1 << (operand_bits - 1)) - 1
    bad = [v for v in values if not low <= v <= high]
    if bad:
        raise ValueError(f"vector element {bad[0]} is outside the signed {operand_bits}-bit range [{low}, {high}]")
    return values


def pack_codes(values: Sequence[int], operand_bits: int) -> int:
    """Element ``e`` of ``values`` as the two's-complement field ``[e*operand_bits, (e+1)*operand_bits)``."""
    mask = (1 << operand_bits) - 1
    word = 0
    for e, v in enumerate(values):
        word |= (int(v) & mask) << (e * operand_bits)
    return word


def unpack_codes(word: int, count: int, operand_bits: int) -> list[int]:
    """The ``count`` signed ``operand_bits`` codes of ``word``, element 0 first."""
    mask, sign = (1 << operand_bits) - 1, 1 << (operand_bits - 1)
    out = []
    for e in range(count):
        v = (word >> (e * operand_bits)) & mask
        out.append(v - (1 << operand_bits) if v & sign else v)
    return out


def compressed_beats(nnz: int, *, operand_bits: int, bus_elems: int, tile_k: int) -> int:
    """Beats of a compressed vector with ``nnz`` nonzeros: ``ceil(tile_k/bus_bits) + ceil(nnz/bus_elems)``."""
    bus_bits = bus_elems * operand_bits
    return -(-tile_k // bus_bits) + -(-nnz // bus_elems)


def dense_beats(values: Sequence[int], *, operand_bits: int, bus_elems: int, tile_k: int) -> list[int]:
    """The ``tile_k / bus_elems`` dense beats of one vector."""
    _check_geometry(operand_bits, bus_elems, tile_k)
    values = _check_vector(values, operand_bits, tile_k)
    return [pack_codes(values[j:j + bus_elems], operand_bits) for j in range(0, tile_k, bus_elems)]


def decode_dense(beats: Sequence[int], *, operand_bits: int, bus_elems: int, tile_k: int) -> list[int]:
    """Inverse of :func:`dense_beats`: ``tile_k / bus_elems`` beats -> the ``tile_k`` codes."""
    _check_geometry(operand_bits, bus_elems, tile_k)
    if len(beats) != tile_k // bus_elems:
        raise ValueError(f"a dense vector has {tile_k // bus_elems} beats, got {len(beats)}")
    return [v for beat in beats for v in unpack_codes(int(beat), bus_elems, operand_bits)]


def encode_compressed(values: Sequence[int], *, operand_bits: int, bus_elems: int, tile_k: int) -> list[int]:
    """The compressed beats of one vector: the bitmap beats, then the packed nonzeros."""
    _check_geometry(operand_bits, bus_elems, tile_k)
    values = _check_vector(values, operand_bits, tile_k)
    bus_bits = bus_elems * operand_bits
    bitmap = sum(1 << k for k, v in enumerate(values) if v != 0)
    beats = [(bitmap >> (j * bus_bits)) & ((1 << bus_bits) - 1) for j in range(-(-tile_k // bus_bits))]
    nonzeros = [v for v in values if v != 0]
    beats += [pack_codes(nonzeros[j:j + bus_elems], operand_bits) for j in range(0, len(nonzeros), bus_elems)]
    return beats


def decode_compressed(beats: Sequence[int], *, operand_bits: int, bus_elems: int, tile_k: int,
                      start: int = 0) -> tuple[list[int], int]:
    """Read one compressed vector from ``beats[start:]``; returns ``(tile_k codes, index after it)``.

    The number of value beats follows from the bitmap, as in the core; bitmap bits at
    ``k >= tile_k`` and the padding elements of the last value beat are ignored.
    """
    _check_geometry(operand_bits, bus_elems, tile_k)
    bus_bits = bus_elems * operand_bits
    n_bitmap = -(-tile_k // bus_bits)
    if len(beats) < start + n_bitmap:
        raise ValueError(f"the stream ends inside the bitmap of the vector at beat {start}")
    bitmap = sum(int(beats[start + j]) << (j * bus_bits) for j in range(n_bitmap))
    present = [k for k in range(tile_k) if (bitmap >> k) & 1]
    n_values = -(-len(present) // bus_elems)
    first = start + n_bitmap
    if len(beats) < first + n_values:
        raise ValueError(f"the vector at beat {start} needs {n_values} value beats, the stream has "
                         f"{len(beats) - first}")
    packed = [v for beat in beats[first:first + n_values] for v in unpack_codes(int(beat), bus_elems, operand_bits)]
    values = [0] * tile_k
    for rank, k in enumerate(present):
        values[k] = packed[rank]
    return values, first + n_values
