"""Bit-exact integer evaluator of accelerator programs (the expected values for the RTL).

Everything here is int64 / bool tensor arithmetic; no float is touched. Accumulators wrap modulo
2**acc_bits in two's complement after every TileGemm. Because int64 arithmetic itself wraps modulo
2**64 and 2**acc_bits divides 2**64, wrapping once per command equals wrapping after every MAC,
which is what a hardware accumulator of acc_bits bits does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ref.contract.commands import Drain, Program, Region, ReSpropSetting, TileGemm
from ref.lfsr import GaloisLFSR
from ref.numerics import requantize
from ref.relu_mask_codes import relu_mask
from ref.resprop_codes import adapt_exponent
from ref.stochastic_prune_codes import prune_codes


@dataclass(frozen=True)
class CommandCount:
    """Work of one command. For a Drain both MAC counts are 0.

    dense_macs:     tile_m * tile_n * tile_k (every pair a dense array would issue, padding included).
    effectual_macs: pairs (m, n, k) with A[m,k] != 0, B[k,n] != 0 and M[m,n] = 1 (what a
                    zero-skipping scheduler issues).
    """

    index: int
    kind: str
    dense_macs: int
    effectual_macs: int


@dataclass(frozen=True, eq=False)
class ProgramResult:
    """Outcome of ``evaluate``.

    tiles:  the drained int64 tiles [tile_m, tile_n], in program order.
    output: int64 matrix of ``program.output_shape`` assembled from the tiles via drain_regions
            (elements no region covers are 0), or None when the program declares no output.
    counts: one CommandCount per command.
    masks:  the mask bits the result path emits with each drained tile: the ReLU mask
            (:func:`drain_mask`), or for a ``topk`` Drain the top-K keep bits (:func:`drain_keep_mask`).
    prune_sum: sum of |g| over the codes of every pruning Drain before pruning (None when the
            program has no PruneSetting).
    resprop_nnz: nonzero S over the ``resprop`` Drains (None when the program has no ReSpropSetting).
    resprop_exp_after: the threshold exponent after the pass's x2 / /2 step (None likewise).
    resprop_p: the next pass's stored sample P, [R, C] (None likewise).
    """

    tiles: tuple[torch.Tensor, ...]
    output: torch.Tensor | None
    counts: tuple[CommandCount, ...]
    masks: tuple[torch.Tensor, ...]
    prune_sum: int | None = None
    resprop_nnz: int | None = None
    resprop_exp_after: int | None = None
    resprop_p: torch.Tensor | None = None

    @property
    def dense_macs(self) -> int:
        return sum(c.dense_macs for c in self.counts)

    @property
    def effectual_macs(self) -> int:
        return sum(c.effectual_macs for c in self.counts)


def drain_mask(tile: torch.Tensor) -> torch.Tensor:
    """The 1-bit ReLU mask the result path emits with every drained element: ``value > 0``.

    It is taken after the Drain's requantization and ReLU, so with ``relu`` set it is the nonzero
    bitmap of the activation, and without it the mask ``z > 0`` of the pre-activation (the same bits,
    ``ref.relu_mask_codes.relu_mask``; Sarma et al.). Bool tensor of the tile's shape.
    """
    return relu_mask(tile)


def drain_keep_mask(tile: torch.Tensor, threshold: int) -> torch.Tensor:
    """The mask bit a ``topk`` Drain emits instead: SWAT's keep rule ``|value| >= threshold``
    (``ref.topk_codes.apply_threshold`` for single elements; ties at the threshold are kept)."""
    return tile.abs() >= threshold


def resprop_tile(tile: torch.Tensor, region: Region, setting: ReSpropSetting) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``resprop`` Drain's result path: ``(S, mask)`` for the drained codes ``tile`` at ``region``.

    ``S = D`` where ``|D| > T``, ``D = g - P[row mod R, col]`` (``ref.resprop_codes.sparse_difference``
    per element), or ``S = g`` on a dense setting; the mask is ``S != 0``; tile padding outside the
    region is 0 with mask 0.
    """
    r_per, cols = setting.rows_per_sample, setting.cols
    valid = torch.zeros(tile.shape, dtype=torch.bool)
    valid[: region.rows, : region.cols] = True
    rows = (region.row0 + torch.arange(tile.shape[0])).clamp_max(setting.n_samples * r_per - 1)
    cols_idx = (region.col0 + torch.arange(tile.shape[1])).clamp_max(cols - 1)
    p = setting.p[(rows % r_per)[:, None], cols_idx[None, :]]
    if setting.dense:
        s = tile
    else:
        d = tile - p
        s = torch.where(d.abs() > setting.threshold, d, torch.zeros((), dtype=torch.int64))
    s = torch.where(valid, s, torch.zeros((), dtype=torch.int64))
    return s, s != 0


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Reduce an int64 tensor to a two's-complement ``bits``-bit value (2 <= bits <= 64), as int64."""
    if bits == 64:
        return x  # int64 arithmetic already wrapped modulo 2**64
    low = x & ((1 << bits) - 1)  # in [0, 2**bits)
    neg = (low >> (bits - 1)) & 1  # sign bit of the bits-wide word
    half = 1 << (bits - 1)
    # Subtract 2**bits where the sign bit is set; done as two halves so bits == 63 stays in int64 range.
    return low - neg * half - neg * half


def effectual_count(a_nz: torch.Tensor, b_nz: torch.Tensor, mask: torch.Tensor | None) -> int:
    """Number of (m, n, k) with a_nz[m,k] & b_nz[k,n] & mask[m,n]; integer matmul of the bitmaps."""
    pairs = a_nz.to(torch.int64) @ b_nz.to(torch.int64)  # [m, n]: effectual k per output
    if mask is not None:
        pairs = pairs * mask.to(torch.int64)
    return int(pairs.sum().item())


def _gemm(cmd: TileGemm, accs: dict[int, torch.Tensor], acc_bits: int) -> int:
    """Execute one TileGemm on ``accs`` in place; return its effectual MAC count."""
    if cmd.accumulate and cmd.acc not in accs:
        raise ValueError(f"TileGemm accumulates into acc {cmd.acc}, which no earlier TileGemm cleared")
    prod = cmd.a.to_dense() @ cmd.b.to_dense()
    if cmd.accumulate:
        prod = prod + accs[cmd.acc]
    if cmd.out_mask is not None:
        # Masked-off outputs are not computed and their old partial sum is cleared: exactly 0.
        prod = torch.where(cmd.out_mask, prod, torch.zeros((), dtype=torch.int64))
    accs[cmd.acc] = wrap(prod, acc_bits)
    return effectual_count(cmd.a.nonzero(), cmd.b.nonzero(), cmd.out_mask)


def drain_tile(acc: torch.Tensor, cmd: Drain) -> torch.Tensor:
    """Apply a Drain's read-out (requantize or raw, then optional ReLU) to an accumulator tile."""
    out = acc.clone() if cmd.out_bits is None else requantize(acc, cmd.shift, cmd.out_bits, cmd.rounding)
    return out.clamp_min(0) if cmd.relu else out


def evaluate(program: Program) -> ProgramResult:
    """Run ``program`` bit-exactly and return the drained tiles, the assembled output and work counts."""
    accs: dict[int, torch.Tensor] = {}
    tiles: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    counts: list[CommandCount] = []
    setting = program.prune
    lfsr = None if setting is None else GaloisLFSR(setting.lfsr_width, setting.lfsr_taps, setting.seed)
    prune_sum = None if setting is None else 0
    resprop = program.resprop
    resprop_nnz = None if resprop is None else 0
    resprop_p = None if resprop is None else resprop.p.clone()
    drain_index = 0
    dense_per_gemm = program.tile_m * program.tile_n * program.tile_k
    for i, cmd in enumerate(program.commands):
        if isinstance(cmd, TileGemm):
            eff = _gemm(cmd, accs, program.acc_bits)
            counts.append(CommandCount(i, "tile_gemm", dense_per_gemm, eff))
        else:
            if cmd.acc not in accs:
                raise ValueError(f"Drain reads acc {cmd.acc}, which no earlier TileGemm wrote")
            tile = drain_tile(accs[cmd.acc], cmd)
            drained = tile
            if cmd.prune:
                assert setting is not None and lfsr is not None and cmd.out_bits is not None  # Program checks
                prune_sum += int(tile.abs().sum())
                # One draw per element in drain order (row-major), none at tau = 0 (bypass).
                draws = lfsr.draw_many(tile.numel()) if setting.tau else None
                tile = prune_codes(tile, setting.tau, draws, operand_bits=cmd.out_bits, lfsr_width=setting.lfsr_width)
            if cmd.resprop:
                assert resprop is not None and resprop_p is not None  # Program checks
                reg = program.drain_regions[drain_index]  # Program checks that resprop drains have one
                tile, mask = resprop_tile(tile, reg, resprop)
                resprop_nnz += int(mask.sum())
                # Sample j's codes become the next P (their rows of this tile, clipped to the region).
                first = max(reg.row0, resprop.sample * resprop.rows_per_sample)
                last = min(reg.row0 + reg.rows, (resprop.sample + 1) * resprop.rows_per_sample)
                for row in range(first, last):
                    resprop_p[row % resprop.rows_per_sample, reg.col0:reg.col0 + reg.cols] = \
                        drained[row - reg.row0, : reg.cols]
                masks.append(mask)
            elif cmd.topk:
                assert program.topk_threshold is not None  # Program checks
                masks.append(drain_keep_mask(tile, program.topk_threshold))
            else:
                masks.append(drain_mask(tile))
            tiles.append(tile)
            drain_index += 1
            counts.append(CommandCount(i, "drain", 0, 0))
    exp_after = None
    if resprop is not None:
        n = resprop.n_samples * resprop.rows_per_sample * resprop.cols
        exp_after = resprop.exp if resprop.dense else adapt_exponent(resprop.exp, resprop_nnz, n, resprop.target_cp)
    return ProgramResult(tiles=tuple(tiles), output=_assemble(program, tiles), counts=tuple(counts),
                         masks=tuple(masks), prune_sum=prune_sum, resprop_nnz=resprop_nnz,
                         resprop_exp_after=exp_after, resprop_p=resprop_p)


def _assemble(program: Program, tiles: list[torch.Tensor]) -> torch.Tensor | None:
    """Place each drained tile's valid block at its Region of the output matrix."""
    if program.output_shape is None:
        return None
    out = torch.zeros(program.output_shape, dtype=torch.int64)
    for tile, reg in zip(tiles, program.drain_regions, strict=True):
        out[reg.row0 : reg.row0 + reg.rows, reg.col0 : reg.col0 + reg.cols] = tile[: reg.rows, : reg.cols]
    return out
