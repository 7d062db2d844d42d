"""The accelerator's command set: tile GEMM with operand sparsity and output mask, and drain.

Semantics (exact, integer; ``ref.contract.evaluate`` is the executable definition):

- ``TileGemm(acc, a, b, out_mask, accumulate)``::

      C[acc] = wrap( M ⊙ (A·B) + (M ⊙ C[acc] if accumulate else 0) )

  A is [tile_m, tile_k], B is [tile_k, tile_n], M is [tile_m, tile_n] (all ones when None).
  Masked-off outputs (M = 0) are never computed and read as exactly 0 afterwards: their old
  accumulator value is cleared too, so a masked-off output never leaks a stale partial sum.
  ``wrap`` is two's complement modulo 2**acc_bits (the RTL's accumulator width).
- ``Drain(acc, shift, out_bits, rounding, relu)``: read C[acc] out (the accumulator keeps its
  value). With ``out_bits`` set: ``saturate(shift_round(C, shift, rounding), out_bits)`` (symmetric
  range ±(2**(out_bits-1) - 1), as ``ref.numerics.requantize``), then ``max(., 0)`` if ``relu``.
  With ``out_bits=None``: raw int64 read-out (``shift`` must be 0), then ReLU if ``relu``.
  Every drained element also leaves with its 1-bit ReLU mask ``value > 0``
  (``ref.contract.evaluate.drain_mask``), emitted on the core's result path.
- ``Drain(..., prune=True)`` (requantized drains only): the drained codes ``g`` are then pruned on
  the result path (Dai et al.; ``ref.stochastic_prune_codes.prune_codes`` with ``out_bits``-bit
  codes): 0, ``g`` or ``sign(g)*min(tau, qmax(out_bits))``, with one LFSR draw per element in
  drain order (tile by tile, row-major), none while ``tau = 0``. The program's
  :class:`PruneSetting` gives ``tau`` and the LFSR (seeded when the program starts); the result
  path also sums ``|g|`` over every pruned drain (``ProgramResult.prune_sum``), from which the host
  forms the next tensor's ``tau`` (the pruner's previous-tau mode).
- ``Drain(..., topk=True)`` (requantized drains only, not with ``prune``): the element's mask bit
  is SWAT's top-K keep bit ``|value| >= topk_threshold`` instead of ``value > 0``; the codes are
  unchanged (``ref.contract.evaluate.drain_keep_mask``). This is the comparator of SWAT's
  periodic top-K between recomputations: the program's ``topk_threshold`` is the stored threshold
  (``ref.topk_codes``), and one drain gives both the dense activation Y, which the next layer's
  forward pass uses, and the keep bitmap of its top-K X_hat, which the next layer's BWW uses.
- ``Drain(..., resprop=True)`` (requantized drains only; not with ``relu``, ``prune`` or ``topk``):
  ReSprop's sparse difference on the result path (Goli & Aamodt; ``ref.resprop_codes``). The
  program's :class:`ReSpropSetting` gives the stored sample ``P`` ([R, C]: the output-matrix rows
  of one sample), the batch ``N`` (the output matrix is [N*R, C]), the sample ``j`` to store, the
  threshold ``mant * 2**exp`` (``T`` its floor) and the controller's target. A drained code
  ``g`` at output row ``row``, column ``col`` (its Region places it) leaves as
  ``S = D if |D| > T else 0``, ``D = g - P[row mod R, col]`` (exact, no saturation), or as
  ``S = g`` when the setting is ``dense``; its mask bit is ``S != 0``. Tile
  padding outside the Region leaves as 0 with mask 0. ``ProgramResult.resprop_nnz`` counts the
  nonzero S; ``ProgramResult.resprop_exp_after`` is the exponent after ReSprop's x2 / /2 step
  (``ref.resprop_codes.adapt_exponent`` with n = N*R*C; kept on a dense pass); and
  ``ProgramResult.resprop_p`` is the next pass's P: the codes ``g`` of sample ``j`` (rows
  ``j*R ..``), or the setting's P when ``j >= N``. The ``resprop`` drains of a program must
  drain the whole [N*R, C] output exactly once, each Region the tile clipped to the matrix (what
  ``lower_gemm`` produces): a ReSprop pass is one whole dY tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from ref.contract.formats import BitmapTile, decode_bitmap, encode_bitmap
from ref.resprop_codes import EXP_MAX, EXP_MIN, PERCENT_SCALE

FORMATS: tuple[str, ...] = ("dense", "bitmap")
ROUNDINGS: tuple[str, ...] = ("half_away", "half_even", "floor")
MAX_ACC_BITS = 64  # int64 evaluation wraps modulo 2**64 natively, so any width up to 64 is exact


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True, eq=False)
class Operand:
    """A GEMM operand tile tagged with its storage format.

    ``format == "dense"``: ``data`` is a 2-D int64 tensor. ``format == "bitmap"``: ``data`` is a
    BitmapTile. Build with ``Operand.dense(t)`` / ``Operand.bitmap(t)`` (the latter encodes t).
    """

    format: Literal["dense", "bitmap"]
    data: torch.Tensor | BitmapTile

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.format == "bitmap":
            if not isinstance(self.data, BitmapTile):
                raise ValueError("data must be a BitmapTile when format is 'bitmap'")
        elif not isinstance(self.data, torch.Tensor) or self.data.dtype != torch.int64 or self.data.dim() != 2:
            raise ValueError("data must be a 2-D int64 tensor when format is 'dense'")

    @classmethod
    def dense(cls, tile: torch.Tensor) -> Operand:
        return cls("dense", tile)

    @classmethod
    def bitmap(cls, tile: torch.Tensor | BitmapTile) -> Operand:
        return cls("bitmap", tile if isinstance(tile, BitmapTile) else encode_bitmap(tile))

    @classmethod
    def of(cls, tile: torch.Tensor, format: str) -> Operand:
        """Wrap a dense int64 tile in the named format ("dense" or "bitmap")."""
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        return cls.bitmap(tile) if format == "bitmap" else cls.dense(tile)

    @property
    def shape(self) -> tuple[int, int]:
        if isinstance(self.data, BitmapTile):
            return self.data.shape
        return (int(self.data.shape[0]), int(self.data.shape[1]))

    def to_dense(self) -> torch.Tensor:
        """The dense int64 tile this operand represents."""
        return decode_bitmap(self.data) if isinstance(self.data, BitmapTile) else self.data

    def nonzero(self) -> torch.Tensor:
        """Bool tile, True where the element is nonzero (the bitmap the scheduler sees)."""
        return self.data.bitmap if isinstance(self.data, BitmapTile) else self.data != 0


@dataclass(frozen=True, eq=False)
class TileGemm:
    """``C[acc] = M ⊙ (A·B) (+ M ⊙ C[acc])``; see the module docstring for exact semantics."""

    acc: int
    a: Operand
    b: Operand
    out_mask: torch.Tensor | None = None
    accumulate: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.acc) or self.acc < 0:
            raise ValueError(f"acc must be a non-negative int, got {self.acc!r}")
        if not isinstance(self.a, Operand) or not isinstance(self.b, Operand):
            raise ValueError("a and b must be Operand instances")
        m, k = self.a.shape
        k2, n = self.b.shape
        if k != k2:
            raise ValueError(f"a is [{m}, {k}] but b is [{k2}, {n}]: inner dimensions must match")
        if self.out_mask is not None:
            if not isinstance(self.out_mask, torch.Tensor) or self.out_mask.dtype != torch.bool:
                raise ValueError("out_mask must be a bool tensor or None")
            if tuple(self.out_mask.shape) != (m, n):
                raise ValueError(f"out_mask must have shape {(m, n)}, got {tuple(self.out_mask.shape)}")
        if not isinstance(self.accumulate, bool):
            raise ValueError(f"accumulate must be a bool, got {self.accumulate!r}")


@dataclass(frozen=True)
class Drain:
    """Read accumulator ``acc`` out, requantized (``out_bits`` set) or raw (``out_bits=None``);
    ``prune``: stochastically prune the requantized codes on the result path; ``topk``: emit the
    top-K keep bit ``|value| >= Program.topk_threshold`` as the mask; ``resprop``: emit ReSprop's
    sparse difference against ``Program.resprop`` (see the module doc)."""

    acc: int
    shift: int = 0
    out_bits: int | None = None
    rounding: Literal["half_away", "half_even", "floor"] = "half_away"
    relu: bool = False
    prune: bool = False
    topk: bool = False
    resprop: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.acc) or self.acc < 0:
            raise ValueError(f"acc must be a non-negative int, got {self.acc!r}")
        if not _is_int(self.shift) or not 0 <= self.shift <= 62:
            raise ValueError(f"shift must be an int in [0, 62], got {self.shift!r}")
        if self.out_bits is None:
            if self.shift != 0:
                raise ValueError(f"shift must be 0 for a raw drain (out_bits=None), got {self.shift}")
        elif not _is_int(self.out_bits) or not 2 <= self.out_bits <= 32:
            raise ValueError(f"out_bits must be None or an int in [2, 32], got {self.out_bits!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        if not isinstance(self.relu, bool):
            raise ValueError(f"relu must be a bool, got {self.relu!r}")
        if not isinstance(self.prune, bool):
            raise ValueError(f"prune must be a bool, got {self.prune!r}")
        if self.prune and self.out_bits is None:
            raise ValueError("prune needs a requantized drain (out_bits set): the pruner works on codes")
        if not isinstance(self.topk, bool):
            raise ValueError(f"topk must be a bool, got {self.topk!r}")
        if self.topk and self.out_bits is None:
            raise ValueError("topk needs a requantized drain (out_bits set): the comparator works on codes")
        if self.topk and self.prune:
            raise ValueError("topk and prune cannot both be set: each decides the drain's mask bit")
        if not isinstance(self.resprop, bool):
            raise ValueError(f"resprop must be a bool, got {self.resprop!r}")
        if self.resprop:
            if self.out_bits is None:
                raise ValueError("resprop needs a requantized drain (out_bits set): the difference works on codes")
            for name in ("relu", "prune", "topk"):
                if getattr(self, name):
                    raise ValueError(f"resprop and {name} cannot both be set: a resprop drain emits the "
                                     "gradient difference S and its nonzero bit")


@dataclass(frozen=True)
class PruneSetting:
    """The result path's pruner state at the start of a program: threshold and LFSR.

    ``tau``: integer threshold (0 bypasses the pruner and draws nothing). ``seed``: the LFSR's state
    at the program's start (1 .. 2**lfsr_width - 1); ``lfsr_width``/``lfsr_taps``: the LFSR
    (``ref.lfsr.GaloisLFSR``), which the hardware fixes at generation.
    """

    tau: int
    seed: int
    lfsr_width: int
    lfsr_taps: int

    def __post_init__(self) -> None:
        if not _is_int(self.tau) or self.tau < 0:
            raise ValueError(f"tau must be an int >= 0, got {self.tau!r}")
        if not _is_int(self.lfsr_width) or not 2 <= self.lfsr_width <= 32:
            raise ValueError(f"lfsr_width must be an int in [2, 32], got {self.lfsr_width!r}")
        if not _is_int(self.seed) or not 0 < self.seed < 1 << self.lfsr_width:
            raise ValueError(f"seed must be an int in [1, {(1 << self.lfsr_width) - 1}], got {self.seed!r}")
        if not _is_int(self.lfsr_taps) or not 0 < self.lfsr_taps < 1 << self.lfsr_width:
            raise ValueError(f"lfsr_taps must be a {self.lfsr_width}-bit mask, got {self.lfsr_taps!r}")


@dataclass(frozen=True, eq=False)
class ReSpropSetting:
    """ReSprop's result-path state for one pass (one program): the stored sample and the threshold.

    ``p``: int64 [R, C], the stored sample P in output-matrix layout (R output rows per sample,
    C output columns; for a conv BWI the rows ``(h, w)`` and columns ``c`` of one sample).
    ``n_samples``: the batch N; the program's output matrix is [N*R, C]. ``sample``: j, whose
    drained codes become the next P (``j >= N``: none, P is kept). ``mant``, ``exp``: the threshold
    ``mant * 2**exp`` (``ref.resprop_codes.threshold_code`` of the float one); a difference is kept
    where ``|D| > T``, ``T = floor(mant * 2**exp)`` (strict, ReSprop's rule). ``target_cp``: the
    controller's nonzero target in hundredths of a percent (``ref.resprop_codes.target_code``).
    ``dense``: a dense iteration, ``S = g`` (P is still stored, the exponent is kept).
    """

    p: torch.Tensor
    n_samples: int
    sample: int
    mant: int
    exp: int = 0
    target_cp: int = 0
    dense: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.p, torch.Tensor) or self.p.dtype != torch.int64 or self.p.dim() != 2:
            raise ValueError("p must be a 2-D int64 tensor [rows_per_sample, cols]")
        if self.p.shape[0] < 1 or self.p.shape[1] < 1:
            raise ValueError(f"p must have at least one row and one column, got shape {tuple(self.p.shape)}")
        if not _is_int(self.n_samples) or self.n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1, got {self.n_samples!r}")
        if not _is_int(self.sample) or self.sample < 0:
            raise ValueError(f"sample must be an int >= 0 (>= n_samples stores none), got {self.sample!r}")
        if not _is_int(self.mant) or self.mant < 0:
            raise ValueError(f"mant must be an int >= 0, got {self.mant!r}")
        if not _is_int(self.exp) or not EXP_MIN <= self.exp <= EXP_MAX:
            raise ValueError(f"exp must be an int in [{EXP_MIN}, {EXP_MAX}], got {self.exp!r}")
        if not _is_int(self.target_cp) or not 0 <= self.target_cp <= PERCENT_SCALE:
            raise ValueError(f"target_cp must be an int in [0, {PERCENT_SCALE}] (hundredths of a percent), "
                             f"got {self.target_cp!r}")
        if not isinstance(self.dense, bool):
            raise ValueError(f"dense must be a bool, got {self.dense!r}")

    @property
    def rows_per_sample(self) -> int:
        return int(self.p.shape[0])

    @property
    def cols(self) -> int:
        return int(self.p.shape[1])

    @property
    def threshold(self) -> int:
        """``T = floor(mant * 2**exp)``: the kept differences are those with ``|D| > T``."""
        return self.mant << self.exp if self.exp >= 0 else self.mant >> -self.exp


Command = TileGemm | Drain


@dataclass(frozen=True)
class Region:
    """Where a drained tile lands in the program's output matrix.

    The tile's top-left ``rows x cols`` block is written at ``[row0:row0+rows, col0:col0+cols]``;
    the rest of the tile is zero padding of a ragged edge and is dropped.
    """

    row0: int
    col0: int
    rows: int
    cols: int

    def __post_init__(self) -> None:
        for name in ("row0", "col0", "rows", "cols"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")


@dataclass(frozen=True, eq=False)
class Program:
    """A sequence of commands plus the machine parameters it assumes.

    Fields:
        commands:      TileGemm / Drain commands, executed in order.
        acc_bits:      accumulator width; every accumulator wraps modulo 2**acc_bits (two's complement).
        tile_m, tile_n, tile_k: the fixed tile sizes; every TileGemm's A is [tile_m, tile_k],
                       B is [tile_k, tile_n] (ragged edges are zero-padded by the lowering).
        output_shape:  (rows, cols) of the output matrix the drains assemble into, or None.
        drain_regions: one Region per Drain, in program order (required when output_shape is set).
        prune:         the pruner's threshold and LFSR at the start (needed when a Drain prunes).
        topk_threshold: the stored top-K threshold (a magnitude, >= 0) that ``topk`` Drains compare
                       with (needed when a Drain has ``topk``).
        resprop:       ReSprop's stored sample and threshold (needed when a Drain has ``resprop``).
    """

    commands: tuple[Command, ...]
    acc_bits: int
    tile_m: int
    tile_n: int
    tile_k: int
    output_shape: tuple[int, int] | None = None
    drain_regions: tuple[Region, ...] = field(default=())
    prune: PruneSetting | None = None
    topk_threshold: int | None = None
    resprop: ReSpropSetting | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.acc_bits) or not 2 <= self.acc_bits <= MAX_ACC_BITS:
            raise ValueError(f"acc_bits must be an int in [2, {MAX_ACC_BITS}], got {self.acc_bits!r}")
        for name in ("tile_m", "tile_n", "tile_k"):
            v = getattr(self, name)
            if not _is_int(v) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        n_drains = 0
        for i, cmd in enumerate(self.commands):
            if isinstance(cmd, TileGemm):
                if cmd.a.shape != (self.tile_m, self.tile_k) or cmd.b.shape != (self.tile_k, self.tile_n):
                    raise ValueError(
                        f"commands[{i}]: a must be {(self.tile_m, self.tile_k)} and b {(self.tile_k, self.tile_n)}, "
                        f"got {cmd.a.shape} and {cmd.b.shape}"
                    )
            elif isinstance(cmd, Drain):
                n_drains += 1
                if cmd.prune and self.prune is None:
                    raise ValueError(f"commands[{i}] prunes, so the program needs a PruneSetting (prune=...)")
                if cmd.topk and self.topk_threshold is None:
                    raise ValueError(f"commands[{i}] has topk, so the program needs a topk_threshold")
                if cmd.resprop and self.resprop is None:
                    raise ValueError(f"commands[{i}] has resprop, so the program needs a ReSpropSetting (resprop=...)")
            else:
                raise ValueError(f"commands[{i}] must be a TileGemm or Drain, got {type(cmd).__name__}")
        if self.output_shape is not None and len(self.drain_regions) != n_drains:
            raise ValueError(
                f"drain_regions must have one Region per Drain ({n_drains}), got {len(self.drain_regions)}"
            )
        if self.prune is not None and not isinstance(self.prune, PruneSetting):
            raise ValueError(f"prune must be a PruneSetting or None, got {self.prune!r}")
        if self.topk_threshold is not None and (not _is_int(self.topk_threshold) or self.topk_threshold < 0):
            raise ValueError(f"topk_threshold must be None or an int >= 0, got {self.topk_threshold!r}")
        if self.output_shape is None and self.drain_regions:
            raise ValueError("drain_regions requires output_shape")
        for j, reg in enumerate(self.drain_regions):
            if reg.rows > self.tile_m or reg.cols > self.tile_n:
                raise ValueError(f"drain_regions[{j}] is larger than a tile ({self.tile_m}x{self.tile_n})")
            if self.output_shape is not None and (
                reg.row0 + reg.rows > self.output_shape[0] or reg.col0 + reg.cols > self.output_shape[1]
            ):
                raise ValueError(f"drain_regions[{j}] falls outside output_shape {self.output_shape}")
        if self.resprop is not None and not isinstance(self.resprop, ReSpropSetting):
            raise ValueError(f"resprop must be a ReSpropSetting or None, got {self.resprop!r}")
        self._check_resprop_cover()

    def _check_resprop_cover(self) -> None:
        """The resprop drains drain the [N*R, C] output once each, every Region the clipped tile."""
        drains = [c for c in self.commands if isinstance(c, Drain)]
        if not any(c.resprop for c in drains):
            return
        setting = self.resprop
        assert setting is not None  # checked per command above
        rows, cols = setting.n_samples * setting.rows_per_sample, setting.cols
        if self.output_shape != (rows, cols):
            raise ValueError(f"a program with resprop drains needs output_shape = (n_samples * rows_per_sample, "
                             f"cols) = {(rows, cols)}, got {self.output_shape}")
        covered = torch.zeros((rows, cols), dtype=torch.int64)
        for j, (cmd, reg) in enumerate(zip(drains, self.drain_regions, strict=True)):
            if not cmd.resprop:
                continue
            if reg.row0 >= rows or reg.col0 >= cols:
                raise ValueError(f"drain_regions[{j}] of a resprop drain starts outside the {rows}x{cols} output")
            clipped = Region(reg.row0, reg.col0, min(self.tile_m, rows - reg.row0), min(self.tile_n, cols - reg.col0))
            if reg != clipped:
                raise ValueError(f"drain_regions[{j}] of a resprop drain must be its tile clipped to the "
                                 f"{rows}x{cols} output, {clipped}, got {reg}")
            covered[reg.row0:reg.row0 + reg.rows, reg.col0:reg.col0 + reg.cols] += 1
        if not bool((covered == 1).all()):
            raise ValueError("the resprop drains must drain every element of the output exactly once "
                             f"({int((covered == 0).sum())} undrained, {int((covered > 1).sum())} drained twice)")
