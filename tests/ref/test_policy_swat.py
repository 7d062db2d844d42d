import math
import random
from fractions import Fraction

import pytest
import torch
from ref_testutil import (
    close,
    make_conv,
    make_linear,
    network_grads,
    official_channel_keep,
    official_k,
    official_select_percentage,
    official_unstructured_keep,
    reference,
    relu_input,
    run_layer,
)

from ref.models import DigitsCNN
from ref.policies import DensePolicy, IterationInfo, SwatPolicy, build_policies, erk_sparsities, topk_mask
from ref.policies.swat import channel_mask, topk_count


def kth_largest_by_sort(v: torch.Tensor, k: int) -> float:
    return float(v.abs().flatten().sort(descending=True).values[k - 1])


@pytest.mark.parametrize("keep", [0.1, 0.25, 0.5, 1.0])
def test_topk_count_with_distinct_magnitudes(keep: float) -> None:
    v = torch.randperm(1000, generator=torch.Generator().manual_seed(1)).double() + 1.0
    v = v * torch.where(torch.arange(1000) % 2 == 0, 1.0, -1.0)
    mask, thr = topk_mask(v, keep)
    k = math.ceil(keep * 1000)
    assert int(mask.sum()) == k and thr == kth_largest_by_sort(v, k)


def test_topk_ties_keep_at_least_k_and_order() -> None:
    v = torch.tensor([3.0, -3.0, 3.0, 1.0, 2.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    mask, thr = topk_mask(v, 0.25)  # k = 2, thr = 3, four entries tie at |v| = 3
    assert thr == 3.0 and int(mask.sum()) == 4
    assert float(v[mask].abs().min()) >= float(v[~mask].abs().max())


def swat_hats(x: torch.Tensor, w: torch.Tensor, keep: float) -> tuple[torch.Tensor, torch.Tensor]:
    """W_hat, X_hat computed independently (sort-based k-th largest, '>=')."""
    kw, kx = math.ceil(keep * w.numel()), math.ceil(keep * x.numel())
    w_hat = torch.where(w.abs() >= kth_largest_by_sort(w, kw), w, torch.zeros(()))
    x_hat = torch.where(x.abs() >= kth_largest_by_sort(x, kx), x, torch.zeros(()))
    return w_hat, x_hat


@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 1), (2, 0)])
def test_forward_and_backward_formulae(stride: int, padding: int) -> None:
    torch.manual_seed(2)
    layer = make_conv(stride, padding, 3, True, cin=4, cout=6)
    x = relu_input((3, 4, 7, 7), seed=3, zero_fraction=0.2)
    y, dx, dw, db, g = run_layer(layer, SwatPolicy(layer.spec(), 0.8), x)
    w = layer.weight.detach()
    w_hat, x_hat = swat_hats(x, w, 1 - 0.8)
    geom = layer.geometry
    close(y, geom.fwd(x, w_hat) + layer.bias.detach().view(1, -1, 1, 1))  # dense X in FWD
    assert not torch.allclose(y, geom.fwd(x_hat, w_hat) + layer.bias.detach().view(1, -1, 1, 1))
    close(dx, geom.bwi(g, w_hat, x.shape))
    close(dw, geom.bww(x_hat, g, w.shape))
    close(db, g.sum((0, 2, 3)))
    assert bool((dw[w_hat == 0] != 0).any())  # pruned weights still get gradient (regrowth)


def test_linear_formulae() -> None:
    torch.manual_seed(4)
    layer = make_linear(12, 5)
    x = relu_input((6, 12), seed=5, zero_fraction=0.1)
    _y, dx, dw, _db, g = run_layer(layer, SwatPolicy(layer.spec(), 0.7), x)
    w_hat, x_hat = swat_hats(x, layer.weight.detach(), 1 - 0.7)  # keep as the official 1 - s
    close(dx, g @ w_hat)
    close(dw, g.t() @ x_hat)
    # MAC model: FWD/BWI issued = nnz(W_hat) * N; BWW issued = nnz(X_hat) * O.
    assert layer.last_work["fwd"].issued_macs == int((w_hat != 0).sum()) * 6
    assert layer.last_work["bwi"].issued_macs == int((w_hat != 0).sum()) * 6
    assert layer.last_work["bww"].issued_macs == int((x_hat != 0).sum()) * 5


def test_s0_equals_dense_over_several_iterations() -> None:
    got, ref = network_grads("swat", "bn_relu", steps=3, sparsity=0.0, options={"topk_period": 2})
    for gs, rs in zip(got, ref, strict=True):
        for a, b in zip(gs, rs, strict=True):
            close(a, b)


def test_activation_topk_is_global_over_the_batch() -> None:
    torch.manual_seed(6)
    layer = make_conv(1, 1, 3, False)
    x = relu_input((4, 3, 5, 5), seed=7, zero_fraction=0.0)
    pol = SwatPolicy(layer.spec(), 0.75, topk_period=1)
    layer.capture = True
    run_layer(layer, pol, x)
    m1 = layer.last_capture["swat_mask_x"]
    perm = torch.tensor([2, 0, 3, 1])
    run_layer(layer, pol, x[perm])
    assert torch.equal(layer.last_capture["swat_mask_x"], m1[perm])
    # Scaling up sample 0 steals the budget from the others: sample 1's mask changes.
    x2 = x.clone()
    x2[0] *= 100.0
    run_layer(layer, pol, x2)
    layer.capture = False
    assert not torch.equal(layer.last_capture["swat_mask_x"][1], m1[1])


def test_threshold_reuse_between_recomputes() -> None:
    torch.manual_seed(8)
    layer = make_conv(1, 1, 3, False)
    pol = SwatPolicy(layer.spec(), 0.6, topk_period=3)
    layer.capture = True
    for batch in range(7):
        x = relu_input((2, 3, 5, 5), seed=100 + batch, zero_fraction=0.0)
        with torch.no_grad():
            layer.weight.add_(0.05 * torch.randn_like(layer.weight))
        run_layer(layer, pol, x, info=IterationInfo(batch=batch, batches_per_epoch=7))
        cap, sc = layer.last_capture, layer.last_scalars
        w = layer.weight.detach()
        if batch % 3 == 0:
            exact_w, _ = topk_mask(w, 0.4)
            exact_x, _ = topk_mask(x, 0.4)
            assert sc["recomputed"] == 1 and torch.equal(cap["swat_mask_w"], exact_w)
            assert torch.equal(cap["swat_mask_x"], exact_x)
        else:
            assert sc["recomputed"] == 0
            assert torch.equal(cap["swat_mask_w"], w.abs() >= sc["thr_w"])
            assert torch.equal(cap["swat_mask_x"], x.abs() >= sc["thr_x"])
    layer.capture = False


def test_channel_structured_mask() -> None:
    gen = torch.Generator().manual_seed(9)
    w = torch.randn(6, 5, 3, 3, generator=gen, dtype=torch.float64)
    mask, _ = channel_mask(w, 0.3)
    assert bool((mask == mask[:, :, :1, :1]).all())  # constant over R x S
    kept = mask[:, :, 0, 0]
    k = math.ceil(0.3 * 30)
    assert int(kept.sum()) == k
    scores = w.abs().sum((2, 3))
    assert float(scores[kept].min()) >= float(scores[~kept].max())


def test_first_layer_exempt_and_last_sparsified_by_default() -> None:
    model = DigitsCNN("relu")
    pols = build_policies("swat", model.layer_specs(), 0.9)
    assert isinstance(pols[0], DensePolicy)
    assert all(isinstance(p, SwatPolicy) for p in pols[1:])
    erk = build_policies("swat", model.layer_specs(), 0.9, options={"allocation": "erk"})
    assert isinstance(erk[0], SwatPolicy)


def test_erk_allocation_budget_and_ordering() -> None:
    shapes = [(16, 1, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3), (10, 512)]
    for s in (0.5, 0.8, 0.9):
        sl = erk_sparsities(shapes, s)
        n = [math.prod(sh) for sh in shapes]
        kept = sum((1 - a) * b for a, b in zip(sl, n, strict=True))
        assert kept == pytest.approx((1 - s) * sum(n), abs=len(shapes))
        assert all(0.0 <= a < 1.0 for a in sl)
        score = [sum(sh) / math.prod(sh) for sh in shapes]
        for i in range(4):
            for j in range(4):
                if score[i] > score[j]:
                    assert sl[i] <= sl[j]
    # A tiny 4x2 layer has score 0.75; eps ~ 2.8 here would give it density > 1: forced dense,
    # and the budget is re-solved over the others.
    tiny = [*shapes, (4, 2)]
    sl = erk_sparsities(tiny, 0.9)
    assert sl[-1] == 0.0
    n = [math.prod(sh) for sh in tiny]
    assert sum((1 - a) * b for a, b in zip(sl, n, strict=True)) == pytest.approx(0.1 * sum(n), abs=len(tiny))


def test_bad_arguments() -> None:
    spec = make_linear().spec()
    with pytest.raises(ValueError, match="sparsity"):
        SwatPolicy(spec, 1.0)
    with pytest.raises(ValueError, match="structure"):
        SwatPolicy(spec, 0.5, structure="channel")
    with pytest.raises(ValueError, match="topk_period"):
        SwatPolicy(spec, 0.5, topk_period=0)


def test_eval_uses_exact_topk_weights_without_state_change() -> None:
    torch.manual_seed(10)
    layer = make_conv(1, 1, 3, True)
    pol = SwatPolicy(layer.spec(), 0.5)
    layer.set_policy(pol)
    layer.eval()
    x = relu_input((2, 3, 5, 5), seed=11)
    with torch.no_grad():
        y = layer(x)
    w_hat, _ = swat_hats(x, layer.weight.detach(), 1 - 0.5)
    close(y, reference(layer, x, torch.zeros_like(y), w=w_hat)[0])
    assert pol.thr_w is None


# -- the official Top-K rule (AamirRaihan/SWAT topk/drop.py), re-implemented in ref_testutil ----------

SPARSITIES = [0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]


def random_values(rng: random.Random, n: int, kind: str) -> list[float]:
    """Float64-exact values: ``float`` (normal), ``dyadic`` (k/1024, exact L1 sums), ``ties`` (small
    integers: many equal magnitudes), ``equal`` (one magnitude), ``sparse`` (mostly zeros)."""
    if kind == "float":
        return [rng.gauss(0.0, 1.0) for _ in range(n)]
    if kind == "dyadic":
        return [rng.randint(-(1 << 20), 1 << 20) / 1024 for _ in range(n)]
    if kind == "ties":
        return [float(rng.randint(-3, 3)) for _ in range(n)]
    if kind == "equal":
        return [rng.choice([-2.5, 2.5]) for _ in range(n)]
    assert kind == "sparse"
    return [float(rng.randint(-9, 9)) if rng.random() < 0.2 else 0.0 for _ in range(n)]


def random_sparsity(rng: random.Random) -> float:
    return rng.choice([*SPARSITIES, round(rng.random() * 0.99, 2), rng.random() * 0.99])


@pytest.mark.parametrize("seed", [180, 181])
def test_unstructured_mask_is_the_official_rule(seed: int) -> None:
    """topk_mask (default rule) on >= 200 random tensors equals drop.py's rule written independently."""
    print(f"seed={seed}")
    rng = random.Random(seed)
    extra = 0
    for i in range(150):
        n = rng.choice([rng.randint(1, 400), 10 * rng.randint(1, 40), 100 * rng.randint(1, 5)])
        kind = ("float", "dyadic", "ties", "equal", "sparse")[i % 5]
        values, s = random_values(rng, n, kind), random_sparsity(rng)
        want = official_unstructured_keep(values, s)
        mask, _ = topk_mask(torch.tensor(values, dtype=torch.float64), 1.0 - s)
        assert mask.tolist() == want, (i, n, kind, s)
        ours_rounded = topk_count(1.0 - s, n, "rounded")
        extra += official_k(official_select_percentage(s), n) - ours_rounded
    assert extra > 0  # some draws hit keep*n just above a whole number (e.g. s = 0.7, n = 10 m)


@pytest.mark.parametrize("seed", [190, 191])
def test_channel_mask_is_the_official_rule(seed: int) -> None:
    """channel_mask (default rule) on >= 200 random conv weights equals drop_structured's rule."""
    print(f"seed={seed}")
    rng = random.Random(seed)
    for i in range(150):
        shape = (rng.randint(1, 10), rng.choice([1, 2, 5, rng.randint(1, 8)]), rng.choice([1, 3]), rng.choice([1, 3]))
        kind = ("float", "dyadic", "ties", "equal", "sparse")[i % 5]
        n = math.prod(shape)
        if kind == "float":
            kind = "dyadic"  # exact L1 sums: no summation-order ulps between torch and Python
        flat, s = random_values(rng, n, kind), random_sparsity(rng)
        w = torch.tensor(flat, dtype=torch.float64).reshape(shape)
        want = official_channel_keep(w.tolist(), s)
        mask, _ = channel_mask(w, 1.0 - s)
        assert bool((mask == mask[:, :, :1, :1]).all())
        assert mask[:, :, 0, 0].tolist() == want, (i, shape, kind, s)


def test_policy_masks_are_the_official_rule_every_iteration() -> None:
    """SwatPolicy's W and X masks at recompute iterations, and its channel W mask at every
    iteration (official: drop_structured each forward), equal the official rule."""
    seed = 200
    print(f"seed={seed}")
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    checked = 0
    for case in range(60):
        structure = ("unstructured", "channel")[case % 2]
        cin, cout = rng.randint(1, 6), rng.choice([2, 5, 10])
        layer = make_conv(1, 1, 3, False, cin=cin, cout=cout)
        s = random_sparsity(rng)
        pol = SwatPolicy(layer.spec(), s, topk_period=3, structure=structure)
        w = torch.randint(-4, 5, (cout, cin, 3, 3), generator=gen).double()  # many ties
        for batch in range(5):
            x = torch.randint(0, 4, (2, cin, 4, 4), generator=gen).double()
            w = w * 0.5 if batch == 2 else w + torch.randint(-1, 2, w.shape, generator=gen).double()
            pol.begin_iteration(IterationInfo(epoch=0, batch=batch, batches_per_epoch=5))
            plan = pol.forward(x, w, training=True)
            mw, mx = plan.trace["swat_mask_w"], plan.trace["swat_mask_x"]
            if structure == "channel":
                assert plan.scalars["recomputed_w"] == 1
                assert mw[:, :, 0, 0].tolist() == official_channel_keep(w.tolist(), s)
                checked += 1
            if batch % 3 == 0:
                assert plan.scalars["recomputed"] == 1
                assert mx.flatten().tolist() == official_unstructured_keep(x.flatten().tolist(), s)
                if structure == "unstructured":
                    assert mw.flatten().tolist() == official_unstructured_keep(w.flatten().tolist(), s)
                checked += 1
    assert checked >= 200


def test_sparsity_07_of_10_keeps_4_as_the_official_code() -> None:
    keep = 1.0 - 0.7
    assert keep == 0.30000000000000004 and keep * 10 > 3
    assert official_k(official_select_percentage(0.7), 10) == 4
    assert topk_count(keep, 10) == 4 and topk_count(keep, 10, "official") == 4
    assert topk_count(keep, 10, "rounded") == 3
    # Unstructured: a 2 x 5 linear weight, distinct magnitudes.
    layer = make_linear(5, 2)
    w = torch.arange(1.0, 11.0, dtype=torch.float64).reshape(2, 5)
    x = torch.arange(1.0, 11.0, dtype=torch.float64).reshape(2, 5)
    for rule, k in (("official", 4), ("rounded", 3)):
        plan = SwatPolicy(layer.spec(), 0.7, count_rule=rule).forward(x, w, training=True)
        assert int(plan.trace["swat_mask_w"].sum()) == k and int(plan.trace["swat_mask_x"].sum()) == k
        mask, thr = topk_mask(w, keep, rule)
        assert int(mask.sum()) == k and thr == 11 - k
    # Channel: K * C = 5 * 2 = 10 slices with distinct L1 norms.
    wc = torch.arange(1.0, 11.0, dtype=torch.float64).reshape(5, 2, 1, 1).expand(5, 2, 3, 3).contiguous()
    assert int(channel_mask(wc, keep)[0][:, :, 0, 0].sum()) == 4
    assert int(channel_mask(wc, keep, "rounded")[0][:, :, 0, 0].sum()) == 3
    conv = make_conv(1, 1, 3, False, cin=2, cout=5)
    plan = SwatPolicy(conv.spec(), 0.7, structure="channel").forward(torch.ones(1, 2, 4, 4), wc, training=True)
    assert int(plan.trace["swat_mask_w"][:, :, 0, 0].sum()) == 4


def test_rounded_count_rule_is_the_old_rule() -> None:
    """count_rule='rounded' keeps ceil(round(keep*n, 9)): float noise in keep*n cannot add one, so
    for a decimal s it is the exact-arithmetic ceil((1 - s) * n)."""
    for s in SPARSITIES:
        for n in (1, 7, 10, 20, 100, 144, 1000, 4608):
            exact = max(1, math.ceil((1 - Fraction(str(s))) * n))
            assert topk_count(1.0 - s, n, "rounded") == exact
    layer = make_conv(1, 1, 3, False)
    pol = SwatPolicy(layer.spec(), 0.7, count_rule="rounded")
    assert pol.params()["count_rule"] == "rounded"
    assert SwatPolicy(layer.spec(), 0.7).params()["count_rule"] == "official"
    with pytest.raises(ValueError, match="count_rule"):
        SwatPolicy(layer.spec(), 0.7, count_rule="exact")
    with pytest.raises(ValueError, match="count_rule"):
        topk_count(0.3, 10, "exact")
    pols = build_policies("swat", DigitsCNN("relu").layer_specs(), 0.7, options={"count_rule": "rounded"})
    assert all(p.count_rule == "rounded" for p in pols if isinstance(p, SwatPolicy))


def test_channel_mask_never_empty_after_weights_shrink() -> None:
    """Default: the channel mask is recomputed every iteration, so shrinking the weights (weight decay)
    cannot leave it empty; channel_recompute='periodic' reuses the stored score threshold and can."""
    gen = torch.Generator().manual_seed(12)
    layer = make_conv(1, 1, 3, False, cin=3, cout=4)
    w = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64)
    x = torch.rand(2, 3, 5, 5, generator=gen, dtype=torch.float64)
    k = math.ceil((1 - 0.75) * 12)
    default = SwatPolicy(layer.spec(), 0.75, topk_period=10, structure="channel")
    periodic = SwatPolicy(layer.spec(), 0.75, topk_period=10, structure="channel", channel_recompute="periodic")
    for batch in range(4):
        wb = w * 0.5**batch
        got = {}
        for name, pol in (("default", default), ("periodic", periodic)):
            pol.begin_iteration(IterationInfo(epoch=0, batch=batch, batches_per_epoch=10))
            plan = pol.forward(x, wb, training=True)
            got[name] = (plan.trace["swat_mask_w"], plan.scalars)
        mask, sc = got["default"]
        assert int(mask[:, :, 0, 0].sum()) == k and sc["recomputed_w"] == 1
        assert torch.equal(mask, channel_mask(wb, 0.25)[0])
        pmask, psc = got["periodic"]
        assert psc["recomputed_w"] == psc["recomputed"] == int(batch == 0)
        if batch > 0:
            assert not bool(pmask.any())  # every score fell below the stored threshold
    assert default.params()["channel_recompute"] == "always"
    with pytest.raises(ValueError, match="channel_recompute"):
        SwatPolicy(layer.spec(), 0.5, structure="channel", channel_recompute="never")
