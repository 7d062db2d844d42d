"""The gradient-path units' commands in the program contract, and their exact integer semantics.

The core runs :class:`ref.contract.Program`\\ s; the units that make sparsity (``hw.relu_mask``,
``hw.stochastic_pruner``, ``hw.topk_threshold``, ``hw.resprop``, ``hw.bitmap_codec``) run the
commands below, one tensor each. :func:`evaluate_unit` is the executable definition, on the
machine of a :class:`ref.contract.machine.StepParams`; the integer models it calls (``ref.*_codes``,
``ref.contract.formats``) are each bit-exact against their unit's RTL. A layer step
(``ref.contract.layer_step``) is a chain of programs and these commands, and its backends run
each on the reference (here) or on the RTL (``sim.layer_chain``).

Codes are signed ``operand_bits``-bit integers in int64 tensors, masks bool tensors, and every
tensor is taken in row-major order (the order its elements stream through the unit).

==================  ===============================================================================
command             result
==================  ===============================================================================
ReluMaskEmit(z)     ``ReluMaskOut(act=max(z, 0), mask=z > 0)`` (Sarma et al.; mask 0 at z = 0)
MaskApply(dx, m)    ``dx`` where ``m``, exactly 0 elsewhere
StochasticPrune     two-pass (Dai et al.): ``tau = tau_fixed(codes, c_fixed, prune_frac_bits)``,
(codes, c_fixed,    LFSR reseeded with ``seed``, then ``prune_codes`` with one draw per element
seed)               (none at ``tau = 0``) -> ``PruneOut(codes, tau)``
TopKSelect(codes,   SWAT: the exact threshold that keeps the ``k`` largest item scores (|code|, or
k, slice_len)       the L1 norm of each ``slice_len`` run for channel top-K), ties at the threshold
                    kept -> ``TopKOut(values, keep, threshold, kept)``
ReSpropDifference   ReSprop with the stored sample ``p``: ``D = dY - P``, ``S = D`` where
(dy, p, load,       ``|D| > T`` else 0, ``T`` from ``load = (mant, exp)``; the x2 / /2 controller
target_cp, sample)  steps the exponent toward ``target_cp``; sample ``sample`` of dY is stored as the
                    next P -> ``ReSpropOut(s, nnz, thr_used, exp_after)``
BitmapEncode(v)     rows of ``v`` (``[n, tile_k]``) as the core's compressed vectors -> BitmapTile
BitmapDecode(t)     a BitmapTile (rows of ``tile_k``) back to its dense codes
==================  ===============================================================================

State. The units keep state between tensors: top-K its threshold for ``period`` commands, the
pruner its previous tau and LFSR, ReSprop its P banks and threshold exponent. A command here names
the state it starts from (the pruner's seed, ReSprop's P and threshold; top-K recomputes), as the
core's :class:`~ref.contract.PruneSetting` does for a program, so each command's result depends on
the command alone. The carried-state modes are defined by the unit models (``PrunerModel``,
``TopKUnitModel``, ``ReSpropCodes``) and tested on the units' own streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ref.contract.formats import BitmapTile, decode_bitmap, encode_bitmap
from ref.contract.machine import StepParams
from ref.lfsr import GaloisLFSR
from ref.relu_mask_codes import mask_apply, relu_codes, relu_mask
from ref.resprop_codes import ReSpropCodes
from ref.stochastic_prune_codes import PrunerModel
from ref.topk_codes import TopKUnitModel

__all__ = [
    "BitmapDecode", "BitmapEncode", "MaskApply", "PruneOut", "ReSpropDifference", "ReSpropOut", "ReluMaskEmit",
    "ReluMaskOut", "StochasticPrune", "TopKOut", "TopKSelect", "UnitCommand", "UnitResult", "evaluate_unit",
]  # fmt: skip


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_codes(command: str, name: str, t: object) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.int64:
        raise ValueError(f"{command}.{name} must be an int64 code tensor, got {getattr(t, 'dtype', type(t).__name__)}")
    if t.numel() == 0:
        raise ValueError(f"{command}.{name} must not be empty")


# -- commands --------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ReluMaskEmit:
    """``hw.relu_mask.ReluMaskEmit``: the ReLU of a code tensor and its 1-bit mask."""

    z: torch.Tensor

    def __post_init__(self) -> None:
        _check_codes("ReluMaskEmit", "z", self.z)


@dataclass(frozen=True, eq=False)
class MaskApply:
    """``hw.relu_mask.MaskApply``: zero ``dx`` where the forward mask is 0."""

    dx: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        _check_codes("MaskApply", "dx", self.dx)
        if not isinstance(self.mask, torch.Tensor) or self.mask.dtype != torch.bool or self.mask.shape != self.dx.shape:
            raise ValueError(f"MaskApply.mask must be a bool tensor of dx's shape {tuple(self.dx.shape)}")


@dataclass(frozen=True, eq=False)
class StochasticPrune:
    """``hw.stochastic_pruner.StochasticPruner``, one two-pass tensor job after a reseed.

    ``c_fixed``: the constant c of ``tau = c * mean|g|`` in ``prune_frac_bits`` fraction bits
    (``ref.numerics.to_fixed``); ``seed``: the LFSR state the job starts from (nonzero).
    """

    codes: torch.Tensor
    c_fixed: int
    seed: int

    def __post_init__(self) -> None:
        _check_codes("StochasticPrune", "codes", self.codes)
        if not _is_int(self.c_fixed) or self.c_fixed < 0:
            raise ValueError(f"StochasticPrune.c_fixed must be an int >= 0, got {self.c_fixed!r}")
        if not _is_int(self.seed) or self.seed < 1:
            raise ValueError(f"StochasticPrune.seed must be a nonzero LFSR state (int >= 1), got {self.seed!r}")


@dataclass(frozen=True, eq=False)
class TopKSelect:
    """``hw.topk_threshold.TopKThresholdUnit``, one recomputing tensor command.

    ``k``: items to keep (``ref.topk_codes.keep_count(keep, items)``); ``slice_len``: codes per
    item (1: element top-K; R*S: channel top-K of a weight tensor by the L1 norm of each kernel slice).
    """

    codes: torch.Tensor
    k: int
    slice_len: int = 1

    def __post_init__(self) -> None:
        _check_codes("TopKSelect", "codes", self.codes)
        if not _is_int(self.slice_len) or self.slice_len < 1 or self.codes.numel() % self.slice_len:
            raise ValueError(f"TopKSelect.slice_len must be an int >= 1 that divides the {self.codes.numel()} "
                             f"codes, got {self.slice_len!r}")
        items = self.codes.numel() // self.slice_len
        if not _is_int(self.k) or not 1 <= self.k <= items:
            raise ValueError(f"TopKSelect.k must be an int in 1..{items} (items), got {self.k!r}")


@dataclass(frozen=True, eq=False)
class ReSpropDifference:
    """``hw.resprop.ReSpropUnit``: one sparse pass over a batch of dY with stored sample ``p``.

    dy: ``[N, ...]`` codes; p: one sample, ``dy.shape[1:]``; load: the threshold ``(mant, exp)``
    (``ref.resprop_codes.threshold_code``); target_cp: target nonzero share in hundredths of a
    percent; sample: the sample of dY stored as the next P (``>= N`` stores none).
    """

    dy: torch.Tensor
    p: torch.Tensor
    load: tuple[int, int]
    target_cp: int
    sample: int

    def __post_init__(self) -> None:
        _check_codes("ReSpropDifference", "dy", self.dy)
        _check_codes("ReSpropDifference", "p", self.p)
        if self.dy.dim() < 2 or tuple(self.p.shape) != tuple(self.dy.shape[1:]):
            raise ValueError(f"ReSpropDifference.p must be one sample of dy, shape {tuple(self.dy.shape[1:])}, "
                             f"got {tuple(self.p.shape)}")
        if not (isinstance(self.load, tuple) and len(self.load) == 2 and all(_is_int(v) for v in self.load)):
            raise ValueError(f"ReSpropDifference.load must be a (mant, exp) pair of ints, got {self.load!r}")
        if not _is_int(self.target_cp) or not 0 <= self.target_cp <= 10000:
            raise ValueError(f"ReSpropDifference.target_cp must be an int in 0..10000, got {self.target_cp!r}")
        if not _is_int(self.sample) or self.sample < 0:
            raise ValueError(f"ReSpropDifference.sample must be an int >= 0, got {self.sample!r}")


@dataclass(frozen=True, eq=False)
class BitmapEncode:
    """``hw.bitmap_codec.BitmapEncoder``: dense vectors (rows of ``[n, tile_k]``) to bitmap + nonzeros."""

    vectors: torch.Tensor

    def __post_init__(self) -> None:
        _check_codes("BitmapEncode", "vectors", self.vectors)
        if self.vectors.dim() != 2:
            raise ValueError(f"BitmapEncode.vectors must be 2-D [n, tile_k], got {self.vectors.dim()}-D")


@dataclass(frozen=True, eq=False)
class BitmapDecode:
    """``hw.bitmap_codec.BitmapDecoder``: compressed vectors (rows of a BitmapTile) to dense codes."""

    tile: BitmapTile

    def __post_init__(self) -> None:
        if not isinstance(self.tile, BitmapTile):
            raise ValueError(f"BitmapDecode.tile must be a BitmapTile, got {type(self.tile).__name__}")


UnitCommand = ReluMaskEmit | MaskApply | StochasticPrune | TopKSelect | ReSpropDifference | BitmapEncode | BitmapDecode


# -- results ---------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ReluMaskOut:
    act: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True, eq=False)
class PruneOut:
    codes: torch.Tensor
    tau: int


@dataclass(frozen=True, eq=False)
class TopKOut:
    """Kept codes (others 0), keep mask, threshold (an item score), codes kept (elements)."""

    values: torch.Tensor
    keep: torch.Tensor
    threshold: int
    kept: int


@dataclass(frozen=True, eq=False)
class ReSpropOut:
    """S, its nonzero count, the integer threshold T used, and the exponent after the controller."""

    s: torch.Tensor
    nnz: int
    thr_used: int
    exp_after: int


UnitResult = ReluMaskOut | torch.Tensor | PruneOut | TopKOut | ReSpropOut | BitmapTile


# -- semantics -------------------------------------------------------------------------------------

def _check_code_range(command: str, name: str, t: torch.Tensor, bits: int) -> None:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if t.numel() and (int(t.min()) < low or int(t.max()) > high):
        raise ValueError(f"{command}.{name} must hold signed {bits}-bit codes in {low}..{high} (operand_bits)")


def evaluate_unit(cmd: UnitCommand, machine: StepParams) -> UnitResult:
    """The exact result of one unit command on ``machine`` (see the module docstring).

    Raises ValueError, naming the field, for a command the machine's unit cannot take (codes wider
    than ``operand_bits``, a tensor larger than the unit holds, vectors that are not ``tile_k`` long).
    """
    b = machine.operand_bits
    if isinstance(cmd, ReluMaskEmit):
        _check_code_range("ReluMaskEmit", "z", cmd.z, b)
        return ReluMaskOut(relu_codes(cmd.z), relu_mask(cmd.z))
    if isinstance(cmd, MaskApply):
        _check_code_range("MaskApply", "dx", cmd.dx, b)
        return mask_apply(cmd.dx, cmd.mask)
    if isinstance(cmd, StochasticPrune):
        _check_code_range("StochasticPrune", "codes", cmd.codes, b)
        if cmd.codes.numel() >= 1 << machine.prune_count_bits:
            raise ValueError(f"StochasticPrune.codes has {cmd.codes.numel()} codes; the pruner counts to "
                             f"{(1 << machine.prune_count_bits) - 1} (prune_count_bits)")
        if cmd.seed >= 1 << machine.lfsr_width:
            raise ValueError(f"StochasticPrune.seed must be a {machine.lfsr_width}-bit LFSR state, got {cmd.seed}")
        model = PrunerModel(operand_bits=b, lfsr=GaloisLFSR(machine.lfsr_width, machine.lfsr_taps, cmd.seed))
        codes, tau = model.run(cmd.codes, c_fixed=cmd.c_fixed, frac_bits=machine.prune_frac_bits, mode="two_pass")
        return PruneOut(codes, tau)
    if isinstance(cmd, TopKSelect):
        _check_code_range("TopKSelect", "codes", cmd.codes, b)
        if cmd.codes.numel() > machine.topk_max_elems:
            raise ValueError(f"TopKSelect.codes has {cmd.codes.numel()} codes, more than topk_max_elems = "
                             f"{machine.topk_max_elems}")
        r = TopKUnitModel(b, machine.topk_max_elems).process(cmd.codes.flatten().tolist(), cmd.k,
                                                             slice_len=cmd.slice_len, period=1, force=True)
        shape = cmd.codes.shape
        return TopKOut(torch.tensor(r.values, dtype=torch.int64).reshape(shape),
                       torch.tensor(r.mask, dtype=torch.bool).reshape(shape), r.threshold, r.kept)
    if isinstance(cmd, ReSpropDifference):
        for name in ("dy", "p"):
            _check_code_range("ReSpropDifference", name, getattr(cmd, name), b)
        n, elems = cmd.dy.shape[0], cmd.p.numel()
        if elems > machine.resprop_max_elems or n > machine.resprop_max_batch:
            raise ValueError(f"ReSpropDifference: one sample has {elems} codes and the batch {n}; the unit "
                             f"holds {machine.resprop_max_elems} (resprop_max_elems) and "
                             f"{machine.resprop_max_batch} (resprop_max_batch)")
        model = ReSpropCodes(b, machine.resprop_max_elems)
        # The stored sample is what an earlier pass left in the unit: a dense pass that stores p.
        model.run_pass(cmd.p.flatten().tolist(), n_samples=1, elems=elems, sample=0, dense=True,
                       target_cp=cmd.target_cp)
        r = model.run_pass(cmd.dy.flatten().tolist(), n_samples=n, elems=elems, sample=cmd.sample, dense=False,
                           target_cp=cmd.target_cp, load=cmd.load)
        return ReSpropOut(torch.tensor(r.s, dtype=torch.int64).reshape(cmd.dy.shape), r.nnz, r.thr_used, r.exp_after)
    if isinstance(cmd, BitmapEncode):
        _check_code_range("BitmapEncode", "vectors", cmd.vectors, b)
        if cmd.vectors.shape[1] != machine.tile_k:
            raise ValueError(f"BitmapEncode.vectors must be tile_k = {machine.tile_k} codes long, "
                             f"got {cmd.vectors.shape[1]}")
        return encode_bitmap(cmd.vectors)
    if isinstance(cmd, BitmapDecode):
        if cmd.tile.shape[1] != machine.tile_k:
            raise ValueError(f"BitmapDecode.tile must hold vectors of tile_k = {machine.tile_k} codes, "
                             f"got {cmd.tile.shape[1]}")
        dense = decode_bitmap(cmd.tile)
        _check_code_range("BitmapDecode", "tile", dense, b)
        return dense
    raise ValueError(f"not a unit command: {type(cmd).__name__}")
