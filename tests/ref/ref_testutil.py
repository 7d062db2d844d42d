"""Helpers shared by the golden-model tests (imported by module name; tests/ref is on sys.path)."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from ref.layers import PolicyConv2d, PolicyLayer, PolicyLinear
from ref.policies.base import IterationInfo, Policy

# stride, padding, kernel, bias
CONV_GRID = list(itertools.product((1, 2), (0, 1), (1, 3), (True, False)))


def make_conv(
    stride: int, padding: int, kernel: int, bias: bool, cin: int = 3, cout: int = 4, input_is_relu: bool = True
) -> PolicyConv2d:
    layer = PolicyConv2d(cin, cout, kernel, stride, padding, bias=bias, name="c", input_is_relu=input_is_relu)
    return layer.double()


def make_linear(fin: int = 12, fout: int = 5, bias: bool = True, input_is_relu: bool = True) -> PolicyLinear:
    return PolicyLinear(fin, fout, bias=bias, name="fc", input_is_relu=input_is_relu).double()


def run_layer(
    layer: PolicyLayer,
    policy: Policy,
    x: torch.Tensor,
    g: torch.Tensor | None = None,
    info: IterationInfo | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """One training step of a single layer: returns (y, dx, dw, db, g) with upstream gradient g."""
    layer.set_policy(policy)
    layer.train()
    policy.begin_iteration(info or IterationInfo())
    x = x.detach().clone().requires_grad_(True)
    y = layer(x)
    if g is None:
        g = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(seed))
    params = [x, layer.weight] + ([layer.bias] if layer.bias is not None else [])
    grads = torch.autograd.grad(y, params, g)
    db = grads[2] if layer.bias is not None else None
    return y.detach(), grads[0], grads[1], db, g


def reference(
    layer: PolicyLayer, x: torch.Tensor, g: torch.Tensor, w: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """torch.autograd of the stock op with the layer's parameters (or weight ``w``)."""
    x = x.detach().clone().requires_grad_(True)
    wt = (layer.weight if w is None else w).detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True) if layer.bias is not None else None
    if isinstance(layer, PolicyConv2d):
        y = F.conv2d(x, wt, b, layer.geometry.stride, layer.geometry.padding)
    else:
        y = F.linear(x, wt, b)
    params = [x, wt] + ([b] if b is not None else [])
    grads = torch.autograd.grad(y, params, g)
    return y.detach(), grads[0], grads[1], (grads[2] if b is not None else None)


def relu_input(shape: tuple[int, ...], seed: int, zero_fraction: float = 0.5) -> torch.Tensor:
    """Float64 non-negative tensor with about ``zero_fraction`` exact zeros (like a ReLU output)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen, dtype=torch.float64) + 0.05
    keep = torch.rand(shape, generator=gen, dtype=torch.float64) >= zero_fraction
    return torch.where(keep, x, torch.zeros((), dtype=torch.float64))


def close(a: torch.Tensor | None, b: torch.Tensor | None) -> None:
    """Float64 agreement up to summation-order rounding."""
    assert (a is None) == (b is None)
    if a is not None:
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def network_grads(
    algo: str, variant: str, steps: int = 1, sparsity: float | None = None, options: dict | None = None, seed: int = 0
) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """Train-step gradients of the policy CNN and of the stock CNN with the same weights (float64).

    Runs ``steps`` iterations on random digit-shaped batches; both models take the same SGD step,
    so later iterations compare policy state (thresholds, stored samples) too. Returns
    (policy_grads, reference_grads), one list of parameter gradients per step.
    """
    from ref.models import DigitsCNN, PlainDigitsCNN
    from ref.policies.registry import build_policies

    torch.manual_seed(seed)
    pol = DigitsCNN(variant).double()
    pol.set_policies(build_policies(algo, pol.layer_specs(), sparsity, seed, options))
    plain = PlainDigitsCNN(variant).double()
    plain.load_state_dict(pol.state_dict())
    gen = torch.Generator().manual_seed(seed + 1)
    out_p, out_r = [], []
    opt_p = torch.optim.SGD(pol.parameters(), lr=0.1)
    opt_r = torch.optim.SGD(plain.parameters(), lr=0.1)
    for it in range(steps):
        x = torch.rand(8, 1, 8, 8, generator=gen, dtype=torch.float64)
        y = torch.randint(0, 10, (8,), generator=gen)
        info = IterationInfo(0, it, steps, it)
        for lay in pol.policy_layers():
            lay.policy.begin_iteration(info)
        grads = []
        for model, opt, out in ((pol, opt_p, out_p), (plain, opt_r, out_r)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            grads.append([p.grad.clone() for p in model.parameters()])
            out.append(grads[-1])
            opt.step()
    return out_p, out_r


# -- SWAT's official Top-K, re-implemented from the facts of AamirRaihan/SWAT @bbe271a ----------------
# (topk/drop.py, custom_layers/custom_conv.py, dynamic_sparsity.py), plain Python on nested lists and
# sorting only, independent of ref.policies.swat and ref.topk_codes.


def official_select_percentage(sparsity: float) -> float:
    """The CIFAR code's kept fraction: main.py passes density 1 - s, layerSparsity.init stores the
    layer sparsity 1 - density, customconv2d.sparsify_weight/activation use 1 - that."""
    density = 1 - sparsity
    layer_sparsity = 1 - density
    return 1 - layer_sparsity


def official_k(select_percentage: float, n: int) -> int:
    """drop.py: ``int(math.ceil(select_percentage * n))``, n the element (or K*C slice) count
    (Python 3's math.ceil already returns an int)."""
    return math.ceil(select_percentage * n)


def official_keep_flags(scores: list[float], k: int) -> list[bool]:
    """drop.py's rule: thr = the k-th largest |score| (topk(k)[0][-1]); keep ``|score| >= thr``."""
    thr = sorted((abs(s) for s in scores), reverse=True)[k - 1]
    return [abs(s) >= thr for s in scores]


def official_unstructured_keep(values: list[float], sparsity: float) -> list[bool]:
    """drop_nhwc / matrix_drop on a flattened tensor."""
    return official_keep_flags(values, official_k(official_select_percentage(sparsity), len(values)))


def official_channel_keep(w: list, sparsity: float) -> list[list[bool]]:
    """drop_structured on a nested [K][C][R][S] list: score = L1 over R x S, k over K*C slices."""
    kk, cc = len(w), len(w[0])
    scores = [sum(abs(v) for row in w[a][b] for v in row) for a in range(kk) for b in range(cc)]
    flat = official_keep_flags(scores, official_k(official_select_percentage(sparsity), kk * cc))
    return [flat[a * cc:(a + 1) * cc] for a in range(kk)]
