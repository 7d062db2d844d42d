"""Dai et al. 2020 / Ye et al. 2020: stochastic pruning of the layer's output gradient dY.

Rule, element-wise on g = dY with threshold tau > 0 and a uniform u per element::

    drop  iff |g| < u * tau                         -> 0
    else  g            if |g| >= tau
          tau*sign(g)  if |g| <  tau

so for |g| < tau the value is tau*sign(g) with probability |g|/tau, else 0 (unbiased for ideal
u). ``tau = c * mean|g|`` over the layer's whole dY tensor, ``c`` from ``ref.numerics.tau_constant``
(``tau_rule`` "mean_abs" = third-party convention, default; "normal" adds sqrt(pi/2)).
Comparisons are done in float64; the pruned tensor keeps dY's dtype. The pruned gradient feeds
both BWI and BWW; the bias gradient uses the pruned gradient by default (``bias_grad``).

Uniforms: from a shared ``GaloisLFSR`` (default; draw order = row-major over dY, one draw per
element, layers draw in backward order) or from a ``torch.Generator`` (float64 ``torch.rand``).
At p = 0, tau = 0 and no uniforms are drawn (the pruner is bypassed).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ref.lfsr import GaloisLFSR
from ref.numerics import tau_constant, tau_float
from ref.policies.base import BackwardPlan, LayerSpec, Policy

BIAS_GRAD_MODES = ("pruned", "original")


def stochastic_prune(g: torch.Tensor, tau: float, u: torch.Tensor) -> torch.Tensor:
    """Apply the pruning rule with threshold ``tau`` and uniforms ``u`` (same shape as g)."""
    if u.shape != g.shape:
        raise ValueError(f"u must have the shape of g {tuple(g.shape)}, got {tuple(u.shape)}")
    if tau <= 0.0:
        return g.clone()
    a = g.to(torch.float64).abs()
    u64 = u.to(torch.float64)
    out = torch.where(a < tau, torch.sign(g.to(torch.float64)) * tau, g.to(torch.float64))
    out = torch.where(a < u64 * tau, torch.zeros((), dtype=torch.float64), out)
    return out.to(g.dtype)


class StochasticPrunePolicy(Policy):
    name = "stochastic_prune"
    exact = False
    # Natural zeros of X (FWD, BWW) and natural + artificial zeros of dY (BWI, BWW).
    skips: ClassVar[dict[str, tuple[bool, bool]]] = {"fwd": (True, False), "bwi": (True, False), "bww": (True, True)}

    def __init__(
        self,
        spec: LayerSpec,
        sparsity: float = 0.9,
        tau_rule: str = "mean_abs",
        lfsr: GaloisLFSR | None = None,
        generator: torch.Generator | None = None,
        bias_grad: str = "pruned",
    ) -> None:
        super().__init__(spec)
        self.c = tau_constant(sparsity, tau_rule)  # validates sparsity and tau_rule
        if bias_grad not in BIAS_GRAD_MODES:
            raise ValueError(f"bias_grad must be one of {BIAS_GRAD_MODES}, got {bias_grad!r}")
        if (lfsr is None) == (generator is None):
            raise ValueError("exactly one of lfsr and generator must be given")
        self.sparsity = sparsity
        self.tau_rule = tau_rule
        self.lfsr = lfsr
        self.generator = generator
        self.bias_grad = bias_grad

    def draw_uniforms(self, shape: torch.Size) -> torch.Tensor:
        if self.lfsr is not None:
            return self.lfsr.uniforms(shape)
        return torch.rand(shape, generator=self.generator, dtype=torch.float64)

    def backward(self, plan, dy: torch.Tensor) -> BackwardPlan:
        dy = dy.contiguous()
        tau = tau_float(dy, self.c)
        scalars: dict[str, float | int] = {"tau": tau}
        if self.lfsr is not None:
            scalars["lfsr_state_before"] = self.lfsr.state
        if tau > 0.0:
            pruned = stochastic_prune(dy, tau, self.draw_uniforms(dy.shape))
        else:
            pruned = dy
        if self.lfsr is not None:
            scalars["lfsr_state_after"] = self.lfsr.state
        bias_src = pruned if self.bias_grad == "pruned" else dy
        return BackwardPlan(
            dy_bwi=pruned, dy_bww=pruned, dy_bias=bias_src, trace={"dy_pruned": pruned}, scalars=scalars
        )

    def params(self) -> dict[str, object]:
        p: dict[str, object] = {
            "policy": self.name, "sparsity": self.sparsity, "tau_rule": self.tau_rule,
            "c": self.c, "bias_grad": self.bias_grad, "rng": "lfsr" if self.lfsr else "torch",
        }  # fmt: skip
        if self.lfsr is not None:
            p.update(lfsr_width=self.lfsr.width, lfsr_taps=self.lfsr.taps)
        return p

    def primary_operand(self) -> tuple[str, str]:
        return ("bwi", "a")
