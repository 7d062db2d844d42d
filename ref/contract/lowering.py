"""Lowering of conv2d / linear training passes (FWD, BWI, BWW) into accelerator programs.

Every pass becomes one GEMM ``Cmat = Mmask ⊙ (A · B)`` on integer (already quantized, int64)
tensors, tiled to (tile_m, tile_n, tile_k) with ragged edges zero-padded and K accumulated across
K tiles (first K tile ``accumulate=False``, then True), followed by one Drain per output tile.

GEMM operands per pass (golden-model operand order in brackets, as in ``ref.policies`` skips):

=======  ==========================  ==========================  =====================
pass     A [M, K]                    B [K, N]                    output matrix [M, N]
=======  ==========================  ==========================  =====================
conv FWD im2col(X) [NPQ, CRS]        W as [CRS, K]               Y as [NPQ, K]
conv BWI im2col(dil/pad dY) [NHW, KRS]  flipped W as [KRS, C]   dX as [NHW, C]
conv BWW dY as [K, NPQ]              im2col(X) [NPQ, CRS]        dW as [K, CRS]
lin FWD  X [N, F]                    Wᵀ [F, O]                   Y [N, O]
lin BWI  dY [N, O]                   W [O, F]                    dX [N, F]
lin BWW  dYᵀ [O, N]                  X [N, F]                    dW [O, F]
=======  ==========================  ==========================  =====================

So A is the golden model's first operand for FWD/BWI (X, dY) and its *second* for BWW (dY);
``gemm_formats`` converts a policy's ``skips`` into (a_format, b_format).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ref.contract.commands import FORMATS, Drain, Operand, Program, Region, ReSpropSetting, TileGemm
from ref.contract.evaluate import ProgramResult, evaluate

KINDS: tuple[str, ...] = ("conv2d", "linear")
PASSES: tuple[str, ...] = ("fwd", "bwi", "bww")
ACC_BUFFERS = 2  # output tiles alternate between two accumulators (drain of one overlaps the next)


@dataclass(frozen=True, eq=False)
class LoweredPass:
    """A lowered layer pass.

    program:    the Program; its output matrix is the GEMM result [M, N].
    out_shape:  shape of the layer tensor the pass produces (Y, dX or dW).
    reassemble: maps the program's output matrix [M, N] to the layer tensor of ``out_shape``.
    """

    kind: str
    pass_: str
    program: Program
    out_shape: tuple[int, ...]
    reassemble: Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class PassResult:
    """``run_pass`` outcome: the int64 layer tensor and the evaluator's result (tiles, counts)."""

    output: torch.Tensor
    result: ProgramResult
    lowered: LoweredPass


# ----------------------------------------------------------------------------------------------
# Validation helpers


def _check_acc_buffers(acc_buffers: int) -> int:
    if not isinstance(acc_buffers, int) or isinstance(acc_buffers, bool) or acc_buffers < 1:
        raise ValueError(f"acc_buffers must be an int >= 1, got {acc_buffers!r}")
    return acc_buffers


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_int_tensor(name: str, t: object, dims: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be an int64 tensor of {dims} dims, got {type(t).__name__}")
    if t.dtype != torch.int64 or t.dim() != dims:
        raise ValueError(f"{name} must be an int64 tensor of {dims} dims, got {t.dtype} with {t.dim()} dims")
    return t


def _check_tiles(tiles: tuple[int, int, int]) -> tuple[int, int, int]:
    if not isinstance(tiles, tuple) or len(tiles) != 3:
        raise ValueError(f"tiles must be a tuple (tile_m, tile_n, tile_k), got {tiles!r}")
    for name, v in zip(("tile_m", "tile_n", "tile_k"), tiles, strict=True):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return tiles


def gemm_formats(pass_: str, skips: tuple[bool, bool]) -> tuple[str, str]:
    """(a_format, b_format) for a pass from a policy's ``skips`` (golden-model operand order).

    Golden-model order: FWD (X, W), BWI (dY, W), BWW (X, dY); a skipped operand is sent as a bitmap.
    The GEMM's A/B are (X, W), (dY, W) and (dY, X): BWW swaps the pair.
    """
    _check_choice("pass_", pass_, PASSES)
    first, second = ("bitmap" if s else "dense" for s in skips)
    return (second, first) if pass_ == "bww" else (first, second)


# ----------------------------------------------------------------------------------------------
# Tiling: one GEMM -> Program


def lower_gemm(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    out_mask: torch.Tensor | None = None,
    a_format: str = "dense",
    b_format: str = "dense",
    tiles: tuple[int, int, int] = (8, 8, 8),
    acc_bits: int = 32,
    drain: Drain | None = None,
    resprop: ReSpropSetting | None = None,
    acc_buffers: int = ACC_BUFFERS,
) -> Program:
    """Tile ``Cmat = out_mask ⊙ (a @ b)`` (a [M, K], b [K, N], int64) into a Program.

    Output tiles are visited row-major (m tile, then n tile); for each, the K tiles are issued in
    order with ``accumulate = (k tile > 0)``, then one Drain (``drain``'s shift/out_bits/rounding/relu
    and resprop; raw read-out when None). Ragged edges are zero-padded; padded mask entries are
    False. ``resprop``: the program's ReSpropSetting (for a ``drain`` with ``resprop``; its P is
    [R, C] with ``M = n_samples * R`` and ``C = N``). ``acc_buffers``: output tile ``t`` uses
    accumulator ``t % acc_buffers`` (default :data:`ACC_BUFFERS`; 1 for a core with one accumulator).
    """
    _check_acc_buffers(acc_buffers)
    _check_int_tensor("a", a, 2)
    _check_int_tensor("b", b, 2)
    _check_choice("a_format", a_format, FORMATS)
    _check_choice("b_format", b_format, FORMATS)
    tm, tn, tk = _check_tiles(tiles)
    m, k = a.shape
    k2, n = b.shape
    if k != k2:
        raise ValueError(f"a is [{m}, {k}] but b is [{k2}, {n}]: inner dimensions must match")
    if k == 0:
        raise ValueError("the reduction length K must be at least 1")
    if out_mask is not None and (out_mask.dtype != torch.bool or tuple(out_mask.shape) != (m, n)):
        got = f"{out_mask.dtype} {tuple(out_mask.shape)}"
        raise ValueError(f"out_mask must be a bool tensor of shape {(m, n)}, got {got}")
    template = drain if drain is not None else Drain(acc=0)
    mt, nt, kt = -(-m // tm), -(-n // tn), -(-k // tk)
    a_p = F.pad(a, (0, kt * tk - k, 0, mt * tm - m))
    b_p = F.pad(b, (0, nt * tn - n, 0, kt * tk - k))
    mask_p = None if out_mask is None else F.pad(out_mask, (0, nt * tn - n, 0, mt * tm - m), value=False)
    # Encode each operand tile once; an A tile is reused by every n tile (and B by every m tile).
    a_ops = {(i, j): Operand.of(a_p[i * tm : (i + 1) * tm, j * tk : (j + 1) * tk], a_format)
             for i in range(mt) for j in range(kt)}  # fmt: skip
    b_ops = {(j, i): Operand.of(b_p[j * tk : (j + 1) * tk, i * tn : (i + 1) * tn], b_format)
             for j in range(kt) for i in range(nt)}  # fmt: skip
    commands: list[TileGemm | Drain] = []
    regions: list[Region] = []
    for mi in range(mt):
        for ni in range(nt):
            acc = len(regions) % acc_buffers
            mask_t = None if mask_p is None else mask_p[mi * tm : (mi + 1) * tm, ni * tn : (ni + 1) * tn]
            for ki in range(kt):
                commands.append(TileGemm(acc, a_ops[mi, ki], b_ops[ki, ni], mask_t, accumulate=ki > 0))
            commands.append(Drain(acc, template.shift, template.out_bits, template.rounding, template.relu,
                                  resprop=template.resprop))
            regions.append(Region(mi * tm, ni * tn, min(tm, m - mi * tm), min(tn, n - ni * tn)))
    return Program(tuple(commands), acc_bits, tm, tn, tk, (m, n), tuple(regions), resprop=resprop)


# ----------------------------------------------------------------------------------------------
# Layer passes -> GEMM operands


def im2col(x: torch.Tensor, r: int, s: int, stride: int, padding: int) -> torch.Tensor:
    """Patch matrix of x [N, C, H, W] for an R x S window: [N*P*Q, C*R*S].

    Row (n, p, q), column (c, r, s) holds X[n, c, p*stride + r - padding, q*stride + s - padding]
    (0 outside X), with P = (H + 2*padding - R) // stride + 1 and Q likewise: torch's conv2d geometry.
    """
    n, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    p = (h + 2 * padding - r) // stride + 1
    q = (w + 2 * padding - s) // stride + 1
    if p <= 0 or q <= 0:
        raise ValueError(f"kernel {r}x{s} does not fit input {h}x{w} with padding {padding}")
    windows = [xp[:, :, i : i + stride * (p - 1) + 1 : stride, j : j + stride * (q - 1) + 1 : stride]
               for i in range(r) for j in range(s)]  # fmt: skip
    cols = torch.stack(windows, dim=2)  # [N, C, R*S, P, Q]
    return cols.permute(0, 3, 4, 1, 2).reshape(n * p * q, c * r * s)


def _dilate_pad(dy: torch.Tensor, h: int, w: int, r: int, s: int, stride: int, padding: int) -> torch.Tensor:
    """dY [N, K, P, Q] zero-inserted by ``stride`` and padded so a stride-1 R x S correlation gives dX.

    Returns D [N, K, H+R-1, W+S-1] with D[n, k, p*stride + R-1-padding, q*stride + S-1-padding] = dY[n, k, p, q];
    positions that fall outside D only feed dX outside [0, H) x [0, W) and are dropped.
    """
    n, k, p, q = dy.shape
    out = torch.zeros((n, k, h + r - 1, w + s - 1), dtype=torch.int64)
    rows = (r - 1 - padding) + stride * torch.arange(p)
    cols = (s - 1 - padding) + stride * torch.arange(q)
    vr = (rows >= 0) & (rows < h + r - 1)
    vc = (cols >= 0) & (cols < w + s - 1)
    out[:, :, rows[vr][:, None], cols[vc][None, :]] = dy[:, :, vr][:, :, :, vc]
    return out


@dataclass(frozen=True, eq=False)
class _Gemm:
    """A pass as a GEMM: operands, the layer-layout <-> matrix maps of the output."""

    a: torch.Tensor
    b: torch.Tensor
    out_shape: tuple[int, ...]
    to_matrix: Callable[[torch.Tensor], torch.Tensor]  # layer-layout output-shaped tensor -> [M, N]
    from_matrix: Callable[[torch.Tensor], torch.Tensor]  # [M, N] -> layer layout


def _conv_gemm(
    pass_: str,
    x: torch.Tensor | None,
    w: torch.Tensor | None,
    dy: torch.Tensor | None,
    x_shape: tuple[int, ...] | None,
    w_shape: tuple[int, ...] | None,
    stride: int,
    padding: int,
) -> _Gemm:
    if pass_ == "fwd":
        x, w = _check_int_tensor("x", x, 4), _check_int_tensor("w", w, 4)
        n, c, h, wd = x.shape
        k, c2, r, s = w.shape
        if c != c2:
            raise ValueError(f"x has {c} channels but w expects {c2}")
        a = im2col(x, r, s, stride, padding)
        p, q = (h + 2 * padding - r) // stride + 1, (wd + 2 * padding - s) // stride + 1
        return _Gemm(a, w.reshape(k, c * r * s).t(), (n, k, p, q),
                     lambda t: t.permute(0, 2, 3, 1).reshape(n * p * q, k),
                     lambda mtx: mtx.reshape(n, p, q, k).permute(0, 3, 1, 2))  # fmt: skip
    if pass_ == "bwi":
        dy, w = _check_int_tensor("dy", dy, 4), _check_int_tensor("w", w, 4)
        if x_shape is None or len(x_shape) != 4:
            raise ValueError(f"x_shape must be the 4-D input shape (N, C, H, W) for conv2d BWI, got {x_shape!r}")
        n, c, h, wd = (int(d) for d in x_shape)
        k, c2, r, s = w.shape
        _check_out_geometry(dy, (n, k), h, wd, r, s, stride, padding, c, c2)
        d = _dilate_pad(dy, h, wd, r, s, stride, padding)
        b = w.flip(2, 3).permute(0, 2, 3, 1).reshape(k * r * s, c)  # [K*R*S, C], rows (k, r', s')
        return _Gemm(im2col(d, r, s, 1, 0), b, (n, c, h, wd),
                     lambda t: t.permute(0, 2, 3, 1).reshape(n * h * wd, c),
                     lambda mtx: mtx.reshape(n, h, wd, c).permute(0, 3, 1, 2))  # fmt: skip
    x, dy = _check_int_tensor("x", x, 4), _check_int_tensor("dy", dy, 4)
    if w_shape is None or len(w_shape) != 4:
        raise ValueError(f"w_shape must be the 4-D weight shape (K, C, R, S) for conv2d BWW, got {w_shape!r}")
    k, c2, r, s = (int(d) for d in w_shape)
    n, c, h, wd = x.shape
    _check_out_geometry(dy, (n, k), h, wd, r, s, stride, padding, c, c2)
    a = dy.permute(1, 0, 2, 3).reshape(k, -1)  # [K, N*P*Q], columns (n, p, q) as im2col's rows
    return _Gemm(a, im2col(x, r, s, stride, padding), (k, c, r, s),
                 lambda t: t.reshape(k, c * r * s),
                 lambda mtx: mtx.reshape(k, c, r, s))  # fmt: skip


def _check_out_geometry(
    dy: torch.Tensor, nk: tuple[int, int], h: int, w: int, r: int, s: int, stride: int, padding: int, c: int, c2: int
) -> None:
    """dY must be [N, K, P, Q] with torch's conv2d output size for the given input and kernel."""
    if c != c2:
        raise ValueError(f"input has {c} channels but the weight expects {c2}")
    p = (h + 2 * padding - r) // stride + 1
    q = (w + 2 * padding - s) // stride + 1
    if tuple(dy.shape) != (*nk, p, q):
        raise ValueError(f"dy must have shape {(*nk, p, q)} for this geometry, got {tuple(dy.shape)}")


def _linear_gemm(pass_: str, x: torch.Tensor | None, w: torch.Tensor | None, dy: torch.Tensor | None) -> _Gemm:
    def ident(t: torch.Tensor) -> torch.Tensor:
        return t

    if pass_ == "fwd":
        x, w = _check_int_tensor("x", x, 2), _check_int_tensor("w", w, 2)
        if x.shape[1] != w.shape[1]:
            raise ValueError(f"x has {x.shape[1]} features but w expects {w.shape[1]}")
        return _Gemm(x, w.t(), (x.shape[0], w.shape[0]), ident, ident)
    if pass_ == "bwi":
        dy, w = _check_int_tensor("dy", dy, 2), _check_int_tensor("w", w, 2)
        if dy.shape[1] != w.shape[0]:
            raise ValueError(f"dy has {dy.shape[1]} outputs but w has {w.shape[0]}")
        return _Gemm(dy, w, (dy.shape[0], w.shape[1]), ident, ident)
    x, dy = _check_int_tensor("x", x, 2), _check_int_tensor("dy", dy, 2)
    if x.shape[0] != dy.shape[0]:
        raise ValueError(f"x has batch {x.shape[0]} but dy has batch {dy.shape[0]}")
    return _Gemm(dy.t(), x, (dy.shape[1], x.shape[1]), ident, ident)


# ----------------------------------------------------------------------------------------------
# Public entry points


def lower_pass(
    kind: str,
    pass_: str,
    *,
    x: torch.Tensor | None = None,
    w: torch.Tensor | None = None,
    dy: torch.Tensor | None = None,
    x_shape: tuple[int, ...] | None = None,
    w_shape: tuple[int, ...] | None = None,
    stride: int = 1,
    padding: int = 0,
    a_format: str = "dense",
    b_format: str = "dense",
    out_mask: torch.Tensor | None = None,
    tiles: tuple[int, int, int] = (8, 8, 8),
    acc_bits: int = 32,
    drain: Drain | None = None,
    acc_buffers: int = ACC_BUFFERS,
) -> LoweredPass:
    """Lower one layer pass on int64 tensors to a Program.

    Operands per pass: FWD needs x, w; BWI needs dy, w and (conv) x_shape (the stride makes H, W
    ambiguous from dY); BWW needs x, dy and (conv) w_shape. Shapes: conv X [N, C, H, W],
    W [K, C, R, S], dY [N, K, P, Q]; linear X [N, F], W [O, F], dY [N, O].
    ``out_mask`` (bool, the shape of the pass's output: Y, dX or dW) keeps outputs where True and
    forces exact zeros elsewhere (BWI under relu_mask: ``x > 0`` of the layer input).
    ``a_format``/``b_format`` choose dense or bitmap operands for the GEMM's A and B (see the module
    table; ``gemm_formats`` maps a policy's skips). ``drain`` gives the read-out (shift, out_bits,
    rounding, relu; its acc is ignored); None reads the raw int64 accumulators. ``acc_buffers``: the
    accumulators the output tiles alternate between (``lower_gemm``).
    """
    _check_choice("kind", kind, KINDS)
    _check_choice("pass_", pass_, PASSES)
    _check_choice("a_format", a_format, FORMATS)
    _check_choice("b_format", b_format, FORMATS)
    if kind == "conv2d":
        for name, v, lo in (("stride", stride, 1), ("padding", padding, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        g = _conv_gemm(pass_, x, w, dy, x_shape, w_shape, stride, padding)
    else:
        g = _linear_gemm(pass_, x, w, dy)
    mask_mtx = None
    if out_mask is not None:
        if not isinstance(out_mask, torch.Tensor) or out_mask.dtype != torch.bool:
            raise ValueError("out_mask must be a bool tensor or None")
        if tuple(out_mask.shape) != g.out_shape:
            raise ValueError(f"out_mask must have the output shape {g.out_shape}, got {tuple(out_mask.shape)}")
        mask_mtx = g.to_matrix(out_mask)
    program = lower_gemm(g.a.contiguous(), g.b.contiguous(), out_mask=mask_mtx, a_format=a_format,
                         b_format=b_format, tiles=tiles, acc_bits=acc_bits, drain=drain,
                         acc_buffers=acc_buffers)  # fmt: skip
    return LoweredPass(kind, pass_, program, g.out_shape, lambda mtx: g.from_matrix(mtx).contiguous())


def run_pass(kind: str, pass_: str, **kwargs: Any) -> PassResult:
    """``lower_pass`` (same arguments) + ``evaluate`` + reassemble: the int64 layer tensor and counts."""
    lowered = lower_pass(kind, pass_, **kwargs)
    result = evaluate(lowered.program)
    assert result.output is not None  # lower_gemm always declares the output matrix
    return PassResult(lowered.reassemble(result.output), result, lowered)
