"""Integer (hardware-numerics) model of the ReLU + mask emit and mask-apply units (Sarma et al.).

The float policy (``ref.policies.relu_mask``) keeps a BWI output where the layer input
``X = ReLU(Z)`` is ``> 0`` and forces it to exactly 0 elsewhere. On signed integer codes:

- **emit**: ``act = max(z, 0)`` and ``mask = z > 0``. ``z == 0`` gives mask 0, like ``X > 0``
  (PyTorch's ReLU gradient at 0 is 0); the most negative code gives ``act = 0``, ``mask = 0``.
  The mask is therefore also the nonzero bitmap of ``act``.
- **apply**: ``dz = dx if mask else 0``.

Wire format (docs/core.md, ``sim.core_program``): a vector of ``n`` codes travels as
``n / bus_elems`` value beats, element ``e`` of beat ``j`` (vector index ``j*bus_elems + e``) at
bits ``[e*operand_bits, (e+1)*operand_bits)`` in two's complement. Its mask travels as
``ceil(n / bus_bits)`` bitmap beats (``bus_bits = bus_elems * operand_bits``): bit ``k`` of the
vector is bit ``k mod bus_bits`` of beat ``k div bus_bits``; bits at ``k >= n`` are 0. This is
the bitmap of a bitmap-compressed operand vector and of an output-mask row of the core.

The list functions use plain Python ints (no torch import), so cocotb testbenches can use them
cheaply (torch is imported only by the tensor functions); the tensor functions are the same
rules on int64 tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported inside the tensor functions: testbenches need only the lists
    import torch

__all__ = [
    "apply_stream",
    "bitmap_beats",
    "emit_stream",
    "mask_apply",
    "pack_codes",
    "relu_codes",
    "relu_mask",
    "unpack_bitmap",
    "unpack_codes",
]


# -- tensor rules -----------------------------------------------------------------------------

def _check_int64(name: str, t: torch.Tensor) -> None:
    import torch

    if not isinstance(t, torch.Tensor) or t.dtype != torch.int64:
        raise ValueError(f"{name} must be an int64 tensor, got {getattr(t, 'dtype', type(t).__name__)}")


def relu_codes(z: torch.Tensor) -> torch.Tensor:
    """``max(z, 0)`` of an int64 code tensor (the ReLU'd activation codes)."""
    _check_int64("z", z)
    return z.clamp(min=0)


def relu_mask(z: torch.Tensor) -> torch.Tensor:
    """Bool mask ``z > 0`` of an int64 pre-activation code tensor (0 at ``z == 0``)."""
    _check_int64("z", z)
    return z > 0


def mask_apply(dx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``dx`` where ``mask`` is True, exactly 0 elsewhere (int64 codes, bool mask, same shape)."""
    import torch

    _check_int64("dx", dx)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != dx.shape:
        raise ValueError(f"mask must be a bool tensor of shape {tuple(dx.shape)}")
    return torch.where(mask, dx, torch.zeros((), dtype=torch.int64))


# -- beat format (plain ints) -------------------------------------------------------------------

def _check_format(vector_elems: int, bus_elems: int, operand_bits: int) -> None:
    if vector_elems < 1 or vector_elems % bus_elems:
        raise ValueError(f"vector length must be a positive multiple of bus_elems = {bus_elems}, "
                         f"got {vector_elems}")
    if not 2 <= operand_bits <= 32:
        raise ValueError(f"operand_bits must be in 2..32, got {operand_bits}")


def pack_codes(codes: Sequence[int], bus_elems: int, operand_bits: int) -> list[int]:
    """Value beats of one vector (``len(codes)`` a multiple of ``bus_elems``); codes must fit."""
    _check_format(len(codes), bus_elems, operand_bits)
    low, high = -(1 << (operand_bits - 1)), (1 << (operand_bits - 1)) - 1
    field = (1 << operand_bits) - 1
    beats = []
    for j in range(0, len(codes), bus_elems):
        word = 0
        for e, v in enumerate(codes[j:j + bus_elems]):
            if not low <= int(v) <= high:
                raise ValueError(f"code {v} at index {j + e} is outside the signed {operand_bits}-bit range")
            word |= (int(v) & field) << (e * operand_bits)
        beats.append(word)
    return beats


def unpack_codes(beats: Sequence[int], bus_elems: int, operand_bits: int) -> list[int]:
    """Inverse of :func:`pack_codes`: the signed codes of value beats, in vector order."""
    field, sign = (1 << operand_bits) - 1, 1 << (operand_bits - 1)
    codes = []
    for word in beats:
        for e in range(bus_elems):
            v = (word >> (e * operand_bits)) & field
            codes.append(v - (1 << operand_bits) if v & sign else v)
    return codes


def bitmap_beats(mask: Sequence[bool], bus_bits: int) -> list[int]:
    """Bitmap beats of one vector's mask: bit ``k`` is bit ``k mod bus_bits`` of beat ``k div bus_bits``."""
    bits = sum(1 << k for k, keep in enumerate(mask) if keep)
    count = -(-len(mask) // bus_bits)
    return [(bits >> (j * bus_bits)) & ((1 << bus_bits) - 1) for j in range(count)]


def unpack_bitmap(beats: Sequence[int], length: int, bus_bits: int) -> list[bool]:
    """Inverse of :func:`bitmap_beats` for a vector of ``length`` elements."""
    bits = sum(int(b) << (j * bus_bits) for j, b in enumerate(beats))
    return [bool((bits >> k) & 1) for k in range(length)]


def emit_stream(vectors: Sequence[Sequence[int]], *, bus_elems: int, operand_bits: int
                ) -> tuple[list[int], list[int]]:
    """What ``hw.relu_mask.ReluMaskEmit`` sends for pre-activation code ``vectors``.

    Returns ``(act_beats, mask_beats)``: the value beats of every ``max(z, 0)`` vector in order,
    and the bitmap beats of every ``z > 0`` mask in order.
    """
    bus_bits = bus_elems * operand_bits
    act, mask = [], []
    for z in vectors:
        _check_format(len(z), bus_elems, operand_bits)
        act += pack_codes([max(int(v), 0) for v in z], bus_elems, operand_bits)
        mask += bitmap_beats([int(v) > 0 for v in z], bus_bits)
    return act, mask


def apply_stream(vectors: Sequence[Sequence[int]], masks: Sequence[Sequence[bool]], *,
                 bus_elems: int, operand_bits: int) -> list[int]:
    """What ``hw.relu_mask.MaskApply`` sends for dX code ``vectors`` under the bool ``masks``."""
    if len(vectors) != len(masks):
        raise ValueError(f"got {len(vectors)} vectors but {len(masks)} masks")
    out = []
    for dx, keep in zip(vectors, masks, strict=True):
        if len(dx) != len(keep):
            raise ValueError(f"a vector of {len(dx)} codes needs a mask of the same length, got {len(keep)}")
        out += pack_codes([int(v) if k else 0 for v, k in zip(dx, keep, strict=True)], bus_elems, operand_bits)
    return out
