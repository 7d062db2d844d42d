"""Encode ``ref.contract`` programs into the sparse core's stream beats, and decode its results.

This is the one place that knows the wire format of docs/core.md; the Amaranth-simulator tests,
the cocotb testbenches and the benchmarks all go through it. Everything is plain Python ints, so
a testbench only writes integers to signals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hw.config import StagConfig
from hw.layouts import OP_DRAIN, OP_GEMM, ROUNDING_CODES, core_command_layout_for
from ref.contract import Drain, Program, TileGemm
from ref.contract.lowering import ACC_BUFFERS

__all__ = ["EncodedProgram", "ProgramMismatch", "acc_buffers", "decode_drain", "decode_drain_mask", "encode_program",
           "mask_beats_from_drain", "program_for_config", "resprop_inputs", "resprop_p_addresses",
           "resprop_row_words"]


class ProgramMismatch(ValueError):
    """The program cannot run on this core (tile sizes, accumulators, widths, formats)."""


def acc_buffers(config: StagConfig) -> int:
    """The accumulators a program lowered for ``config``'s core alternates its output tiles
    between (the ``acc_buffers`` of ``ref.contract`` lowerings and random programs): the lowering's
    ``ACC_BUFFERS``, or fewer when the core has fewer (``accumulators = 1``)."""
    return min(ACC_BUFFERS, config.accumulators)


@dataclass(frozen=True)
class EncodedProgram:
    """A program as the core's input streams, plus what to expect on the output.

    Fields:
        commands:      packed ``core_command_layout`` words, one per command.
        data:          ``bus_bits``-wide beats of all GEMM operands, in command order.
        drain_beats:   ``o_data`` beats per drain (``tile_m * tile_n / lanes``).
        drains:        number of drains (so ``drains * drain_beats`` beats come out).
        data_per_command: data beats of each command (0 for a drain), for progress and model checks.
        compressed:    ``(first beat, beats, codes)`` of each bitmap-compressed operand vector in
                       ``data``, in stream order: where a bitmap encoder's output goes.
    """

    commands: tuple[int, ...]
    data: tuple[int, ...]
    drain_beats: int
    drains: int
    data_per_command: tuple[int, ...]
    compressed: tuple[tuple[int, int, tuple[int, ...]], ...] = ()


def program_for_config(program: Program, config: StagConfig) -> None:
    """Raise :class:`ProgramMismatch` naming the field if ``program`` does not fit ``config``'s core."""
    for field in ("tile_m", "tile_n", "tile_k", "acc_bits"):
        if getattr(program, field) != getattr(config, field):
            raise ProgramMismatch(f"program {field} = {getattr(program, field)} but the core has "
                                  f"{field} = {getattr(config, field)}")
    limit = 1 << (config.operand_bits - 1)
    setting = program.prune
    if setting is not None:
        if (setting.lfsr_width, setting.lfsr_taps) != (config.lfsr_width, config.lfsr_taps):
            raise ProgramMismatch(f"program prune LFSR (width {setting.lfsr_width}, taps {setting.lfsr_taps:#x}) but "
                                  f"the core has lfsr_width = {config.lfsr_width}, lfsr_taps = {config.lfsr_taps:#x}")
        if setting.tau >= 1 << config.prune_tau_bits:
            raise ProgramMismatch(f"program prune tau = {setting.tau}, but the core's tau has "
                                  f"{config.prune_tau_bits} bits (0..{(1 << config.prune_tau_bits) - 1})")
    thr = program.topk_threshold
    if thr is not None and thr >= 1 << config.operand_bits:
        raise ProgramMismatch(f"program topk_threshold = {thr}, but the core's threshold has "
                              f"{config.operand_bits} bits (0..{(1 << config.operand_bits) - 1})")
    resprop = program.resprop
    if resprop is not None:
        _resprop_for_config(program, config)
    for i, cmd in enumerate(program.commands):
        if isinstance(cmd, Drain) and cmd.resprop and cmd.out_bits > config.operand_bits:
            raise ProgramMismatch(f"commands[{i}] has resprop with out_bits = {cmd.out_bits}; the result path "
                                  f"stores operand codes, out_bits <= operand_bits = {config.operand_bits}")
        if isinstance(cmd, Drain) and cmd.prune and cmd.out_bits != config.operand_bits:
            raise ProgramMismatch(f"commands[{i}] prunes with out_bits = {cmd.out_bits}; the result path prunes "
                                  f"operand codes, out_bits = operand_bits = {config.operand_bits}")
        if cmd.acc >= config.accumulators:
            raise ProgramMismatch(f"commands[{i}].acc = {cmd.acc}, but the core has {config.accumulators} "
                                  f"accumulators (0..{config.accumulators - 1})")
        if isinstance(cmd, TileGemm):
            for name, op in (("a", cmd.a), ("b", cmd.b)):
                t = op.to_dense()
                if t.numel() and (int(t.min()) < -limit or int(t.max()) > limit - 1):
                    raise ProgramMismatch(f"commands[{i}].{name} has values outside the core's signed "
                                          f"{config.operand_bits}-bit range [{-limit}, {limit - 1}]")


def resprop_row_words(cols: int, config: StagConfig) -> int:
    """P words of one output row in the core's P memory: the columns padded to whole tiles."""
    return -(-cols // config.tile_n) * (config.tile_n // config.lanes)


def _resprop_for_config(program: Program, config: StagConfig) -> None:
    setting = program.resprop
    assert setting is not None
    r, c = setting.rows_per_sample, setting.cols
    need = r * resprop_row_words(c, config)
    if need > config.resprop_words:
        raise ProgramMismatch(f"program resprop P is [{r}, {c}]: {need} words of {config.lanes} codes with its "
                              f"columns padded to tile_n = {config.tile_n}, but the core's P bank holds "
                              f"{config.resprop_words} (resprop_max_elems = {config.resprop_max_elems})")
    if setting.n_samples > config.resprop_max_batch:
        raise ProgramMismatch(f"program resprop n_samples = {setting.n_samples}, but the core takes at most "
                              f"resprop_max_batch = {config.resprop_max_batch}")
    if setting.mant >= 1 << config.operand_bits:
        raise ProgramMismatch(f"program resprop mant = {setting.mant}, but the core's threshold mantissa has "
                              f"{config.operand_bits} bits (0..{(1 << config.operand_bits) - 1})")
    limit = 1 << (config.operand_bits - 1)
    if int(setting.p.min()) < -limit or int(setting.p.max()) > limit - 1:
        raise ProgramMismatch(f"program resprop p has values outside the core's signed {config.operand_bits}-bit "
                              f"range [{-limit}, {limit - 1}]")
    # Program's cover check makes every resprop region start on a tile boundary (row0 a multiple of
    # tile_m, col0 of tile_n), which the rs_* fields assume.


def resprop_inputs(program: Program, config: StagConfig) -> dict[str, int]:
    """The core's ``resprop_*`` inputs for ``program``'s ReSpropSetting (taken at ``resprop_load``)."""
    setting = program.resprop
    if setting is None:
        raise ValueError("the program has no ReSpropSetting")
    return {"mant": setting.mant, "exp": setting.exp, "target": setting.target_cp,
            "rows": setting.rows_per_sample, "cols": setting.cols,
            "row_words": resprop_row_words(setting.cols, config), "samples": setting.n_samples,
            "sample": min(setting.sample, setting.n_samples), "dense": int(setting.dense)}


def resprop_p_addresses(rows: int, cols: int, config: StagConfig) -> list[int]:
    """Element addresses of P[r, c] in row-major order, for the core's ``resprop_p_*`` port."""
    stride = resprop_row_words(cols, config) * config.lanes
    return [r * stride + c for r in range(rows) for c in range(cols)]


def _pack(values, bits: int) -> int:
    word = 0
    mask = (1 << bits) - 1
    for e, v in enumerate(values):
        word |= (int(v) & mask) << (e * bits)
    return word


def _vector_beats(vector: torch.Tensor, bitmap: bool, config: StagConfig) -> list[int]:
    """Beats of one A row / B column (``tile_k`` values) in dense or bitmap-compressed form."""
    w, ob, bus_bits = config.bus_elems, config.operand_bits, config.bus_bits
    values = [int(v) for v in vector.tolist()]
    if not bitmap:
        return [_pack(values[j:j + w], ob) for j in range(0, len(values), w)]
    bits = sum(1 << k for k, v in enumerate(values) if v != 0)
    beats = [(bits >> (j * bus_bits)) & ((1 << bus_bits) - 1) for j in range(-(-config.tile_k // bus_bits))]
    nonzeros = [v for v in values if v != 0]
    beats += [_pack(nonzeros[j:j + w], ob) for j in range(0, len(nonzeros), w)]
    return beats


def encode_program(program: Program, config: StagConfig) -> EncodedProgram:
    """The core's input beats for ``program``. The dense core gets every operand in dense form
    (the values are the same; only the storage format differs)."""
    program_for_config(program, config)
    layout = core_command_layout_for(config)
    bus_bits = config.bus_bits
    commands: list[int] = []
    data: list[int] = []
    per_command: list[int] = []
    compressed: list[tuple[int, int, tuple[int, ...]]] = []
    drains = 0
    regions = iter(program.drain_regions)
    resprop = program.resprop

    def add_vector(vector: torch.Tensor, bitmap: bool) -> None:
        beats = _vector_beats(vector, bitmap, config)
        if bitmap:
            compressed.append((len(data), len(beats), tuple(int(v) for v in vector.tolist())))
        data.extend(beats)

    for cmd in program.commands:
        start = len(data)
        if isinstance(cmd, TileGemm):
            a_bitmap = config.sparse and cmd.a.format == "bitmap"
            b_bitmap = config.sparse and cmd.b.format == "bitmap"
            fields = dict(op=OP_GEMM, acc=cmd.acc, accumulate=int(cmd.accumulate), a_bitmap=int(a_bitmap),
                          b_bitmap=int(b_bitmap), has_mask=int(cmd.out_mask is not None))
            a = cmd.a.to_dense()
            b = cmd.b.to_dense()
            for r in range(config.tile_m):
                add_vector(a[r], a_bitmap)
            for c in range(config.tile_n):
                add_vector(b[:, c], b_bitmap)
            if cmd.out_mask is not None:
                for r in range(config.tile_m):
                    bits = sum(1 << c for c, v in enumerate(cmd.out_mask[r].tolist()) if v)
                    data += [(bits >> (j * bus_bits)) & ((1 << bus_bits) - 1)
                             for j in range(-(-config.tile_n // bus_bits))]
        else:
            assert isinstance(cmd, Drain)
            drains += 1
            fields = dict(op=OP_DRAIN, acc=cmd.acc, shift=cmd.shift,
                          out_bits=0 if cmd.out_bits is None else cmd.out_bits,
                          rounding=ROUNDING_CODES[cmd.rounding], relu=int(cmd.relu), prune=int(cmd.prune),
                          topk=int(cmd.topk), resprop=int(cmd.resprop))
            reg = next(regions, None)
            if cmd.resprop:
                assert reg is not None and resprop is not None  # Program checks
                r_per = resprop.rows_per_sample
                row, col = reg.row0 % r_per, reg.col0 // config.tile_n
                fields.update(rs_row=row, rs_col=col, rs_sample=reg.row0 // r_per,
                              rs_word=row * resprop_row_words(resprop.cols, config)
                              + col * (config.tile_n // config.lanes))
        commands.append(layout.const(fields).as_value().value)
        per_command.append(len(data) - start)
    return EncodedProgram(
        commands=tuple(commands), data=tuple(data), drain_beats=config.tile_m * config.tile_n // config.lanes,
        drains=drains, data_per_command=tuple(per_command), compressed=tuple(compressed))


def decode_drain_mask(beats: list[int], config: StagConfig) -> torch.Tensor:
    """One drain's ``o_data`` beats -> the ``[tile_m, tile_n]`` bool ReLU mask carried above the values."""
    lanes, base = config.lanes, config.lanes * config.acc_bits
    groups = config.tile_n // lanes
    if len(beats) != config.tile_m * groups:
        raise ValueError(f"a drain has {config.tile_m * groups} beats, got {len(beats)}")
    out = torch.zeros(config.tile_m, config.tile_n, dtype=torch.bool)
    for i, beat in enumerate(beats):
        r, g = divmod(i, groups)
        for e in range(lanes):
            out[r, g * lanes + e] = bool(beat >> (base + e) & 1)
    return out


def mask_beats_from_drain(beats: list[int], config: StagConfig) -> list[int]:
    """A drain's ReLU mask fields as the ``i_data`` mask rows of a masked GEMM (``has_mask``).

    No arithmetic: row ``m``'s word is its ``tile_n / lanes`` beats' ``lanes``-bit mask fields
    concatenated (beat ``g`` gives columns ``g*lanes ..``), cut into ``ceil(tile_n / bus_bits)``
    beats, exactly what :func:`encode_program` sends for an ``out_mask`` with these bits.
    """
    lanes, base, bus_bits = config.lanes, config.lanes * config.acc_bits, config.bus_bits
    groups = config.tile_n // lanes
    if len(beats) != config.tile_m * groups:
        raise ValueError(f"a drain has {config.tile_m * groups} beats, got {len(beats)}")
    out = []
    for r in range(config.tile_m):
        word = 0
        for g in range(groups):
            word |= (beats[r * groups + g] >> base & ((1 << lanes) - 1)) << (g * lanes)
        out += [(word >> (j * bus_bits)) & ((1 << bus_bits) - 1) for j in range(-(-config.tile_n // bus_bits))]
    return out


def decode_drain(beats: list[int], config: StagConfig) -> torch.Tensor:
    """One drain's ``o_data`` beats -> the ``[tile_m, tile_n]`` int64 tile (the mask bits are ignored)."""
    lanes, acc_bits = config.lanes, config.acc_bits
    groups = config.tile_n // lanes
    if len(beats) != config.tile_m * groups:
        raise ValueError(f"a drain has {config.tile_m * groups} beats, got {len(beats)}")
    out = torch.zeros(config.tile_m, config.tile_n, dtype=torch.int64)
    mask = (1 << acc_bits) - 1
    sign = 1 << (acc_bits - 1)
    for i, beat in enumerate(beats):
        r, g = divmod(i, groups)
        for e in range(lanes):
            v = (beat >> (e * acc_bits)) & mask
            out[r, g * lanes + e] = v - (1 << acc_bits) if v & sign else v
    return out
