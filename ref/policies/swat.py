"""Raihan & Aamodt 2020 (SWAT): top-K weights in FWD and BWI, top-K activations in BWW.

Per layer with sparsity s (keep = 1 - s)::

    W_hat = W * TopK(W, keep)     (or channel-structured: (k, c) slices by L1 norm over R x S)
    X_hat = X * TopK(X, keep)     (always unstructured, global over the WHOLE batch tensor)
    FWD: Y  = fwd(X, W_hat) + b   (X dense in the forward pass)
    BWI: dX = bwi(dY, W_hat)
    BWW: dW = bww(X_hat, dY)      (dY dense; dW dense, so pruned weights can regrow)
    db = sum dY

TopK(v, keep): k = ceil(keep * numel) (computed as ceil(round(keep*numel, 9)) to avoid float
noise), thr = k-th largest |v|, keep ``|v| >= thr`` (official tie rule; ties may keep more than k).

Periodic threshold: the exact threshold is recomputed when ``batch % topk_period == 0`` (official,
batch index within the epoch), on every iteration while ``epoch < warmup_epochs``, and on every
iteration for linear layers (``linear_exact``, official); in between the stored threshold is
applied as ``|v| >= thr``. s = 0 bypasses selection entirely (W_hat = W, X_hat = X). In eval mode
the weights use exact Top-K and no state changes.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ref.policies.base import ForwardPlan, LayerSpec, Policy

STRUCTURES = ("unstructured", "channel")


def topk_count(keep: float, n: int) -> int:
    """k = ceil(keep * n), at least 1, robust to float noise in keep * n."""
    return max(1, min(n, math.ceil(round(keep * n, 9))))


def topk_threshold(v: torch.Tensor, keep: float) -> float:
    """The k-th largest |v| over the whole tensor, k = topk_count(keep, numel)."""
    a = v.detach().abs().flatten()
    k = topk_count(keep, a.numel())
    return float(torch.kthvalue(a, a.numel() - k + 1).values.item())


def topk_mask(v: torch.Tensor, keep: float) -> tuple[torch.Tensor, float]:
    """(bool mask ``|v| >= thr``, thr) for global magnitude Top-K."""
    thr = topk_threshold(v, keep)
    return v.abs() >= thr, thr


def channel_scores(w: torch.Tensor) -> torch.Tensor:
    """L1 norm of each (k, c) kernel slice of a conv weight [K, C, R, S] -> [K, C]."""
    return w.abs().sum(dim=(2, 3))


def channel_mask(w: torch.Tensor, keep: float) -> tuple[torch.Tensor, float]:
    """Structured mask: keep the ceil(keep*K*C) slices with the largest L1 norm (``>=``)."""
    scores = channel_scores(w)
    m2, thr = topk_mask(scores, keep)
    return m2[:, :, None, None].expand_as(w), thr


def erk_sparsities(
    shapes: list[tuple[int, ...]], sparsity: float, dense: set[int] | frozenset[int] = frozenset()
) -> list[float]:
    """Erdős–Rényi-Kernel allocation of per-layer sparsity.

    Layer l's density is eps * sum(shape_l) / prod(shape_l); eps is solved so that the total
    number of kept weights over ALL layers equals (1 - sparsity) * total; layers in ``dense`` and
    layers whose density would exceed 1 are dense (and eps is re-solved).
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    n = [math.prod(s) for s in shapes]
    score = [sum(s) / math.prod(s) for s in shapes]
    budget = (1.0 - sparsity) * sum(n)
    dense_set = set(dense)
    while True:
        sparse = [i for i in range(len(shapes)) if i not in dense_set]
        rest = budget - sum(n[i] for i in dense_set)
        if not sparse:
            break
        if rest <= 0:
            raise ValueError(f"sparsity {sparsity} is unreachable: the dense layers alone exceed the budget")
        eps = rest / sum(score[i] * n[i] for i in sparse)
        over = [i for i in sparse if eps * score[i] > 1.0]
        if not over:
            break
        dense_set.update(over)
    return [0.0 if i in dense_set else 1.0 - eps * score[i] for i in range(len(shapes))]


class SwatPolicy(Policy):
    name = "swat"
    exact = False
    skips: ClassVar[dict[str, tuple[bool, bool]]] = {"fwd": (False, True), "bwi": (False, True), "bww": (True, False)}

    def __init__(
        self,
        spec: LayerSpec,
        sparsity: float = 0.9,
        topk_period: int = 10,
        structure: str = "unstructured",
        warmup_epochs: int = 0,
        linear_exact: bool = True,
    ) -> None:
        super().__init__(spec)
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        if structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
        if structure == "channel" and spec.kind != "conv":
            raise ValueError(f"structure='channel' applies to conv layers only, layer {spec.name} is {spec.kind}")
        if not isinstance(topk_period, int) or topk_period < 1:
            raise ValueError(f"topk_period must be an int >= 1, got {topk_period!r}")
        self.sparsity = sparsity
        self.keep = 1.0 - sparsity
        self.topk_period = topk_period
        self.structure = structure
        self.warmup_epochs = warmup_epochs
        self.linear_exact = linear_exact
        self.thr_w: float | None = None
        self.thr_x: float | None = None

    def recompute_now(self) -> bool:
        return (
            self.thr_w is None
            or self.info.batch % self.topk_period == 0
            or self.info.epoch < self.warmup_epochs
            or (self.linear_exact and self.spec.kind == "linear")
        )

    def _weight_mask(self, w: torch.Tensor, exact: bool) -> tuple[torch.Tensor, float]:
        if exact:
            return channel_mask(w, self.keep) if self.structure == "channel" else topk_mask(w, self.keep)
        assert self.thr_w is not None
        if self.structure == "channel":
            return (channel_scores(w) >= self.thr_w)[:, :, None, None].expand_as(w), self.thr_w
        return w.abs() >= self.thr_w, self.thr_w

    def forward(self, x: torch.Tensor, w: torch.Tensor, training: bool) -> ForwardPlan:
        if self.sparsity == 0.0:
            return ForwardPlan(x_fwd=x, w_fwd=w, w_bwi=w, x_bww=x)
        zero = torch.zeros((), dtype=w.dtype)
        if not training:
            mw, _ = self._weight_mask(w, exact=True)
            w_hat = torch.where(mw, w, zero)
            return ForwardPlan(x_fwd=x, w_fwd=w_hat, w_bwi=w_hat, x_bww=x)
        recompute = self.recompute_now()
        mw, self.thr_w = self._weight_mask(w, exact=recompute)
        if recompute:
            mx, self.thr_x = topk_mask(x, self.keep)
        else:
            assert self.thr_x is not None
            mx = x.abs() >= self.thr_x
        w_hat = torch.where(mw, w, zero)
        x_hat = torch.where(mx, x, zero)
        return ForwardPlan(
            x_fwd=x, w_fwd=w_hat, w_bwi=w_hat, x_bww=x_hat,
            trace={"swat_mask_w": mw.contiguous(), "swat_mask_x": mx},
            scalars={"thr_w": self.thr_w, "thr_x": self.thr_x, "recomputed": int(recompute)},
        )  # fmt: skip

    def params(self) -> dict[str, object]:
        return {
            "policy": self.name, "sparsity": self.sparsity, "topk_period": self.topk_period,
            "structure": self.structure, "warmup_epochs": self.warmup_epochs, "linear_exact": self.linear_exact,
        }  # fmt: skip

    def primary_operand(self) -> tuple[str, str]:
        return ("fwd", "b")
