"""Programs on the vector core's streams: command words and data beats in, result tiles out.

The vector core (``hw.vector_core``) takes the sparse core's command words and its own data order
(``hw.vector_loader``): A's rows (bitmap-compressed in groups sharing a bitmap beat when the
command says so, else dense), B's rows dense, then the mask rows. A drain leaves ``tile_m`` beats, one row each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hw.layouts import OP_DRAIN, OP_GEMM, ROUNDING_CODES
from hw.vector_core import VectorCoreParams
from ref.contract.commands import Drain, Program, TileGemm
from ref.vector_extent import tile_extent

__all__ = ["VectorEncoded", "decode_vector_drain", "encode_vector_program", "vector_resprop_inputs",
           "vector_resprop_p_addresses", "vector_resprop_row_words"]


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
        if isinstance(cmd, Drain) and cmd.resprop and cmd.out_bits > params.operand_bits:
            raise ValueError(f"a ReSprop drain must requantize to out_bits <= operand_bits = {params.operand_bits}, "
                             f"not {cmd.out_bits}")
        if isinstance(cmd, Drain) and cmd.prune and cmd.out_bits != params.operand_bits:
            raise ValueError(f"a pruning drain must requantize to out_bits = operand_bits = {params.operand_bits}, "
                             f"not {cmd.out_bits}")
    setting = program.prune
    if setting is not None:
        if (setting.lfsr_width, setting.lfsr_taps) != (params.lfsr_width, params.lfsr_taps):
            raise ValueError(f"program prune LFSR (width {setting.lfsr_width}, taps {setting.lfsr_taps:#x}) is not the "
                             f"core's (width {params.lfsr_width}, taps {params.lfsr_taps:#x})")
        if setting.tau >= 1 << params.prune_tau_bits:
            raise ValueError(f"program prune tau = {setting.tau} does not fit the core's {params.prune_tau_bits}-bit "
                             f"tau (0..{(1 << params.prune_tau_bits) - 1})")


    rs = program.resprop
    if rs is not None:
        need = rs.rows_per_sample * vector_resprop_row_words(rs.cols, params)
        if need > params.resprop_words:
            raise ValueError(f"program resprop P is [{rs.rows_per_sample}, {rs.cols}]: {need} words of {params.vector} "
                             f"codes with its columns padded to vector = {params.vector}, but the core's P bank holds "
                             f"{params.resprop_words} (resprop_max_elems = {params.resprop_max_elems})")
        if rs.n_samples > params.resprop_max_batch:
            raise ValueError(f"program resprop n_samples = {rs.n_samples}, but the core takes at most "
                             f"resprop_max_batch = {params.resprop_max_batch}")
        if rs.mant >= 1 << params.operand_bits:
            raise ValueError(f"program resprop mant = {rs.mant} does not fit the core's {params.operand_bits}-bit "
                             f"threshold mantissa")
        limit = 1 << (params.operand_bits - 1)
        if int(rs.p.min()) < -limit or int(rs.p.max()) > limit - 1:
            raise ValueError(f"program resprop p has values outside the core's signed {params.operand_bits}-bit "
                             f"range [{-limit}, {limit - 1}]")


def vector_resprop_row_words(cols: int, params: VectorCoreParams) -> int:
    """P words of one output row in the vector core's P memory: one per ``vector`` columns."""
    return -(-cols // params.vector)


def vector_resprop_inputs(program: Program, params: VectorCoreParams) -> dict[str, int]:
    """The core's ``resprop_*`` inputs for ``program``'s ReSpropSetting (taken at ``resprop_load``)."""
    rs = program.resprop
    if rs is None:
        raise ValueError("the program has no ReSpropSetting")
    return {"mant": rs.mant, "exp": rs.exp, "target": rs.target_cp, "rows": rs.rows_per_sample, "cols": rs.cols,
            "row_words": vector_resprop_row_words(rs.cols, params), "samples": rs.n_samples,
            "sample": min(rs.sample, rs.n_samples), "dense": int(rs.dense)}


def vector_resprop_p_addresses(rows: int, cols: int, params: VectorCoreParams) -> list[int]:
    """Element addresses of P[r, c] in row-major order, for the core's ``resprop_p_*`` port."""
    stride = vector_resprop_row_words(cols, params) * params.vector
    return [r * stride + c for r in range(rows) for c in range(cols)]


def encode_vector_program(program: Program, params: VectorCoreParams) -> VectorEncoded:
    """Command words and data beats of ``program`` for the vector core of ``params``."""
    _check(program, params)
    layout = params.command_layout()
    be, bits, bus_bits = params.bus_elems, params.operand_bits, params.bus_bits
    commands: list[int] = []
    beats: list[int] = []
    drains = 0
    regions = iter(program.drain_regions)
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
                          rounding=ROUNDING_CODES[cmd.rounding], relu=int(cmd.relu), prune=int(cmd.prune),
                          topk=int(cmd.topk), resprop=int(cmd.resprop))
            region = next(regions, None)
            if cmd.resprop:
                assert region is not None and program.resprop is not None  # Program checks
                r_per = program.resprop.rows_per_sample
                row, col = region.row0 % r_per, region.col0 // params.vector
                fields.update(rs_row=row, rs_col=col, rs_sample=region.row0 // r_per,
                              rs_word=row * vector_resprop_row_words(program.resprop.cols, params) + col)
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
