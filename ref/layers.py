"""Conv2d and linear layers whose three passes are chosen by a policy object.

``PolicyConv2d`` / ``PolicyLinear`` hold a dense weight (and optional bias) and run a custom
autograd Function that asks the layer's policy for the operands of FWD, BWI and BWW (see
``ref.policies.base``). While training, each pass's work is counted (``last_work``) and, when
``capture`` is set, the tensors and scalars needed to replay the layer are kept (``last_capture``,
``last_scalars``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ref.accounting import PassWork, pass_work
from ref.layer_ops import ConvGeometry, Geometry, LinearGeometry
from ref.policies.base import ForwardPlan, LayerSpec, Policy
from ref.policies.dense import DensePolicy


class _PolicyOp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, layer):
        geom = layer.geometry
        plan: ForwardPlan = layer.policy.forward(x, w, layer.training)
        y = geom.fwd(plan.x_fwd, plan.w_fwd)
        if b is not None:
            y = y + geom.bias_view(b)
        ctx.layer, ctx.plan = layer, plan
        ctx.x_shape, ctx.w_shape, ctx.has_bias = x.shape, w.shape, b is not None
        if layer.training:
            layer._begin_record()
            if layer.record_work:
                layer.last_work["fwd"] = _work(layer, "fwd", plan.x_fwd, plan.w_fwd, y.shape, None, {})
            if layer.capture:
                layer.last_capture.update({"x": x.detach().clone(), "w": w.detach().clone()})
                if b is not None:
                    layer.last_capture["b"] = b.detach().clone()
                layer.last_capture.update({k: v.detach().clone() for k, v in plan.trace.items()})
                layer.last_scalars.update(plan.scalars)
        return y

    @staticmethod
    def backward(ctx, dy):
        layer, plan = ctx.layer, ctx.plan
        geom = layer.geometry
        bp = layer.policy.backward(plan, dy)
        extra = bp.extra_dense_fraction
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = geom.bwi(bp.dy_bwi, plan.w_bwi, ctx.x_shape)
            if bp.dx_extra is not None:
                dx = dx + bp.dx_extra
            if plan.out_mask is not None:
                # Masked outputs are not computed: exactly +0, whatever the dense value was.
                dx = torch.where(plan.out_mask, dx, torch.zeros((), dtype=dx.dtype))
            if layer.record_work:
                layer.last_work["bwi"] = _work(layer, "bwi", bp.dy_bwi, plan.w_bwi, ctx.x_shape, plan.out_mask, extra)
        if ctx.needs_input_grad[1]:
            dw = geom.bww(plan.x_bww, bp.dy_bww, ctx.w_shape)
            if bp.dw_extra is not None:
                dw = dw + bp.dw_extra
            if layer.record_work:
                layer.last_work["bww"] = _work(layer, "bww", plan.x_bww, bp.dy_bww, ctx.w_shape, None, extra)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = geom.bias_grad(bp.dy_bias)
        if layer.capture:
            layer.last_capture["dy"] = dy.detach().clone()
            layer.last_capture.update({k: v.detach().clone() for k, v in bp.trace.items()})
            layer.last_scalars.update(bp.scalars)
        ctx.plan = None  # free the saved operands
        return dx, dw, db, None


def _work(
    layer: PolicyLayer,
    pass_name: str,
    a: torch.Tensor,
    b: torch.Tensor,
    out_shape: torch.Size,
    mask: torch.Tensor | None,
    extra: dict[str, float],
) -> PassWork:
    skip_a, skip_b = layer.policy.skips[pass_name]
    w = pass_work(layer.geometry, pass_name, a, b, out_shape, mask, skip_a, skip_b)
    frac = extra.get(pass_name, 0.0)
    if frac:
        add = round(w.dense_macs * frac)
        w.effectual_macs += add
        w.issued_macs += add
    return w


class PolicyLayer(nn.Module):
    """Common state of policy-driven layers (do not instantiate directly)."""

    geometry: Geometry

    def __init__(self, name: str, weight_shape: tuple[int, ...], bias: bool, input_is_relu: bool) -> None:
        super().__init__()
        self.name = name
        self.input_is_relu = input_is_relu
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(weight_shape[0])) if bias else None
        self.reset_parameters()
        self.policy: Policy = DensePolicy(self.spec())
        self.record_work = True
        self.capture = False
        self.last_work: dict[str, PassWork] = {}
        self.last_capture: dict[str, torch.Tensor] = {}
        self.last_scalars: dict[str, float | int] = {}

    def reset_parameters(self) -> None:
        """Same initialization as torch.nn.Conv2d / nn.Linear."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = math.prod(self.weight.shape[1:])
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def spec(self, index: int = 0, n_layers: int = 1) -> LayerSpec:
        return LayerSpec(self.name, self.geometry, tuple(self.weight.shape), self.input_is_relu, index, n_layers)

    def set_policy(self, policy: Policy) -> None:
        self.policy = policy

    def _begin_record(self) -> None:
        self.last_work = {}
        if self.capture:
            self.last_capture, self.last_scalars = {}, {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PolicyOp.apply(x, self.weight, self.bias, self)


class PolicyConv2d(PolicyLayer):
    """Conv2d (no groups/dilation), square kernel, weight [K, C, R, R]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        name: str = "conv",
        input_is_relu: bool = False,
    ) -> None:
        self.geometry = ConvGeometry(stride, padding)
        super().__init__(name, (out_channels, in_channels, kernel_size, kernel_size), bias, input_is_relu)


class PolicyLinear(PolicyLayer):
    """Linear layer, weight [out_features, in_features]."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, name: str = "fc", input_is_relu: bool = False
    ) -> None:
        self.geometry = LinearGeometry()
        super().__init__(name, (out_features, in_features), bias, input_is_relu)
