"""Goli & Aamodt 2020 (ReSprop): reuse a stored gradient sample P, compute only a sparse difference S.

Per layer at iteration i (P = raw dY[j] of iteration i-1 for one sample j, shape dY.shape[1:])::

    forward (pre-ReSprop, off the critical path):
        preGX = bwi(P[None], W)              # one-sample BWI, broadcast over the batch
        preGW = bww(sum_n X[n][None], P[None])
    backward:
        D  = dY - P[None]
        S  = D * 1[|D| > thr]                # official tie rule '>'
        dX = bwi(S, W) + preGX               # == bwi(P + S, W) by linearity
        dW = bww(X, S) + preGW               # == bww(X, P + S)
        db = sum dY                          # bias from the ORIGINAL dY (official)
        P  = dY[j] (raw, detached)           # stored for the next iteration

Dense iterations (S = dY, no pre-terms): whenever no P is stored, the first iteration of every
epoch (P is cleared at epoch start) and, with ``dense_first_last``, the last iteration of every
epoch (official code).

Threshold modes:

- ``adaptive_x2`` (official): thr starts at ``initial_threshold`` (1e-7); after each sparse
  iteration, nz% = 100 nnz(S)/numel(S); nz% < target -> thr/2, nz% > target -> thr*2.
- ``quantile``: thr = k-th smallest |D|, k = ceil(RS_target * numel) (thr = 0 for k = 0), so at
  least a fraction RS_target of S is zero, every iteration.

Target non-zero percentage (official naming ambiguity, ALGORITHMS.md §7 6a): the official
``--sparsity s`` is a *non-zero* percentage plus a 5-point margin. Here ``reuse_sparsity`` RS is
the fraction of reused (zero) entries; s = 100 (1 - RS) and target = s + ``nz_margin``
(default 5 for adaptive = official, 0 for quantile). With ``warmup`` (official schedule, epochs):
e < 2: 100; 2 <= e <= 8: s + margin if s > 100 - 10e else 100 - 10e; e > 8: s + margin.

Sample index j (``sample_index``): "official" reproduces the official quirk, j uniform on
{1, ..., n_layers - 1} (the number of ReSprop layers, clipped to the batch), "uniform" draws j
uniformly over the batch. j comes from a torch.Generator seeded with ``seed``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ref.policies.base import BackwardPlan, ForwardPlan, IterationInfo, LayerSpec, Policy

THRESHOLD_MODES = ("adaptive_x2", "quantile")
SAMPLE_INDEX_MODES = ("official", "uniform")


def warmup_target_nz(epoch: int, s_percent: float, margin: float, warmup: bool = True) -> float:
    """Target non-zero percentage of S at ``epoch`` (official ``set_warmup`` schedule)."""
    if not warmup or epoch > 8:
        return s_percent + margin
    if epoch < 2:
        return 100.0
    floor_pct = 100.0 - 10.0 * epoch
    return s_percent + margin if s_percent > floor_pct else floor_pct


def adapt_threshold(thr: float, nz_percent: float, target: float) -> float:
    """One step of the x2 / /2 threshold controller."""
    if nz_percent < target:
        return thr / 2.0
    if nz_percent > target:
        return thr * 2.0
    return thr


def quantile_threshold(d_abs: torch.Tensor, reuse_fraction: float) -> float:
    """Smallest thr such that ``|D| > thr`` zeroes at least ceil(reuse_fraction * numel) entries."""
    n = d_abs.numel()
    k = min(n, math.ceil(round(reuse_fraction * n, 9)))
    if k <= 0:
        return 0.0
    return float(torch.kthvalue(d_abs.flatten(), k).values.item())


class ReSpropPolicy(Policy):
    name = "resprop"
    exact = False
    # GSCN runs the sparse S against the dense operand in BWI and BWW; FWD is dense.
    skips: ClassVar[dict[str, tuple[bool, bool]]] = {"fwd": (False, False), "bwi": (True, False), "bww": (False, True)}

    def __init__(
        self,
        spec: LayerSpec,
        reuse_sparsity: float = 0.9,
        threshold_mode: str = "adaptive_x2",
        initial_threshold: float = 1e-7,
        nz_margin: float | None = None,
        warmup: bool = True,
        dense_first_last: bool = True,
        sample_index: str = "official",
        seed: int = 0,
        n_layers: int | None = None,
    ) -> None:
        super().__init__(spec)
        if not 0.0 <= reuse_sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {reuse_sparsity}")
        if threshold_mode not in THRESHOLD_MODES:
            raise ValueError(f"threshold_mode must be one of {THRESHOLD_MODES}, got {threshold_mode!r}")
        if sample_index not in SAMPLE_INDEX_MODES:
            raise ValueError(f"sample_index must be one of {SAMPLE_INDEX_MODES}, got {sample_index!r}")
        if not initial_threshold > 0.0:
            raise ValueError(f"initial_threshold must be > 0, got {initial_threshold}")
        self.reuse_sparsity = reuse_sparsity
        self.threshold_mode = threshold_mode
        self.nz_margin = (5.0 if threshold_mode == "adaptive_x2" else 0.0) if nz_margin is None else nz_margin
        self.warmup = warmup
        self.dense_first_last = dense_first_last
        self.sample_index = sample_index
        self.initial_threshold = initial_threshold
        self.threshold = initial_threshold
        self.P: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(seed)
        self.dense_iteration = True
        # Number of ReSprop layers in the model (for the official sample-index quirk).
        self.n_layers = spec.n_layers if n_layers is None else n_layers

    @property
    def s_percent(self) -> float:
        return round(100.0 * (1.0 - self.reuse_sparsity), 9)

    def target_nz_percent(self) -> float:
        return warmup_target_nz(self.info.epoch, self.s_percent, self.nz_margin, self.warmup)

    def begin_iteration(self, info: IterationInfo) -> None:
        super().begin_iteration(info)
        if info.batch == 0:
            self.P = None  # official: the stored gradients are cleared at every epoch start
        last = info.batch == info.batches_per_epoch - 1
        self.dense_iteration = self.P is None or (self.dense_first_last and (info.batch == 0 or last))

    def forward(self, x: torch.Tensor, w: torch.Tensor, training: bool) -> ForwardPlan:
        plan = ForwardPlan(x_fwd=x, w_fwd=w, w_bwi=w, x_bww=x)
        if training and not self.dense_iteration and self.P is not None:
            g = self.spec.geometry
            p1 = self.P[None].to(x.dtype)
            plan.state["P"] = p1
            plan.state["preGX"] = g.bwi(p1, w, torch.Size((1, *x.shape[1:])))
            plan.state["preGW"] = g.bww(x.sum(dim=0, keepdim=True), p1, w.shape)
        return plan

    def _pick_sample(self, n: int) -> int:
        if self.sample_index == "uniform" or n < 2:
            return int(torch.randint(0, n, (1,), generator=self.generator).item())
        hi = max(1, min(self.n_layers - 1, n - 1))
        return int(torch.randint(1, hi + 1, (1,), generator=self.generator).item())

    def backward(self, plan: ForwardPlan, dy: torch.Tensor) -> BackwardPlan:
        scalars: dict[str, float | int] = {"threshold_before": self.threshold}
        if "P" in plan.state:
            p1 = plan.state["P"]
            d = dy - p1
            d_abs = d.abs()
            if self.threshold_mode == "quantile":
                self.threshold = quantile_threshold(d_abs, 1.0 - self.target_nz_percent() / 100.0)
                scalars["threshold_before"] = self.threshold
            s = torch.where(d_abs > self.threshold, d, torch.zeros((), dtype=d.dtype))
            nz = 100.0 * int((s != 0).sum().item()) / s.numel()
            target = self.target_nz_percent()
            if self.threshold_mode == "adaptive_x2":
                self.threshold = adapt_threshold(self.threshold, nz, target)
            n = dy.shape[0]
            bp = BackwardPlan(
                dy_bwi=s, dy_bww=s, dy_bias=dy, dx_extra=plan.state["preGX"], dw_extra=plan.state["preGW"],
                extra_dense_fraction={"bwi": 1.0 / n, "bww": 1.0 / n},
                trace={"P": p1[0], "S": s}, scalars={**scalars, "nz_percent": nz, "target_nz_percent": target},
            )  # fmt: skip
        else:
            bp = BackwardPlan(dy_bwi=dy, dy_bww=dy, dy_bias=dy, scalars={**scalars, "dense_iteration": 1})
        bp.scalars["threshold_after"] = self.threshold
        j = self._pick_sample(dy.shape[0])
        self.P = dy[j].detach().clone()  # raw dY, not P + S (official)
        bp.scalars["stored_sample"] = j
        return bp

    def params(self) -> dict[str, object]:
        return {
            "policy": self.name, "reuse_sparsity": self.reuse_sparsity, "threshold_mode": self.threshold_mode,
            "initial_threshold": self.initial_threshold, "nz_margin": self.nz_margin, "warmup": self.warmup,
            "dense_first_last": self.dense_first_last, "sample_index": self.sample_index,
        }  # fmt: skip

    def primary_operand(self) -> tuple[str, str]:
        return ("bwi", "a")
