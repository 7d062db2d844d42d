"""The zero pattern of one training pass as a whole GEMM, the input of the candidate cycle models.

A design study compares compute cores that tile and order a GEMM differently, so it works on the
untiled GEMM ``C = M ⊙ (A·B)``: which operand elements are nonzero, which outputs the mask keeps,
and the true reduction length (the lowering zero-pads K to whole tiles; padding is no work). The
pattern is rebuilt from a lowered ``ref.contract.Program`` (tiles placed back where the lowering
cut them), so it is exactly what the accelerator receives, quantization zeros included.

``dense_macs`` counts the pass's real products ``M * N * K`` (no padding): the numerator of
dense-equivalent throughput, the same for every candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ref.contract.commands import Drain, Program, TileGemm
from ref.contract.trace_programs import TracePass

__all__ = ["GemmPattern", "program_operands", "program_pattern", "reduction_length", "trace_pass_pattern"]


@dataclass(frozen=True, eq=False)
class GemmPattern:
    """Nonzero pattern of ``C = mask ⊙ (A·B)``.

    name: label for reports (e.g. ``"swat conv2 bwi"``).
    a: bool [M, K], True where A is nonzero.  b: bool [K, N], True where B is nonzero.
    mask: bool [M, N] of the outputs that are computed, or None (all).
    """

    name: str
    a: torch.Tensor
    b: torch.Tensor
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for label, t in (("a", self.a), ("b", self.b)):
            if not isinstance(t, torch.Tensor) or t.dtype != torch.bool or t.dim() != 2:
                raise ValueError(f"GemmPattern.{label} must be a 2-D bool tensor")
        if self.a.shape[1] != self.b.shape[0]:
            raise ValueError(f"GemmPattern: a is {tuple(self.a.shape)} but b is {tuple(self.b.shape)}")
        if self.mask is not None and tuple(self.mask.shape) != (self.a.shape[0], self.b.shape[1]):
            raise ValueError(f"GemmPattern.mask must be [M, N] = {(self.a.shape[0], self.b.shape[1])}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(M, N, K)."""
        return int(self.a.shape[0]), int(self.b.shape[1]), int(self.a.shape[1])

    @property
    def dense_macs(self) -> int:
        m, n, k = self.shape
        return m * n * k

    @property
    def effectual_macs(self) -> int:
        """Products with both operands nonzero whose output the mask keeps."""
        pairs = self.a.to(torch.float64) @ self.b.to(torch.float64)  # [M, N]: nonzero-pair counts
        if self.mask is not None:
            pairs = pairs * self.mask
        return int(pairs.sum().item())

    def transposed(self) -> GemmPattern:
        """The same products as ``Cᵀ = Bᵀ·Aᵀ``: what a core that skips the other operand sees."""
        mask = None if self.mask is None else self.mask.t().contiguous()
        return GemmPattern(f"{self.name} (T)", self.b.t().contiguous(), self.a.t().contiguous(), mask)


def program_operands(program: Program, *, k: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The whole GEMM of a program lowered by ``ref.contract.lower_gemm``: int64 ``A`` [M, K],
    ``B`` [K, N] and the bool mask [M, N] (None when every output is kept).

    ``program`` must declare its output (``output_shape`` and drain regions) and hold every output
    tile; each output tile's GEMMs are its K tiles in order. ``k``: the true reduction length
    (None: K as padded to whole tiles).
    """
    if program.output_shape is None:
        raise ValueError("program_operands: the program must declare output_shape and drain_regions")
    m, n = program.output_shape
    tm, tn, tk = program.tile_m, program.tile_n, program.tile_k
    gemms: list[TileGemm] = []
    k_tiles = None
    region = iter(program.drain_regions)
    a = b = mask = None
    for cmd in program.commands:
        if isinstance(cmd, TileGemm):
            gemms.append(cmd)
            continue
        assert isinstance(cmd, Drain)
        reg = next(region)
        if k_tiles is None:
            k_tiles = len(gemms)
            kp = k_tiles * tk
            a = torch.zeros((-(-m // tm) * tm, kp), dtype=torch.int64)
            b = torch.zeros((kp, -(-n // tn) * tn), dtype=torch.int64)
            mask = torch.ones((a.shape[0], b.shape[1]), dtype=torch.bool)
        if len(gemms) != k_tiles:
            raise ValueError("program_operands: every output tile must have the same number of K tiles")
        for ki, g in enumerate(gemms):
            a[reg.row0 : reg.row0 + tm, ki * tk : (ki + 1) * tk] = g.a.to_dense()
            b[ki * tk : (ki + 1) * tk, reg.col0 : reg.col0 + tn] = g.b.to_dense()
            if g.out_mask is not None:
                mask[reg.row0 : reg.row0 + tm, reg.col0 : reg.col0 + tn] = g.out_mask
        gemms = []
    if a is None or b is None or mask is None:
        raise ValueError("program_operands: the program has no Drain")
    kk = a.shape[1] if k is None else k
    if not 1 <= kk <= a.shape[1]:
        raise ValueError(f"program_operands: k must be in [1, {a.shape[1]}], got {k!r}")
    if a[:, kk:].any() or b[kk:, :].any():
        raise ValueError(f"program_operands: nonzero operands beyond k = {kk}")
    mask = mask[:m, :n]
    return (a[:m, :kk].contiguous(), b[:kk, :n].contiguous(),
            None if bool(mask.all()) else mask.contiguous())


def program_pattern(program: Program, name: str = "", *, k: int | None = None) -> GemmPattern:
    """The zero pattern of :func:`program_operands`."""
    a, b, mask = program_operands(program, k=k)
    return GemmPattern(name, a != 0, b != 0, mask)


def reduction_length(p: TracePass) -> int:
    """The GEMM's true K for a trace pass (``ref.contract.lowering``'s operand table)."""
    ops = p.operands
    if p.kind == "conv2d":
        if p.pass_ == "fwd":
            return int(ops["w"][0].numel())  # C * R * S
        if p.pass_ == "bwi":
            w = ops["w"]
            return int(w.shape[0] * w.shape[2] * w.shape[3])  # K * R * S
        dy = ops["dy"]
        return int(dy.shape[0] * dy.shape[2] * dy.shape[3])  # N * P * Q
    if p.pass_ == "fwd":
        return int(ops["w"].shape[1])
    if p.pass_ == "bwi":
        return int(ops["w"].shape[0])
    return int(ops["dy"].shape[0])


def trace_pass_pattern(p: TracePass) -> GemmPattern:
    """The whole GEMM of one (untruncated) trace pass."""
    if p.truncated:
        raise ValueError(f"trace_pass_pattern: {p.layer} {p.pass_} holds only {p.n_tiles} of {p.full_tiles} tiles")
    return program_pattern(p.program, f"{p.algo} {p.layer} {p.pass_}", k=reduction_length(p))
