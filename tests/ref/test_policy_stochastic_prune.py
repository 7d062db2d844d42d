"""Stochastic pruning (Dai/Ye). Statistical tests use fixed, printed seeds and 5-sigma bounds
computed from the analytic variance Var[g_hat] = tau*|g| - g^2 (|g| < tau), so a correct
implementation fails a given check with probability < 1e-6 per element."""

import math
from fractions import Fraction
from statistics import NormalDist

import pytest
import torch
from ref_testutil import CONV_GRID, close, make_conv, make_linear, network_grads, reference, relu_input, run_layer

from ref.lfsr import GaloisLFSR
from ref.numerics import tau_constant
from ref.policies import StochasticPrunePolicy, stochastic_prune

Z = 5.0  # sigma multiple of every statistical bound


def grid_g(tau: float, n: int = 64) -> torch.Tensor:
    """Values spanning (-2 tau, 2 tau) with both signs, none exactly at 0 or +-tau."""
    k = torch.arange(1, n + 1, dtype=torch.float64)
    return (k - 0.5) / n * 2 * tau * torch.where(k % 2 == 0, 1.0, -1.0)


def test_p0_is_identity_and_matches_dense_autograd() -> None:
    torch.manual_seed(0)
    layer = make_conv(2, 1, 3, True)
    x = relu_input((2, 3, 7, 7), seed=1)
    lf = GaloisLFSR(16, seed=5)
    y, dx, dw, db, g = run_layer(layer, StochasticPrunePolicy(layer.spec(), sparsity=0.0, lfsr=lf), x)
    ry, rdx, rdw, rdb = reference(layer, x, g)
    assert torch.equal(dx, rdx) and torch.equal(dw, rdw)
    close(y, ry), close(db, rdb)
    assert lf.state == 5  # bypassed: no draws


def test_support_signs_and_natural_zeros() -> None:
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(4000, generator=gen, dtype=torch.float64)
    g[::7] = 0.0
    tau = 0.8
    u = torch.rand(g.shape, generator=gen, dtype=torch.float64)
    out = stochastic_prune(g, tau, u)
    small = g.abs() < tau
    assert torch.equal(out[~small], g[~small])
    vals = out[small]
    assert bool(((vals == 0) | (vals.abs() == tau)).all())
    assert bool(((torch.sign(out) == 0) | (torch.sign(out) == torch.sign(g))).all())
    assert bool((out[g == 0] == 0).all())
    assert 0 < int((vals == 0).sum()) < vals.numel()  # both outcomes occur


def test_rule_matches_element_definition() -> None:
    g = torch.tensor([0.1, -0.1, 0.3, -0.5, 0.6, 0.05], dtype=torch.float64)
    u = torch.tensor([0.2, 0.1, 0.5, 0.9, 0.0625, 0.125], dtype=torch.float64)
    # tau = 0.5: drop iff |g| < u*tau; keep g when |g| >= tau, else tau*sign(g)
    assert stochastic_prune(g, 0.5, u).tolist() == [0.5, -0.5, 0.5, -0.5, 0.6, 0.0]


@pytest.mark.parametrize("seed", [1234])
def test_unbiased_and_variance_with_torch_generator(seed: int) -> None:
    print("seed", seed)
    tau, m = 1.0, 20000
    g = grid_g(tau)
    gen = torch.Generator().manual_seed(seed)
    gm = g.expand(m, -1).contiguous()
    out = stochastic_prune(gm, tau, torch.rand(gm.shape, generator=gen, dtype=torch.float64))
    a = g.abs()
    var = torch.where(a < tau, tau * a - a * a, torch.zeros(()))
    mean = out.mean(0)
    assert bool(((mean - g).abs() <= Z * torch.sqrt(var / m) + 1e-15).all())
    # Variance: g_hat = tau*sign(g)*B with B ~ Bernoulli(q), q = |g|/tau; the sample variance s^2 has
    # Var[s^2] ~= (mu4 - sigma^4)/m with mu4 = tau^4 q(1-q)(1 - 3q + 3q^2).
    q = torch.clamp(a / tau, max=1.0)
    mu4 = tau**4 * q * (1 - q) * (1 - 3 * q + 3 * q * q)
    s2 = out.var(0, unbiased=True)
    tol = Z * torch.sqrt(torch.clamp(mu4 - var**2, min=0) / m) + 1e-12
    assert bool(((s2 - var).abs() <= tol).all())


def test_lfsr_full_period_bias_is_within_discrete_bound() -> None:
    # One full period of an 8-bit LFSR gives each u in {1..255}/256 exactly once, so the mean over it
    # is the exact expectation: keep prob = floor(x*256)/255 for x = |g|/tau < 1, i.e. a bias of at
    # most tau/(2^w - 1) (ALGORITHMS.md §6 bound 2^-w, adjusted for the LFSR never emitting 0).
    w, tau = 8, 1.0
    g = grid_g(tau, 50)
    u = GaloisLFSR(w, seed=99).uniforms((255, 1)).expand(255, g.numel())
    out = stochastic_prune(g.expand(255, -1).contiguous(), tau, u.contiguous())
    mean = out.mean(0)
    for gi, mi in zip(g.tolist(), mean.tolist(), strict=True):
        x = Fraction(abs(gi)) / Fraction(tau)
        exact = float(Fraction(math.floor(x * 256), 255) * (1 if gi > 0 else -1)) if x < 1 else gi
        assert mi == pytest.approx(exact, abs=1e-12)
        assert abs(mi - gi) <= tau / (2**w - 1) + 1e-12


@pytest.mark.parametrize("seed", [4321])
def test_lfsr16_statistically_unbiased(seed: int) -> None:
    print("seed", seed)
    tau, m, w = 1.0, 20000, 16
    g = grid_g(tau)
    lf = GaloisLFSR(w, seed=seed)
    out = stochastic_prune(g.expand(m, -1).contiguous(), tau, lf.uniforms((m, g.numel())))
    a = g.abs()
    var = torch.where(a < tau, tau * a - a * a, torch.zeros(()))
    assert bool(((out.mean(0) - g).abs() <= Z * torch.sqrt(var / m) + tau / (2**w - 1)).all())


@pytest.mark.parametrize("seed", [77])
def test_dx_and_dw_unbiased_by_linearity(seed: int) -> None:
    print("seed", seed)
    gen = torch.Generator().manual_seed(seed)
    tau, m = 1.0, 4000
    # Conv BWI: dX = conv2d_input(G_hat, W); independent elements -> Var[dX] = conv2d_input(Var[g], W^2).
    layer = make_conv(2, 1, 3, False, cin=2, cout=2)
    w = layer.weight.detach()
    g = torch.randn(1, 2, 3, 3, generator=gen, dtype=torch.float64)
    a = g.abs()
    var = torch.where(a < tau, tau * a - a * a, torch.zeros(()))
    x_shape = torch.Size((1, 2, 6, 6))
    gm = g.expand(m, -1, -1, -1).contiguous()
    pruned = stochastic_prune(gm, tau, torch.rand(gm.shape, generator=gen, dtype=torch.float64))
    dx_draws = layer.geometry.bwi(pruned, w, torch.Size((m, 2, 6, 6)))
    dx = layer.geometry.bwi(g, w, x_shape)[0]
    var_dx = layer.geometry.bwi(var, w * w, x_shape)[0]
    assert bool(((dx_draws.mean(0) - dx).abs() <= Z * torch.sqrt(var_dx / m) + 1e-12).all())
    # Linear BWW: dW = G_hat^T X per draw.
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    gl = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    al = gl.abs()
    varl = torch.where(al < tau, tau * al - al * al, torch.zeros(()))
    glm = gl.expand(m, -1, -1).contiguous()
    pl = stochastic_prune(glm, tau, torch.rand(glm.shape, generator=gen, dtype=torch.float64))
    dw_draws = torch.einsum("mno,nf->mof", pl, x)
    var_dw = varl.t() @ (x * x)
    assert bool(((dw_draws.mean(0) - gl.t() @ x).abs() <= Z * torch.sqrt(var_dw / m) + 1e-12).all())


@pytest.mark.parametrize("seed", [2024])
def test_threshold_fraction_and_expected_final_sparsity(seed: int) -> None:
    print("seed", seed)
    n, p = 1_000_000, 0.9
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(n, generator=gen, dtype=torch.float64)
    c = tau_constant(p, "normal")
    tau = c * float(g.abs().mean())
    frac = float((g.abs() < tau).double().mean())
    # Binomial noise plus the effect of estimating mean|g| (relative sd sqrt(pi/2 - 1)/sqrt(n)),
    # which moves P(|g|<tau) by 2 phi(c') c' * rel_err, c' = tau/sigma ~ Phi^-1((1+p)/2).
    cp = NormalDist().inv_cdf((1 + p) / 2)
    tol = Z * math.sqrt(p * (1 - p) / n) + Z * 2 * NormalDist().pdf(cp) * cp * math.sqrt(math.pi / 2 - 1) / math.sqrt(n)
    assert abs(frac - p) <= tol
    out = stochastic_prune(g, tau, torch.rand(g.shape, generator=gen, dtype=torch.float64))
    zero_frac = float((out == 0).double().mean())
    # Given g, zeros are independent Bernoulli(1 - |g|/tau) on |g| < tau.
    q = torch.where(g.abs() < tau, 1 - g.abs() / tau, torch.zeros(()))
    expected = float(q.mean())
    assert abs(zero_frac - expected) <= Z * math.sqrt(float((q * (1 - q)).sum())) / n
    # Closed form for N(0,1) at t = tau: P(|g|<t) - E[|g|/t; |g|<t] = (2Phi(t)-1) - 2(phi(0)-phi(t))/t.
    nd = NormalDist()
    closed = (2 * nd.cdf(tau) - 1) - 2 * (nd.pdf(0) - nd.pdf(tau)) / tau
    assert abs(expected - closed) <= Z * 0.5 / math.sqrt(n)


def test_scale_equivariance_with_fixed_u() -> None:
    gen = torch.Generator().manual_seed(9)
    g = torch.randn(500, generator=gen, dtype=torch.float64)
    u = torch.rand(500, generator=gen, dtype=torch.float64)
    c = tau_constant(0.9)
    tau = c * float(g.abs().mean())
    for s in (4.0, 0.25):  # powers of two: scaling is exact in binary floating point
        assert c * float((s * g).abs().mean()) == s * tau
        assert torch.equal(stochastic_prune(s * g, s * tau, u), s * stochastic_prune(g, tau, u))
    assert c * float((-g).abs().mean()) == tau


def test_policy_feeds_pruned_gradient_to_bwi_bww_and_bias() -> None:
    torch.manual_seed(3)
    layer = make_conv(1, 1, 3, True)
    x = relu_input((2, 3, 5, 5), seed=4)
    for bias_grad in ("pruned", "original"):
        lf = GaloisLFSR(16, seed=321)
        pol = StochasticPrunePolicy(layer.spec(), sparsity=0.9, lfsr=lf, bias_grad=bias_grad)
        layer.capture = True
        _, dx, dw, db, g = run_layer(layer, pol, x)
        layer.capture = False
        tau = tau_constant(0.9) * float(g.abs().mean())
        ref_lf = GaloisLFSR(16, seed=321)
        pruned = stochastic_prune(g, tau, ref_lf.uniforms(g.shape))
        assert torch.equal(layer.last_capture["dy_pruned"], pruned)
        assert layer.last_scalars["lfsr_state_before"] == 321 and lf.state == ref_lf.state
        close(dx, layer.geometry.bwi(pruned, layer.weight.detach(), x.shape))
        close(dw, layer.geometry.bww(x, pruned, layer.weight.shape))
        close(db, (pruned if bias_grad == "pruned" else g).sum((0, 2, 3)))
        assert 0 < int((pruned == 0).sum()) < pruned.numel()  # not vacuous


def test_determinism_same_seed_bit_identical() -> None:
    layer = make_linear()
    x = relu_input((6, 12), seed=12)
    runs = []
    for rng in ("lfsr", "torch"):
        for _ in range(2):
            kw = (
                {"lfsr": GaloisLFSR(16, seed=42)} if rng == "lfsr" else {"generator": torch.Generator().manual_seed(42)}
            )
            runs.append(run_layer(layer, StochasticPrunePolicy(layer.spec(), 0.9, **kw), x, seed=1))
    for a, b in ((runs[0], runs[1]), (runs[2], runs[3])):
        for u, v in zip(a[:4], b[:4], strict=True):
            assert torch.equal(u, v)


@pytest.mark.parametrize(("stride", "padding", "kernel", "bias"), CONV_GRID[::3])
def test_network_at_p0_equals_dense(stride: int, padding: int, kernel: int, bias: bool) -> None:
    torch.manual_seed(stride * 10 + padding)
    layer = make_conv(stride, padding, kernel, bias)
    x = relu_input((2, 3, 7, 7), seed=13)
    out = run_layer(layer, StochasticPrunePolicy(layer.spec(), 0.0, generator=torch.Generator()), x)
    for a, b in zip(out[:4], reference(layer, x, out[4]), strict=True):
        close(a, b)


def test_bad_arguments() -> None:
    spec = make_linear().spec()
    with pytest.raises(ValueError, match="sparsity"):
        StochasticPrunePolicy(spec, 1.0, lfsr=GaloisLFSR())
    with pytest.raises(ValueError, match="tau_rule"):
        StochasticPrunePolicy(spec, 0.5, tau_rule="std", lfsr=GaloisLFSR())
    with pytest.raises(ValueError, match="lfsr"):
        StochasticPrunePolicy(spec, 0.5)


def test_full_network_p0_equals_autograd() -> None:
    got, ref = network_grads("stochastic_prune", "bn_relu", steps=2, sparsity=0.0)
    for gs, rs in zip(got, ref, strict=True):
        for a, b in zip(gs, rs, strict=True):
            close(a, b)
