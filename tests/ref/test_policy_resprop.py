import math
from statistics import NormalDist

import pytest
import torch
from ref_testutil import close, make_conv, network_grads, reference, relu_input, run_layer

from ref.layer_ops import ConvGeometry
from ref.policies import IterationInfo, ReSpropPolicy
from ref.policies.resprop import adapt_threshold, quantile_threshold, warmup_target_nz

MID = IterationInfo(epoch=20, batch=3, batches_per_epoch=10, step=23)  # not first/last, past warm-up


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_decomposition_identity(stride: int, padding: int) -> None:
    gen = torch.Generator().manual_seed(stride * 7 + padding)
    geom = ConvGeometry(stride, padding)
    x = torch.randn(3, 2, 7, 7, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 2, 3, 3, generator=gen, dtype=torch.float64)
    ys = geom.fwd(x, w).shape
    p = torch.randn(ys[1:], generator=gen, dtype=torch.float64)
    s = torch.randn(ys, generator=gen, dtype=torch.float64) * (torch.rand(ys, generator=gen) < 0.2)
    full = s + p[None]
    lhs_x = geom.bwi(s, w, x.shape) + geom.bwi(p[None], w, torch.Size((1, *x.shape[1:])))
    torch.testing.assert_close(lhs_x, geom.bwi(full, w, x.shape), rtol=1e-12, atol=1e-12)
    lhs_w = geom.bww(x, s, w.shape) + geom.bww(x.sum(0, keepdim=True), p[None], w.shape)
    torch.testing.assert_close(lhs_w, geom.bww(x, full, w.shape), rtol=1e-12, atol=1e-12)


def two_steps(pol: ReSpropPolicy, layer, x, g1, g2, info2=MID):
    """Iteration 1 stores P (dense); iteration 2 uses it. Returns the outputs of iteration 2."""
    run_layer(layer, pol, x, g1, IterationInfo(epoch=info2.epoch, batch=1, batches_per_epoch=10))
    layer.capture = True
    out = run_layer(layer, pol, x, g2, info2)
    layer.capture = False
    return out


def test_sparse_iteration_follows_the_formulae() -> None:
    torch.manual_seed(0)
    layer = make_conv(2, 1, 3, True)
    x = relu_input((4, 3, 7, 7), seed=1)
    gen = torch.Generator().manual_seed(2)
    ys = (4, 4, 4, 4)
    g1, g2 = torch.randn(ys, generator=gen, dtype=torch.float64), torch.randn(ys, generator=gen, dtype=torch.float64)
    pol = ReSpropPolicy(layer.spec(), reuse_sparsity=0.9, threshold_mode="quantile", warmup=False, seed=3)
    _y, dx, dw, db, _ = two_steps(pol, layer, x, g1, g2)
    cap, sc = layer.last_capture, layer.last_scalars
    p = cap["P"]
    assert p.shape == (4, 4, 4)
    j_prev = None
    for j in range(4):
        if torch.equal(p, g1[j]):
            j_prev = j
    assert j_prev is not None  # P is the raw dY of one sample of the previous iteration
    d = g2 - p[None]
    thr = sc["threshold_before"]
    s = torch.where(d.abs() > thr, d, torch.zeros(()))
    assert torch.equal(cap["S"], s)
    assert int((s != 0).sum()) / s.numel() <= 1 - 0.9 + 1 / s.numel()
    w = layer.weight.detach()
    geom = layer.geometry
    close(dx, geom.bwi(s, w, x.shape) + geom.bwi(p[None], w, torch.Size((1, 3, 7, 7))))
    close(dx, geom.bwi(s + p[None], w, x.shape))
    close(dw, geom.bww(x, s + p[None], w.shape))
    close(db, g2.sum((0, 2, 3)))  # bias from the original dY
    assert not torch.equal(db, (s + p[None]).sum((0, 2, 3)))
    # Next stored P is the raw current dY of one sample, not P + S.
    assert any(torch.equal(pol.P, g2[j]) for j in range(4))
    assert not pol.P.requires_grad
    # MAC model (property 10): sparse-part MACs = nnz(S) * C*R*S for pad-0 convs, plus dense/N.


def test_mac_model_pad0() -> None:
    torch.manual_seed(5)
    layer = make_conv(1, 0, 3, False)
    x = relu_input((4, 3, 6, 6), seed=6, zero_fraction=0.0)
    gen = torch.Generator().manual_seed(7)
    ys = (4, 4, 4, 4)
    g1, g2 = torch.randn(ys, generator=gen, dtype=torch.float64), torch.randn(ys, generator=gen, dtype=torch.float64)
    pol = ReSpropPolicy(layer.spec(), 0.8, threshold_mode="quantile", warmup=False)
    two_steps(pol, layer, x, g1, g2)
    nnz_s = int((layer.last_capture["S"] != 0).sum())
    dense = 4 * 4 * 4 * 4 * 3 * 9
    for p in ("bwi", "bww"):
        wk = layer.last_work[p]
        assert wk.dense_macs == dense
        assert wk.issued_macs == nnz_s * 3 * 9 + dense // 4


def test_rs0_quantile_equals_dense_autograd() -> None:
    torch.manual_seed(8)
    layer = make_conv(2, 1, 3, True)
    x = relu_input((4, 3, 7, 7), seed=9)
    gen = torch.Generator().manual_seed(10)
    g1, g2 = (
        torch.randn(4, 4, 4, 4, generator=gen, dtype=torch.float64),
        torch.randn(4, 4, 4, 4, generator=gen, dtype=torch.float64),
    )
    pol = ReSpropPolicy(layer.spec(), 0.0, threshold_mode="quantile", warmup=False)
    out = two_steps(pol, layer, x, g1, g2)
    assert "S" in layer.last_capture  # a sparse (non-dense) iteration really ran
    for a, b in zip(out[:4], reference(layer, x, g2), strict=True):
        close(a, b)


@pytest.mark.parametrize("batch", [0, 9])
def test_first_and_last_iteration_of_epoch_are_dense(batch: int) -> None:
    torch.manual_seed(11)
    layer = make_conv(1, 1, 3, True)
    x = relu_input((4, 3, 5, 5), seed=12)
    gen = torch.Generator().manual_seed(13)
    g1, g2 = (
        torch.randn(4, 4, 5, 5, generator=gen, dtype=torch.float64),
        torch.randn(4, 4, 5, 5, generator=gen, dtype=torch.float64),
    )
    pol = ReSpropPolicy(layer.spec(), 0.9, warmup=False)
    out = two_steps(pol, layer, x, g1, g2, IterationInfo(epoch=20, batch=batch, batches_per_epoch=10))
    assert "S" not in layer.last_capture
    for a, b in zip(out[:4], reference(layer, x, g2), strict=True):
        assert torch.equal(a, b) if a is out[1] or a is out[2] else True
        close(a, b)


def test_first_iteration_without_p_is_dense() -> None:
    torch.manual_seed(14)
    layer = make_conv(1, 1, 3, True)
    x = relu_input((4, 3, 5, 5), seed=15)
    out = run_layer(layer, ReSpropPolicy(layer.spec(), 0.9, warmup=False), x, info=MID)
    for a, b in zip(out[:4], reference(layer, x, out[4]), strict=True):
        close(a, b)


def test_identical_gradients_reuse_everything_and_stay_exact() -> None:
    torch.manual_seed(16)
    layer = make_conv(1, 1, 3, False)
    x = relu_input((4, 3, 5, 5), seed=17)
    row = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    g = row.expand(4, -1, -1, -1).contiguous()
    pol = ReSpropPolicy(layer.spec(), 0.9, warmup=False)
    out = two_steps(pol, layer, x, g, g)
    assert int((layer.last_capture["S"] != 0).sum()) == 0
    for a, b in zip(out[:4], reference(layer, x, g), strict=True):
        close(a, b)


def test_adaptive_threshold_halves_doubles_or_keeps() -> None:
    assert adapt_threshold(0.5, 10.0, 15.0) == 0.25
    assert adapt_threshold(0.5, 20.0, 15.0) == 1.0
    assert adapt_threshold(0.5, 15.0, 15.0) == 0.5
    torch.manual_seed(18)
    layer = make_conv(1, 1, 3, False)
    x = relu_input((4, 3, 5, 5), seed=19)
    gen = torch.Generator().manual_seed(20)
    g1, g2 = (
        torch.randn(4, 4, 5, 5, generator=gen, dtype=torch.float64),
        torch.randn(4, 4, 5, 5, generator=gen, dtype=torch.float64),
    )
    pol = ReSpropPolicy(layer.spec(), 0.9, warmup=False, initial_threshold=1e-7)
    two_steps(pol, layer, x, g1, g2)
    sc = layer.last_scalars
    assert sc["target_nz_percent"] == 15.0  # official: s + 5 with s = 100 (1 - RS)
    assert sc["nz_percent"] > 15.0 and sc["threshold_after"] == 2 * sc["threshold_before"] == 2e-7


@pytest.mark.parametrize("seed", [21])
def test_adaptive_controller_converges_into_derived_band(seed: int) -> None:
    # Stationary stream: dY = P + D, D ~ N(0,1) i.i.d. The x2 controller ends up oscillating between
    # thresholds t and 2t that bracket t* (nz(t*) = target), so nz stays in [nz(2 t*), nz(t*/2)]
    # with nz(t) = 2(1 - Phi(t)), up to sampling noise (5 sigma of a binomial over numel).
    print("seed", seed)
    gen = torch.Generator().manual_seed(seed)
    layer = make_conv(1, 1, 3, False)
    x = relu_input((8, 3, 6, 6), seed=22)
    pol = ReSpropPolicy(layer.spec(), 0.9, warmup=False, sample_index="uniform", initial_threshold=1e-7)
    shape = (8, 4, 6, 6)
    base = torch.randn(shape[1:], generator=gen, dtype=torch.float64)
    nz = []
    for it in range(60):
        # Every sample equals base except the noise, so P (any sample) = base + its own noise.
        g = base[None] + torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(2)
        layer.capture = True
        run_layer(layer, pol, x, g, IterationInfo(epoch=20, batch=1 + it % 8, batches_per_epoch=100))
        if "nz_percent" in layer.last_scalars:
            nz.append(layer.last_scalars["nz_percent"])
    layer.capture = False
    nd = NormalDist()
    t_star = nd.inv_cdf(1 - 0.15 / 2)  # D = noise_i - noise_j ~ N(0, 1)

    def nz_at(t: float) -> float:
        return 200 * (1 - nd.cdf(t))

    n = math.prod(shape)
    lo, hi = nz_at(2 * t_star), nz_at(t_star / 2)
    slack = 100 * 5 * math.sqrt(0.25 / n)
    tail = nz[-20:]
    assert min(tail) >= lo - slack and max(tail) <= hi + slack


def test_warmup_schedule() -> None:
    assert [warmup_target_nz(e, 10.0, 5.0) for e in range(11)] == [100, 100, 80, 70, 60, 50, 40, 30, 20, 15, 15]
    # Boundary of the rule "s + margin if s > 100 - 10e else 100 - 10e" (s = 75, e = 3: 75 > 70).
    assert warmup_target_nz(2, 75.0, 5.0) == 80 and warmup_target_nz(3, 75.0, 5.0) == 80
    assert warmup_target_nz(3, 70.0, 5.0) == 70  # not strictly greater: the floor
    assert warmup_target_nz(0, 10.0, 5.0, warmup=False) == 15


def test_quantile_threshold_extremes() -> None:
    d = torch.tensor([0.5, -0.1, 0.3, 0.0, 2.0], dtype=torch.float64).abs()
    assert quantile_threshold(d, 0.0) == 0.0
    thr = quantile_threshold(d, 1.0)
    assert int((d > thr).sum()) == 0
    thr = quantile_threshold(d, 0.6)  # zero at least 3 of 5
    assert int((d > thr).sum()) <= 2


def test_bad_arguments() -> None:
    spec = make_conv(1, 1, 3, False).spec()
    with pytest.raises(ValueError, match="sparsity"):
        ReSpropPolicy(spec, 1.0)
    with pytest.raises(ValueError, match="threshold_mode"):
        ReSpropPolicy(spec, 0.5, threshold_mode="exact")
    with pytest.raises(ValueError, match="sample_index"):
        ReSpropPolicy(spec, 0.5, sample_index="first")


def test_network_rs0_quantile_equals_autograd() -> None:
    got, ref = network_grads("resprop", "bn_relu", steps=4, sparsity=0.0,
                             options={"threshold_mode": "quantile", "warmup": False})  # fmt: skip
    for gs, rs in zip(got, ref, strict=True):
        for a, b in zip(gs, rs, strict=True):
            close(a, b)
