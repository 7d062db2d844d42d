"""Random accelerator programs with controlled sparsity, for verifying and benchmarking the RTL core.

``random_program`` builds a Program shaped like the lowering's output (``ref.contract.lowering``):
``n_gemms`` output tiles; for each, ``k_tiles`` TileGemms on accumulator ``tile index % 2`` (the
first with ``accumulate=False``, the rest ``True``, all with the same output mask), then one Drain.
The drained tiles are stacked vertically in the output matrix: ``output_shape = (n_gemms*tile_m,
tile_n)``, drain i at rows ``[i*tile_m, (i+1)*tile_m)``.

Sparsity ``mode`` (which part is sparse, with nonzero/True probability ``density``):

======  ==========================================  ====================  ======================
mode    A                                           B                     output mask
======  ==========================================  ====================  ======================
a       density ``density``                         full                  none
b       full                                        density ``density``   none
mask    full                                        full                  density ``density``
all     ``density**(1/3)``                          ``density**(1/3)``    ``density**(1/3)``
dense   full                                        full                  none
======  ==========================================  ====================  ======================

"full" means every element nonzero. In mode ``all`` each of the three is independent with density
``density**(1/3)``, so the expected effectual-MAC fraction ``E[effectual_macs / dense_macs]`` is
``density`` (the product of the three probabilities). Elements are independent Bernoulli draws, so
a realized density deviates from the target by about ``sqrt(p(1-p)/n)`` over n elements.

Values: a nonzero element is uniform over the full signed ``operand_bits`` range
``[-2**(b-1), 2**(b-1)-1]`` without 0 (the asymmetric code ``-2**(b-1)`` included, although
``quantize_symmetric`` never produces it: the RTL must handle every code of its operand width).
To exercise the extremes reliably, in every operand tile with at least two nonzeros one randomly
chosen nonzero is set to ``-2**(b-1)`` and another to ``2**(b-1)-1`` (a single nonzero becomes
``-2**(b-1)``). This changes values only, never the zero pattern, so the densities are unaffected.

Drains are drawn independently per output tile: with probability 1/2 raw (``out_bits=None``,
``shift=0``), else requantized with ``shift`` uniform in ``0..min(62, acc_bits+2)`` (shifts past
the accumulator width exercise the all-sign-bits case), ``out_bits`` uniform in
``2..min(32, acc_bits)`` and ``rounding`` uniform over ``ROUNDINGS``; ``relu`` is a fair coin
either way.

Everything is drawn from one ``torch.Generator`` seeded with ``seed``, in a fixed order, so equal
arguments give identical programs.
"""

from __future__ import annotations

import torch

from ref.contract.commands import (
    FORMATS,
    MAX_ACC_BITS,
    ROUNDINGS,
    Drain,
    Operand,
    Program,
    PruneSetting,
    Region,
    ReSpropSetting,
    TileGemm,
)
from ref.contract.evaluate import evaluate
from ref.contract.lowering import ACC_BUFFERS, lower_gemm

MODES: tuple[str, ...] = ("a", "b", "mask", "all", "dense")
MAX_OPERAND_BITS = 32  # products of two 32-bit codes still fit the int64 evaluator (mod 2**64 wrap is exact)
MAX_SHIFT = 62  # Drain's shift limit


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_pos_int(name: str, v: int, lo: int = 1) -> int:
    if not _is_int(v) or v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return v


def mode_densities(mode: str, density: float) -> tuple[float, float, float | None]:
    """(A density, B density, mask density or None for no mask) of a sparsity mode, each in [0, 1]."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "a":
        return density, 1.0, None
    if mode == "b":
        return 1.0, density, None
    if mode == "mask":
        return 1.0, 1.0, density
    if mode == "all":
        d = density ** (1.0 / 3.0)
        return d, d, d
    return 1.0, 1.0, None


def _random_tile(rows: int, cols: int, density: float, bits: int, gen: torch.Generator) -> torch.Tensor:
    """int64 tile [rows, cols]: each element nonzero with probability ``density``; nonzeros uniform
    over the signed ``bits``-bit range without 0, then one forced to the minimum and one to the maximum."""
    keep = torch.rand((rows, cols), generator=gen) < density  # rand is in [0, 1): density 0 / 1 are exact
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    # Uniform on the 2**b - 1 nonzero codes: draw an index in [0, 2**b - 1) and skip over 0.
    v = torch.randint(0, (1 << bits) - 1, (rows, cols), generator=gen, dtype=torch.int64) + lo
    v = v + (v >= 0).to(torch.int64)
    tile = torch.where(keep, v, torch.zeros((), dtype=torch.int64))
    nz = keep.flatten().nonzero().flatten()
    order = nz[torch.randperm(nz.numel(), generator=gen)]
    flat = tile.view(-1)
    if order.numel() >= 1:
        flat[order[0]] = lo
    if order.numel() >= 2:
        flat[order[1]] = hi
    return tile


def _random_drain(acc: int, acc_bits: int, gen: torch.Generator) -> Drain:
    def randint(lo: int, hi: int) -> int:  # inclusive bounds
        return int(torch.randint(lo, hi + 1, (1,), generator=gen).item())

    raw = randint(0, 1) == 1
    relu = randint(0, 1) == 1
    if raw:
        return Drain(acc, relu=relu)
    shift = randint(0, min(MAX_SHIFT, acc_bits + 2))
    out_bits = randint(2, min(32, acc_bits))
    rounding = ROUNDINGS[randint(0, len(ROUNDINGS) - 1)]
    return Drain(acc, shift=shift, out_bits=out_bits, rounding=rounding, relu=relu)


def random_program(
    *,
    mode: str,
    density: float,
    tile_m: int,
    tile_n: int,
    tile_k: int,
    operand_bits: int,
    acc_bits: int,
    n_gemms: int = 2,
    k_tiles: int = 2,
    seed: int,
    a_format: str | None = None,
    b_format: str | None = None,
    prune: PruneSetting | None = None,
    topk_threshold: int | None = None,
    acc_buffers: int = ACC_BUFFERS,
) -> Program:
    """A random Program of ``n_gemms`` output tiles, each ``k_tiles`` TileGemms plus one Drain.

    ``mode`` selects what is sparse and ``density`` (in [0, 1]) the fraction of nonzero operand
    elements / True mask entries (see the module docstring; mode ``all`` splits it as
    ``density**(1/3)`` per part so the effectual-MAC fraction is ~``density``). ``operand_bits``
    (2..32) is the signed width of A and B codes, ``acc_bits`` (2..64) the accumulator width.
    ``a_format`` / ``b_format`` default to "bitmap" for an operand the mode makes sparse (A in
    modes a and all, B in b and all) and "dense" otherwise. Deterministic in ``seed`` (an int >= 0).

    ``prune``: the program gets this PruneSetting and its even-numbered output tiles drain pruned
    (``out_bits = operand_bits``, a shift that spreads the codes over the range, the tile's random
    rounding and ReLU); the other drains and every operand are the same as without it.
    ``topk_threshold``: the program gets this top-K threshold and its odd-numbered output tiles
    drain requantized the same way with ``topk`` (the keep bits as their mask).
    ``acc_buffers``: output tile ``t`` uses accumulator ``t % acc_buffers``, as the lowering does
    (``ref.contract.lowering.ACC_BUFFERS``; 1 for a core with one accumulator).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be a number in [0, 1], got {density!r}")
    tm = _check_pos_int("tile_m", tile_m)
    tn = _check_pos_int("tile_n", tile_n)
    tk = _check_pos_int("tile_k", tile_k)
    if not _is_int(operand_bits) or not 2 <= operand_bits <= MAX_OPERAND_BITS:
        raise ValueError(f"operand_bits must be an int in [2, {MAX_OPERAND_BITS}], got {operand_bits!r}")
    if not _is_int(acc_bits) or not 2 <= acc_bits <= MAX_ACC_BITS:
        raise ValueError(f"acc_bits must be an int in [2, {MAX_ACC_BITS}], got {acc_bits!r}")
    _check_pos_int("n_gemms", n_gemms)
    _check_pos_int("k_tiles", k_tiles)
    _check_pos_int("seed", seed, 0)
    _check_pos_int("acc_buffers", acc_buffers)
    da, db, dm = mode_densities(mode, float(density))
    # The mode (not the realized density) decides the default: mode "a" at density 1 still sends A as a bitmap.
    fa = a_format if a_format is not None else ("bitmap" if mode in ("a", "all") else "dense")
    fb = b_format if b_format is not None else ("bitmap" if mode in ("b", "all") else "dense")
    if fa not in FORMATS:
        raise ValueError(f"a_format must be None or one of {FORMATS}, got {a_format!r}")
    if fb not in FORMATS:
        raise ValueError(f"b_format must be None or one of {FORMATS}, got {b_format!r}")

    gen = torch.Generator().manual_seed(seed)
    commands: list[TileGemm | Drain] = []
    regions: list[Region] = []
    for t in range(n_gemms):
        acc = t % acc_buffers  # alternating, as the lowering does
        mask = None if dm is None else torch.rand((tm, tn), generator=gen) < dm
        for k in range(k_tiles):
            a = Operand.of(_random_tile(tm, tk, da, operand_bits, gen), fa)
            b = Operand.of(_random_tile(tk, tn, db, operand_bits, gen), fb)
            commands.append(TileGemm(acc, a, b, out_mask=mask, accumulate=k > 0))
        drain = _random_drain(acc, acc_bits, gen)
        # A product of two b-bit codes is ~2**(2b-2); sums of tile_k*k_tiles of them grow by
        # about their square root: this shift leaves codes across the b-bit range.
        code_shift = min(MAX_SHIFT, operand_bits - 1 + (tk * k_tiles).bit_length() // 2)
        if prune is not None and t % 2 == 0:
            drain = Drain(acc, shift=code_shift, out_bits=operand_bits, rounding=drain.rounding, relu=drain.relu,
                          prune=True)
        elif topk_threshold is not None and t % 2 == 1:
            drain = Drain(acc, shift=code_shift, out_bits=operand_bits, rounding=drain.rounding, relu=drain.relu,
                          topk=True)
        commands.append(drain)
        regions.append(Region(t * tm, 0, tm, tn))
    return Program(tuple(commands), acc_bits, tm, tn, tk, (n_gemms * tm, tn), tuple(regions), prune=prune,
                   topk_threshold=topk_threshold)


def random_resprop_program(
    *,
    n_samples: int,
    rows_per_sample: int,
    cols: int,
    tile_m: int,
    tile_n: int,
    tile_k: int,
    operand_bits: int,
    acc_bits: int,
    out_bits: int,
    sample: int,
    mant: int | None = None,
    exp: int = 0,
    target_cp: int = 1500,
    dense: bool = False,
    density: float = 0.7,
    k_tiles: int = 1,
    saturate_bits: int = 0,
    seed: int,
    acc_buffers: int = ACC_BUFFERS,
) -> Program:
    """A random ReSprop pass: the [N*R, C] GEMM ``A @ B`` lowered with ``Drain(resprop=True)``.

    A ([N*R, k_tiles*tile_k], nonzero with probability ``density``) and B (full) are random
    ``operand_bits`` codes (``_random_tile``: extremes included); the drain requantizes to
    ``out_bits`` with the shift that brings the largest |A @ B| to the top of that range. P [R, C]
    is uniform over the signed ``out_bits`` codes with both extremes of the ``operand_bits`` range
    set once. ``saturate_bits`` makes the shift that many bits smaller (not below 0), so the
    largest products overflow the code range and the drain saturates them to ``±qmax(out_bits)``.
    The threshold is ``mant * 2**exp``; ``mant`` None picks the median |D| of the pass
    (``D = g - P``) with ``exp = 0``, so the keep test goes both ways. ``sample`` (j;
    ``>= n_samples`` stores none), ``target_cp`` and ``dense`` go to the ReSpropSetting.
    ``acc_buffers``: the accumulators the output tiles alternate between (``lower_gemm``).
    Deterministic in ``seed``.
    """
    for name, v in (("n_samples", n_samples), ("rows_per_sample", rows_per_sample), ("cols", cols),
                    ("k_tiles", k_tiles)):
        _check_pos_int(name, v)
    _check_pos_int("sample", sample, 0)
    _check_pos_int("saturate_bits", saturate_bits, 0)
    _check_pos_int("seed", seed, 0)
    if not _is_int(operand_bits) or not 2 <= operand_bits <= MAX_OPERAND_BITS:
        raise ValueError(f"operand_bits must be an int in [2, {MAX_OPERAND_BITS}], got {operand_bits!r}")
    if not _is_int(out_bits) or not 2 <= out_bits <= operand_bits:
        raise ValueError(f"out_bits must be an int in [2, operand_bits = {operand_bits}], got {out_bits!r}")
    gen = torch.Generator().manual_seed(seed)
    rows, k = n_samples * rows_per_sample, k_tiles * tile_k
    a = _random_tile(rows, k, density, operand_bits, gen)
    b = _random_tile(k, cols, 1.0, operand_bits, gen)
    p = _random_tile(rows_per_sample, cols, 1.0, out_bits, gen)
    if p.numel() >= 2:
        p.view(-1)[0], p.view(-1)[-1] = -(1 << (operand_bits - 1)), (1 << (operand_bits - 1)) - 1
    peak = int((a @ b).abs().max())
    shift = min(MAX_SHIFT, max(0, peak.bit_length() - (out_bits - 1) - saturate_bits))
    drain = Drain(0, shift=shift, out_bits=out_bits, resprop=True)
    tiles = (tile_m, tile_n, tile_k)

    def lowered(m: int, e: int) -> Program:
        return lower_gemm(a, b, tiles=tiles, acc_bits=acc_bits, drain=drain, acc_buffers=acc_buffers,
                          resprop=ReSpropSetting(p, n_samples, sample, m, e, target_cp, dense))

    if mant is None:
        # At T = 0 a sparse pass emits S = D exactly (S = 0 where D = 0).
        d = evaluate(lowered(0, 0)).output if not dense else None
        mant, exp = (0 if d is None else int(d.abs().flatten().median())), 0
    return lowered(mant, exp)
