"""Programs on the vector core's streams: command words and data beats in, result tiles out.

The vector core (``hw.vector_core``) takes the sparse core's command words and its own data order
(``hw.vector_loader``): A's rows (bitmap-compressed in groups sharing a bitmap beat when the
command says so, else dense), B's rows dense, then the mask rows. A drain leaves ``tile_m`` beats, one row each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hw.layouts import OP_DRAIN, OP_GEMM, ROUNDING_CODES, vector_command_layout
from hw.vector_core import VectorCoreParams
from ref.contract.commands import Drain, Program, TileGemm
from ref.vector_extent import tile_extent

__all__ = ["VectorEncoded", "decode_vector_drain", "encode_vector_program"]


@dataclass(frozen=True)
class VectorEncoded:
    """What the vector core receives for a program, and how many result beats it returns."""

    commands: tuple[int, ...]
    data: tuple[int, ...]
    drains: int
    drain_beats: int


def _pack(values, bits: int) -> int:
    word, mask = 0, (1 << bits) - 1
    for e, v in enumerate(values):
        word |= (int(v) & mask) << (e * bits)
    return word


def _bitmap_rows(a: torch.Tensor, params: VectorCoreParams) -> list[int]:
    """The rows of ``a`` (the ones sent) in groups of ``max(1, bus_bits // tile_k)``: the group's
    bitmaps, then the packed nonzeros of each of its rows (none for an empty row)."""
    tk, be, bits, bus_bits = params.tile_k, params.bus_elems, params.operand_bits, params.bus_bits
    group = max(1, bus_bits // tk)
    beats: list[int] = []
    for g in range(0, a.shape[0], group):
        rows = [[int(v) for v in a[r].tolist()] for r in range(g, min(g + group, a.shape[0]))]
        maps = sum(sum(1 << k for k, v in enumerate(row) if v) << (i * tk) for i, row in enumerate(rows))
        beats += [(maps >> (j * bus_bits)) & ((1 << bus_bits) - 1) for j in range(-(-group * tk // bus_bits))]
        for row in rows:
            nonzeros = [v for v in row if v]
            beats += [_pack(nonzeros[j:j + be], bits) for j in range(0, len(nonzeros), be)]
    return beats


def _check(program: Program, params: VectorCoreParams) -> None:
    got = (program.tile_m, program.tile_n, program.tile_k)
    want = (params.tile_m, params.tile_n, params.tile_k)
    if got != want:
        raise ValueError(f"program tiles {got} do not match the vector core's (tile_m, vector, tile_k) = {want}")
    if program.acc_bits != params.acc_bits:
        raise ValueError(f"program acc_bits {program.acc_bits} != the core's {params.acc_bits}")
    for cmd in program.commands:
        if isinstance(cmd, TileGemm) and cmd.acc >= params.accumulators:
            raise ValueError(f"command uses accumulator {cmd.acc}; the core has {params.accumulators}")
        if isinstance(cmd, Drain) and (cmd.prune or cmd.resprop):
            raise ValueError("the vector core has no result-path pruner or ReSprop difference yet")


def encode_vector_program(program: Program, params: VectorCoreParams) -> VectorEncoded:
    """Command words and data beats of ``program`` for the vector core of ``params``."""
    _check(program, params)
    layout = vector_command_layout(params.acc_index_bits, params.tile_m, params.tile_k)
    be, bits, bus_bits = params.bus_elems, params.operand_bits, params.bus_bits
    commands: list[int] = []
    beats: list[int] = []
    drains = 0
    for cmd in program.commands:
        if isinstance(cmd, TileGemm):
            a_bitmap = params.sparse and cmd.a.format == "bitmap"
            rows, k_len = tile_extent(cmd, k_step=max(1, be // params.vector))
            fields = dict(op=OP_GEMM, acc=cmd.acc, accumulate=int(cmd.accumulate), a_bitmap=int(a_bitmap),
                          has_mask=int(cmd.out_mask is not None), rows=rows, k_len=k_len)
            a, b = cmd.a.to_dense()[:rows], cmd.b.to_dense()[:k_len]
            if a_bitmap:
                beats += _bitmap_rows(a, params)
            else:
                for r in range(rows):
                    values = [int(v) for v in a[r, :k_len].tolist()]
                    beats += [_pack(values[j:j + be], bits) for j in range(0, len(values), be)]
            # B by rows, row-major: a row spans vector / bus_elems beats, or a beat holds
            # bus_elems / vector rows.
            flat = [int(v) for v in b.flatten().tolist()]
            beats += [_pack(flat[j:j + be], bits) for j in range(0, len(flat), be)]
            if cmd.out_mask is not None:
                for r in range(rows):
                    word = sum(1 << c for c, v in enumerate(cmd.out_mask[r].tolist()) if v)
                    beats += [(word >> (j * bus_bits)) & ((1 << bus_bits) - 1)
                              for j in range(-(-params.vector // bus_bits))]
        else:
            assert isinstance(cmd, Drain)
            drains += 1
            fields = dict(op=OP_DRAIN, acc=cmd.acc, shift=cmd.shift,
                          out_bits=0 if cmd.out_bits is None else cmd.out_bits,
                          rounding=ROUNDING_CODES[cmd.rounding], relu=int(cmd.relu), topk=int(cmd.topk))
        commands.append(layout.const(fields).as_value().value)
    return VectorEncoded(tuple(commands), tuple(beats), drains, params.tile_m)


def decode_vector_drain(beats: list[int], params: VectorCoreParams) -> tuple[torch.Tensor, torch.Tensor]:
    """One drain's ``tile_m`` beats as its [tile_m, vector] int64 tile and its bool mask bits."""
    ab, vec = params.acc_bits, params.vector
    values, masks = [], []
    for beat in beats:
        row = []
        for e in range(vec):
            v = (beat >> (e * ab)) & ((1 << ab) - 1)
            row.append(v - (1 << ab) if v >> (ab - 1) else v)
        values.append(row)
        masks.append([bool((beat >> (vec * ab + e)) & 1) for e in range(vec)])
    return torch.tensor(values, dtype=torch.int64), torch.tensor(masks, dtype=torch.bool)
