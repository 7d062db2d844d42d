"""The integer ReSprop model (``ref.resprop_codes``) against the float policy on integer-valued dY.

``ReSpropPolicy`` (adaptive_x2, no warm-up) runs a single conv layer whose upstream gradients are
integer codes; ``ReSpropCodes`` runs the same codes with the sample index the policy drew. S, the
threshold before and after every iteration, nz% against nnz, and the stored P must agree exactly.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from ref_testutil import make_conv, relu_input, run_layer

from ref.policies import IterationInfo, ReSpropPolicy
from ref.policies.resprop import warmup_target_nz
from ref.resprop_codes import (
    EXP_MIN,
    ReSpropCodes,
    adapt_exponent,
    effective_threshold,
    target_code,
    threshold_code,
    threshold_value,
)

N, K, H = 4, 4, 3  # dY [N, K, H, H]; one sample has E = 36 elements
E = K * H * H


def _dy(rng: random.Random, kind: str, bits: int, p: list[int], thr: int) -> list[int]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if kind == "zeros":
        return [0] * (N * E)
    if kind == "equal":
        return [p[e] for _ in range(N) for e in range(E)]
    if kind == "const":
        return [rng.randint(lo, hi)] * (N * E)
    if kind == "quarter":  # exactly N*E/4 elements with |D| = T + 1 where the code range allows it
        out = [p[i % E] for i in range(N * E)]
        for i in rng.sample(range(N * E), N * E // 4):
            up, down = out[i] + thr + 1, out[i] - thr - 1
            out[i] = up if up <= hi else down if down >= lo else out[i]
        return out
    out = []
    for i in range(N * E):
        r = rng.random()
        base = p[i % E]
        if r < 0.4:  # ties |D| == T and neighbours
            v = base + rng.choice((-1, 1)) * (thr + rng.choice((-1, 0, 1)))
        elif r < 0.5:
            v = rng.choice((lo, hi))
        else:
            v = rng.randint(lo, hi)
        out.append(max(lo, min(hi, v)))
    return out


@pytest.mark.parametrize("bits,seed,thr0", [(4, 1, 1.5), (8, 2, 1e-7), (8, 3, 5.0), (6, 4, 0.75)])
def test_codes_model_equals_policy(bits: int, seed: int, thr0: float) -> None:
    print(f"seed={seed}")
    rng = random.Random(seed)
    mant, exp = threshold_code(thr0, bits)
    thr0 = threshold_value(mant, exp)  # exactly representable start, so the float policy holds the same value
    torch.manual_seed(seed)
    layer = make_conv(1, 1, 3, False, cin=2, cout=K)
    layer.capture = True
    x = relu_input((N, 2, H, H), seed=seed)
    pol = ReSpropPolicy(layer.spec(), reuse_sparsity=0.9, initial_threshold=thr0, warmup=False, seed=seed, n_layers=N)
    model = ReSpropCodes(bits, 64, mant, exp)
    moves = set()
    for it in range(30):
        target = rng.choice((0, 100, 15, 50, 37.5, rng.randint(0, 100)))
        kind = rng.choice(("mixed",) * 5 + ("zeros", "equal", "const"))
        if it % 7 == 3:  # nz% == target: the threshold must stay
            kind, target = "equal", 0
        elif it % 7 == 5:
            kind, target = "quarter", 25
        pol.nz_margin = target - pol.s_percent  # target = s% + margin, exactly for these values
        thr_int = effective_threshold(model.mant, model.exp, bits)
        codes = _dy(rng, kind, bits, model.stored_p, thr_int)
        g = torch.tensor(codes, dtype=torch.float64).reshape(N, K, H, H)
        info = IterationInfo(epoch=0, batch=it, batches_per_epoch=1000, step=it)  # batch 0: dense (no P)
        run_layer(layer, pol, x, g, info)
        sc, cap = layer.last_scalars, layer.last_capture
        dense = it == 0
        assert ("dense_iteration" in sc) == dense
        assert sc["threshold_before"] == threshold_value(model.mant, model.exp)
        exp_before = model.exp
        res = model.run_pass(codes, n_samples=N, elems=E, sample=int(sc["stored_sample"]), dense=dense,
                             target_cp=target_code(target))
        if not dense:
            assert cap["S"].flatten().tolist() == [float(v) for v in res.s], f"iteration {it} ({kind})"
            assert sc["nz_percent"] == 100.0 * res.nnz / (N * E)
            moves.add(res.exp_after - exp_before)
        assert sc["threshold_after"] == threshold_value(model.mant, model.exp), f"iteration {it}"
        assert pol.P.flatten().tolist() == [float(v) for v in model.stored_p[:E]]
    assert moves == {-1, 0, 1}


def test_threshold_code_keeps_every_comparison() -> None:
    """Truncating a float threshold to `bits` significant bits changes no |D| > thr * 2**k result."""
    rng = random.Random(11)
    for bits in (2, 4, 8):
        for _ in range(200):
            thr = math.ldexp(rng.random() + 0.5, rng.randint(-12, bits + 2))
            mant, exp = threshold_code(thr, bits)
            assert 1 << (bits - 1) <= mant < 1 << bits and threshold_value(mant, exp) <= thr
            for k in range(-3, 4):
                t_int = effective_threshold(mant, exp + k, bits)
                for d in range(1 << bits):
                    assert (d > math.ldexp(thr, k)) == (d > t_int), (thr, k, d)


def test_effective_threshold_by_hand() -> None:
    assert effective_threshold(3, -1, 4) == 1  # 1.5 -> 1
    assert effective_threshold(3, 2, 4) == 12
    assert effective_threshold(3, 3, 4) == 15  # 24 clamps to 2**4 - 1
    assert effective_threshold(15, -4, 4) == 0
    assert effective_threshold(0, 127, 4) == 0
    assert threshold_code(0.0, 8) == (0, 0)
    assert threshold_code(1.5, 4) == (12, -3)


def test_controller_rule_and_saturation() -> None:
    # 15 % of 200 = 30 non-zeros: equal keeps, fewer halves, more doubles.
    assert adapt_exponent(0, 30, 200, 1500) == 0
    assert adapt_exponent(0, 29, 200, 1500) == -1
    assert adapt_exponent(0, 31, 200, 1500) == 1
    assert adapt_exponent(EXP_MIN, 0, 10, 100) == EXP_MIN
    assert adapt_exponent(127, 10, 10, 0) == 127


def test_warmup_targets_are_exact_codes() -> None:
    for s in (10.0, 15.0, 20.0, 12.5):
        for epoch in range(12):
            t = warmup_target_nz(epoch, s, 5.0)
            assert target_code(t) / 100 == t
    with pytest.raises(ValueError, match=r"multiple of 0\.01"):
        target_code(12.345)


@pytest.mark.parametrize("call,message", [
    (lambda: ReSpropCodes(1, 4), "bits must be an integer in 2..32"),
    (lambda: ReSpropCodes(8, 6), "depth must be a power of two"),
    (lambda: effective_threshold(16, 0, 4), "mant must be an integer in 0..15"),
    (lambda: effective_threshold(1, 200, 4), "exp must be an integer in -128..127"),
    (lambda: threshold_code(-1.0, 8), "threshold must be a finite number >= 0"),
    (lambda: threshold_code(1e-60, 8), "outside -128..127"),
    (lambda: ReSpropCodes(4, 4).run_pass([8], n_samples=1, elems=1, sample=0, dense=True, target_cp=0),
     "dy codes must lie in -8..7"),
])
def test_invalid_arguments(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()
