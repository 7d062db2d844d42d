"""Work accounting: how many multiply-accumulates each pass of a layer needs under a policy.

Definitions (per layer, per pass, per iteration):

- ``dense_macs``: products whose two operands are both in bounds (padding excluded, since the
  padding zeros are known statically and no hardware issues them), every output computed.
- ``effectual_macs``: products with both operands nonzero *and* the output position needed
  (output mask 1). A lower bound on the work of any zero-skipping engine.
- ``issued_macs``: the products the policy's own dataflow issues: it skips zeros only of the
  operand(s) that the policy declares skippable for that pass, and masked outputs.
  ``effectual <= issued <= dense``.
- ``nnz_a``/``numel_a`` and ``nnz_b``/``numel_b``: nonzeros and size of the two operands as fed to
  the pass. Operand a/b is: FWD (X, W), BWI (dY, W), BWW (X, dY).
- ``mask_density``: density of the output mask (1.0 when the pass has none).

Conv counts are exact: they are convolutions of 0/1 indicator tensors in float64, whose results
are integers far below 2**53.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ref.layer_ops import PASSES, Geometry


@dataclass
class PassWork:
    """Work of one pass of one layer in one iteration (all counts are plain ints)."""

    dense_macs: int
    effectual_macs: int
    issued_macs: int
    nnz_a: int
    numel_a: int
    nnz_b: int
    numel_b: int
    mask_density: float = 1.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# Dense MAC counts depend only on geometry and shapes; cache them (keys are small tuples).
_DENSE_CACHE: dict[tuple, int] = {}


def _ind(t: torch.Tensor) -> torch.Tensor:
    """0/1 float64 indicator of the nonzero entries."""
    return (t != 0).to(torch.float64)


def _masked_sum(t: torch.Tensor, mask: torch.Tensor | None) -> int:
    if mask is not None:
        t = t * mask.to(torch.float64)
    return round(t.sum().item())


def pass_work(
    geometry: Geometry,
    pass_name: str,
    a: torch.Tensor,
    b: torch.Tensor,
    out_shape: torch.Size,
    out_mask: torch.Tensor | None = None,
    skip_a: bool = True,
    skip_b: bool = True,
    extra_macs: int = 0,
) -> PassWork:
    """Count the work of one pass.

    ``a``, ``b``: the pass's operands in the order documented above. ``out_shape``: shape of the
    pass output (Y, dX or dW). ``out_mask``: 0/1 or bool tensor of ``out_shape`` marking needed
    outputs (None = all). ``skip_a``/``skip_b``: whether the policy's dataflow skips zeros of that
    operand. ``extra_macs``: work done outside the main product (e.g. ReSprop's pre-terms), added to
    effectual and issued MACs.
    """
    if pass_name not in PASSES:
        raise ValueError(f"pass_name must be one of {PASSES}, got {pass_name!r}")
    ia, ib = _ind(a), _ind(b)
    oa, ob = torch.ones_like(ia), torch.ones_like(ib)

    def count(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> int:
        if pass_name == "fwd":
            r = geometry.fwd(x, y)
        elif pass_name == "bwi":
            r = geometry.bwi(x, y, out_shape)
        else:
            r = geometry.bww(x, y, out_shape)
        return _masked_sum(r, mask)

    key = (geometry, pass_name, tuple(a.shape), tuple(b.shape), tuple(out_shape))
    dense = _DENSE_CACHE.get(key)
    if dense is None:
        dense = _DENSE_CACHE[key] = count(oa, ob, None)
    effectual = count(ia, ib, out_mask) + extra_macs
    if skip_a and skip_b:  # the dataflow skips every zero: issued = effectual
        issued = effectual
    elif not skip_a and not skip_b and out_mask is None:
        issued = dense + extra_macs
    else:
        issued = count(ia if skip_a else oa, ib if skip_b else ob, out_mask) + extra_macs
    mask_density = 1.0 if out_mask is None else float((out_mask != 0).double().mean().item())
    return PassWork(
        dense_macs=dense,
        effectual_macs=effectual,
        issued_macs=issued,
        nnz_a=int((a != 0).sum().item()),
        numel_a=a.numel(),
        nnz_b=int((b != 0).sum().item()),
        numel_b=b.numel(),
        mask_density=mask_density,
    )


@dataclass
class WorkTotals:
    """Running sums of PassWork over iterations, for one (layer, pass)."""

    dense_macs: int = 0
    effectual_macs: int = 0
    issued_macs: int = 0
    nnz_a: int = 0
    numel_a: int = 0
    nnz_b: int = 0
    numel_b: int = 0
    mask_density_sum: float = 0.0
    count: int = 0

    def add(self, w: PassWork) -> None:
        self.dense_macs += w.dense_macs
        self.effectual_macs += w.effectual_macs
        self.issued_macs += w.issued_macs
        self.nnz_a += w.nnz_a
        self.numel_a += w.numel_a
        self.nnz_b += w.nnz_b
        self.numel_b += w.numel_b
        self.mask_density_sum += w.mask_density
        self.count += 1

    def summary(self) -> dict[str, float]:
        """Averages over the recorded iterations (MAC-weighted fractions)."""
        d = max(self.dense_macs, 1)
        return {
            "dense_macs": self.dense_macs / max(self.count, 1),
            "effectual_macs": self.effectual_macs / max(self.count, 1),
            "issued_macs": self.issued_macs / max(self.count, 1),
            "effectual_fraction": self.effectual_macs / d,
            "issued_fraction": self.issued_macs / d,
            "operand_density_a": self.nnz_a / max(self.numel_a, 1),
            "operand_density_b": self.nnz_b / max(self.numel_b, 1),
            "mask_density": self.mask_density_sum / max(self.count, 1),
            "iterations": self.count,
        }


@dataclass
class WorkLedger:
    """Totals per layer and pass: ``ledger.totals[layer][pass]``."""

    totals: dict[str, dict[str, WorkTotals]] = field(default_factory=dict)

    def add(self, layer: str, pass_name: str, w: PassWork) -> None:
        self.totals.setdefault(layer, {}).setdefault(pass_name, WorkTotals()).add(w)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        return {lay: {p: t.summary() for p, t in passes.items()} for lay, passes in self.totals.items()}

    def pass_fractions(self) -> dict[str, dict[str, float]]:
        """Network-wide MAC-weighted effectual and issued fraction per pass."""
        out: dict[str, dict[str, float]] = {}
        for p in PASSES:
            ts = [passes[p] for passes in self.totals.values() if p in passes]
            dense = sum(t.dense_macs for t in ts)
            out[p] = {
                "effectual_fraction": sum(t.effectual_macs for t in ts) / max(dense, 1),
                "issued_fraction": sum(t.issued_macs for t in ts) / max(dense, 1),
            }
        return out
