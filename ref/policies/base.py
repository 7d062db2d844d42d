"""The policy interface: per-pass hooks that decide which tensors each training pass uses.

A policy object belongs to one layer. The layer's autograd Function (``ref.layers``) calls

1. ``begin_iteration(info)`` once per training iteration (before the forward pass),
2. ``forward(x, w, training) -> ForwardPlan``: operands for FWD (``x_fwd``, ``w_fwd``) and the
   operands saved for backward (``w_bwi`` for BWI, ``x_bww`` for BWW), plus the BWI output mask,
3. ``backward(plan, dy) -> BackwardPlan``: the gradient fed to BWI (``dy_bwi``), to BWW
   (``dy_bww``) and to the bias (``dy_bias``), plus optional terms added to dX / dW.

The Function then computes, with geometry ops from ``ref.layer_ops``::

    Y  = fwd(x_fwd, w_fwd) + b
    dX = where(out_mask, bwi(dy_bwi, w_bwi) + dx_extra, 0)
    dW = bww(x_bww, dy_bww) + dw_extra
    db = bias_grad(dy_bias)

``skips[pass] = (skip_a, skip_b)`` states which operands the policy's dataflow skips zeros of
(operand order: FWD (X, W), BWI (dY, W), BWW (X, dY)); it feeds the issued-MAC model only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ref.layer_ops import Geometry


@dataclass
class LayerSpec:
    """What a policy knows about its layer."""

    name: str
    geometry: Geometry
    weight_shape: tuple[int, ...]
    input_is_relu: bool = False
    index: int = 0
    n_layers: int = 1

    @property
    def kind(self) -> str:
        return self.geometry.kind

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.n_layers - 1


@dataclass
class IterationInfo:
    """Position of the current training iteration: epoch, batch within epoch, global step."""

    epoch: int = 0
    batch: int = 0
    batches_per_epoch: int = 1
    step: int = 0


@dataclass
class ForwardPlan:
    """Operands chosen in the forward pass (see module docstring)."""

    x_fwd: torch.Tensor
    w_fwd: torch.Tensor
    w_bwi: torch.Tensor
    x_bww: torch.Tensor
    out_mask: torch.Tensor | None = None  # bool, shape of X; BWI outputs computed where True
    state: dict[str, torch.Tensor] = field(default_factory=dict)  # policy-private tensors
    trace: dict[str, torch.Tensor] = field(default_factory=dict)  # tensors worth tracing
    scalars: dict[str, float | int] = field(default_factory=dict)


@dataclass
class BackwardPlan:
    """Gradients chosen in the backward pass (see module docstring)."""

    dy_bwi: torch.Tensor
    dy_bww: torch.Tensor
    dy_bias: torch.Tensor
    dx_extra: torch.Tensor | None = None  # broadcast-added to dX
    dw_extra: torch.Tensor | None = None  # added to dW
    extra_dense_fraction: dict[str, float] = field(default_factory=dict)  # extra MACs / dense MACs
    trace: dict[str, torch.Tensor] = field(default_factory=dict)
    scalars: dict[str, float | int] = field(default_factory=dict)


NO_SKIP: dict[str, tuple[bool, bool]] = {"fwd": (False, False), "bwi": (False, False), "bww": (False, False)}


class Policy:
    """Base policy: dense arithmetic, no skipping. Subclasses override hooks."""

    name: str = "dense"
    exact: bool = True
    skips: ClassVar[dict[str, tuple[bool, bool]]] = NO_SKIP

    def __init__(self, spec: LayerSpec) -> None:
        self.spec = spec
        self.info = IterationInfo()

    def begin_iteration(self, info: IterationInfo) -> None:
        self.info = info

    def forward(self, x: torch.Tensor, w: torch.Tensor, training: bool) -> ForwardPlan:
        return ForwardPlan(x_fwd=x, w_fwd=w, w_bwi=w, x_bww=x)

    def backward(self, plan: ForwardPlan, dy: torch.Tensor) -> BackwardPlan:
        return BackwardPlan(dy_bwi=dy, dy_bww=dy, dy_bias=dy)

    def params(self) -> dict[str, object]:
        """Policy parameters, JSON-serializable (for metrics and trace manifests)."""
        return {"policy": self.name}

    def primary_operand(self) -> tuple[str, str] | None:
        """(pass, 'a'|'b'|'mask') whose sparsity this policy creates or exploits, for reports."""
        return None
