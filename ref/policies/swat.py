"""Raihan & Aamodt 2020 (SWAT): top-K weights in FWD and BWI, top-K activations in BWW.

Per layer with sparsity s (keep = 1 - s)::

    W_hat = W * TopK(W, keep)     (or channel-structured: (k, c) slices by L1 norm over R x S)
    X_hat = X * TopK(X, keep)     (always unstructured, global over the WHOLE batch tensor)
    FWD: Y  = fwd(X, W_hat) + b   (X dense in the forward pass)
    BWI: dX = bwi(dY, W_hat)
    BWW: dW = bww(X_hat, dY)      (dY dense; dW dense, so pruned weights can regrow)
    db = sum dY

TopK(v, keep): k = ceil(keep * numel), thr = k-th largest |v|, keep ``|v| >= thr`` (official tie
rule; ties may keep more than k). ``count_rule`` (see :func:`topk_count`) says how k is computed:
``"official"`` (default) is the official ``topk/drop.py`` arithmetic, ``int(math.ceil(keep * n))``
on the float ``keep = 1 - s`` (so s = 0.7, n = 10 keeps 4, since 1 - 0.7 = 0.30000000000000004);
``"rounded"`` is ``ceil(round(keep * n, 9))`` (keeps 3 there), the exact-arithmetic count.

Periodic threshold: the exact threshold is recomputed when ``batch % topk_period == 0`` (official,
batch index within the epoch), on every iteration while ``epoch < warmup_epochs``, and on every
iteration for linear layers (``linear_exact``, official); in between the stored threshold is
applied as ``|v| >= thr``. This covers X always and W when unstructured. The channel-structured W
mask is recomputed on every iteration (``channel_recompute="always"``, official: the structured
code calls ``drop_structured`` on the weights each iteration); ``channel_recompute="periodic"``
reuses the stored channel-score threshold between recomputes like the unstructured path (what an
accelerator with one threshold unit would do), at the risk of keeping no slice at all once the
weights shrink below it. s = 0 bypasses selection entirely (W_hat = W, X_hat = X). In eval mode
the weights use exact Top-K and no state changes.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from ref.policies.base import ForwardPlan, LayerSpec, Policy
from ref.topk_codes import COUNT_RULES, keep_count

STRUCTURES = ("unstructured", "channel")
#: When the channel-structured weight mask is recomputed (``SwatPolicy``).
CHANNEL_RECOMPUTE = ("always", "periodic")


def topk_count(keep: float, n: int, count_rule: str = "official") -> int:
    """k = ceil(keep * n), clamped to 1..n.

    ``"official"``: ``math.ceil(keep * n)`` on the float product, as the official SWAT code
    (``topk/drop.py``: ``int(math.ceil(select_percentage * n))`` with ``select_percentage = 1 - s``).
    When ``keep * n`` is a whole number in exact arithmetic but the float product lands just above
    it, this keeps one more (s = 0.7, n = 10: keep = 0.30000000000000004, k = 4).

    ``"rounded"``: ``ceil(round(keep * n, 9))``, the golden model's rule before it followed the
    official code: float noise in ``keep * n`` cannot change k, so k is the exact-arithmetic
    ``ceil((1 - s) * n)`` for a decimal s (k = 3 above) and the kept fraction is never above
    ``keep`` by an accident of rounding. Kept as an option for runs and vectors made with it.
    """
    return keep_count(keep, n, count_rule)  # one formula for the policy and the unit's host side


def topk_threshold(v: torch.Tensor, keep: float, count_rule: str = "official") -> float:
    """The k-th largest |v| over the whole tensor, k = topk_count(keep, numel, count_rule)."""
    a = v.detach().abs().flatten()
    k = topk_count(keep, a.numel(), count_rule)
    return float(torch.kthvalue(a, a.numel() - k + 1).values.item())


def topk_mask(v: torch.Tensor, keep: float, count_rule: str = "official") -> tuple[torch.Tensor, float]:
    """(bool mask ``|v| >= thr``, thr) for global magnitude Top-K."""
    thr = topk_threshold(v, keep, count_rule)
    return v.abs() >= thr, thr


def channel_scores(w: torch.Tensor) -> torch.Tensor:
    """L1 norm of each (k, c) kernel slice of a conv weight [K, C, R, S] -> [K, C]."""
    return w.abs().sum(dim=(2, 3))


def channel_mask(w: torch.Tensor, keep: float, count_rule: str = "official") -> tuple[torch.Tensor, float]:
    """Structured mask: keep the ceil(keep*K*C) slices with the largest L1 norm (``>=``).

    As the official ``drop_structured``, k is computed on the product K*C (``topk_count(keep, K*C)``).
    """
    scores = channel_scores(w)
    m2, thr = topk_mask(scores, keep, count_rule)
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
        count_rule: str = "official",
        channel_recompute: str = "always",
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
        if count_rule not in COUNT_RULES:
            raise ValueError(f"count_rule must be one of {COUNT_RULES}, got {count_rule!r}")
        if channel_recompute not in CHANNEL_RECOMPUTE:
            raise ValueError(f"channel_recompute must be one of {CHANNEL_RECOMPUTE}, got {channel_recompute!r}")
        self.sparsity = sparsity
        self.keep = 1.0 - sparsity
        self.topk_period = topk_period
        self.structure = structure
        self.warmup_epochs = warmup_epochs
        self.linear_exact = linear_exact
        self.count_rule = count_rule
        self.channel_recompute = channel_recompute
        self.thr_w: float | None = None
        self.thr_x: float | None = None

    def recompute_now(self) -> bool:
        """Whether the periodic thresholds (X's; W's unless :meth:`weight_recompute_now`) are recomputed."""
        return (
            self.thr_w is None
            or self.info.batch % self.topk_period == 0
            or self.info.epoch < self.warmup_epochs
            or (self.linear_exact and self.spec.kind == "linear")
        )

    def weight_recompute_now(self) -> bool:
        """Whether W's mask is recomputed: always for the official channel-structured mask, else periodic."""
        return (self.structure == "channel" and self.channel_recompute == "always") or self.recompute_now()

    def _weight_mask(self, w: torch.Tensor, exact: bool) -> tuple[torch.Tensor, float]:
        if exact:
            if self.structure == "channel":
                return channel_mask(w, self.keep, self.count_rule)
            return topk_mask(w, self.keep, self.count_rule)
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
        recompute, recompute_w = self.recompute_now(), self.weight_recompute_now()
        mw, self.thr_w = self._weight_mask(w, exact=recompute_w)
        if recompute:
            mx, self.thr_x = topk_mask(x, self.keep, self.count_rule)
        else:
            assert self.thr_x is not None
            mx = x.abs() >= self.thr_x
        w_hat = torch.where(mw, w, zero)
        x_hat = torch.where(mx, x, zero)
        return ForwardPlan(
            x_fwd=x, w_fwd=w_hat, w_bwi=w_hat, x_bww=x_hat,
            trace={"swat_mask_w": mw.contiguous(), "swat_mask_x": mx},
            scalars={"thr_w": self.thr_w, "thr_x": self.thr_x, "recomputed": int(recompute),
                     "recomputed_w": int(recompute_w)},
        )  # fmt: skip

    def params(self) -> dict[str, object]:
        return {
            "policy": self.name, "sparsity": self.sparsity, "topk_period": self.topk_period,
            "structure": self.structure, "warmup_epochs": self.warmup_epochs, "linear_exact": self.linear_exact,
            "count_rule": self.count_rule, "channel_recompute": self.channel_recompute,
        }  # fmt: skip

    def primary_operand(self) -> tuple[str, str]:
        return ("fwd", "b")
