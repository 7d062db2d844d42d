"""Lowering of conv2d / linear FWD, BWI, BWW into programs: exact against torch on integer inputs,
within the stated quantization bound on quantized float inputs.

Expected values come from torch in float64 (exact for these small integers: every partial sum is
far below 2**53), never from the code under test.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from ref.contract import Drain, TileGemm, evaluate, gemm_formats, lower_pass, run_pass
from ref.numerics import quantize_symmetric

# (a_format, b_format, tiles): tiles include sizes that divide no dimension and degenerate 1-wide tiles.
VARIANTS = [
    ("dense", "dense", (4, 4, 4)),
    ("bitmap", "bitmap", (3, 5, 7)),
    ("bitmap", "dense", (16, 2, 5)),
    ("dense", "bitmap", (1, 3, 64)),
]
N, C, K, H, W = 2, 3, 4, 6, 5


def _ints(shape: tuple[int, ...], g: torch.Generator, zero_frac: float = 0.3) -> torch.Tensor:
    """Integers in [-8, 8] with about ``zero_frac`` extra zeros."""
    v = torch.randint(-8, 9, shape, generator=g)
    return torch.where(torch.rand(shape, generator=g) < zero_frac, torch.zeros((), dtype=torch.int64), v)


def _conv_case(seed: int, stride: int, padding: int, kernel: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = _ints((N, C, H, W), g)
    w = _ints((K, C, kernel, kernel), g)
    p = (H + 2 * padding - kernel) // stride + 1
    q = (W + 2 * padding - kernel) // stride + 1
    return {"x": x, "w": w, "dy": _ints((N, K, p, q), g)}


def _torch_conv(pass_: str, t: dict[str, torch.Tensor], stride: int, padding: int) -> torch.Tensor:
    x, w, dy = (t[k].double() for k in ("x", "w", "dy"))
    if pass_ == "fwd":
        return F.conv2d(x, w, None, stride, padding)
    if pass_ == "bwi":
        return torch.nn.grad.conv2d_input(x.shape, w, dy, stride, padding)
    return torch.nn.grad.conv2d_weight(x, w.shape, dy, stride, padding)


def _conv_operands(pass_: str, t: dict[str, torch.Tensor]) -> dict[str, object]:
    if pass_ == "fwd":
        return {"x": t["x"], "w": t["w"]}
    if pass_ == "bwi":
        return {"dy": t["dy"], "w": t["w"], "x_shape": tuple(t["x"].shape)}
    return {"x": t["x"], "dy": t["dy"], "w_shape": tuple(t["w"].shape)}


def _effectual_conv(
    pass_: str, t: dict[str, torch.Tensor], stride: int, padding: int, mask: torch.Tensor | None
) -> int:
    """Independent effectual-pair count: the same torch op on the nonzero indicators."""
    nz = {k: (v != 0).to(torch.int64) for k, v in t.items()}
    per_out = _torch_conv(pass_, nz, stride, padding)
    if mask is not None:
        per_out = per_out * mask
    return int(per_out.sum())


@pytest.mark.parametrize("pass_", ["fwd", "bwi", "bww"])
@pytest.mark.parametrize("stride,padding,kernel", list(itertools.product([1, 2], [0, 1], [1, 3])))
def test_conv_exact_on_integers(pass_: str, stride: int, padding: int, kernel: int) -> None:
    seed = 1000 * stride + 100 * padding + 10 * kernel + ("fwd", "bwi", "bww").index(pass_)
    print(f"seed={seed}")
    t = _conv_case(seed, stride, padding, kernel)
    expected = _torch_conv(pass_, t, stride, padding)
    assert torch.equal(expected, expected.round())  # integer-valued, so the cast below is exact
    for a_fmt, b_fmt, tiles in VARIANTS:
        r = run_pass("conv2d", pass_, **_conv_operands(pass_, t), stride=stride, padding=padding,
                     a_format=a_fmt, b_format=b_fmt, tiles=tiles)  # fmt: skip
        assert r.output.dtype == torch.int64
        assert torch.equal(r.output, expected.to(torch.int64)), (a_fmt, b_fmt, tiles)
        assert r.result.effectual_macs == _effectual_conv(pass_, t, stride, padding, None)


@pytest.mark.parametrize("stride,padding,kernel", [(1, 1, 3), (2, 1, 3), (2, 0, 1), (1, 0, 3)])
def test_conv_bwi_with_relu_output_mask(stride: int, padding: int, kernel: int) -> None:
    seed = 7000 + 100 * stride + 10 * padding + kernel
    print(f"seed={seed}")
    t = _conv_case(seed, stride, padding, kernel)
    mask = t["x"] > 0  # the forward ReLU mask of the layer input
    expected = torch.where(mask, _torch_conv("bwi", t, stride, padding), 0.0).to(torch.int64)
    for a_fmt, b_fmt, tiles in VARIANTS[:2]:
        r = run_pass("conv2d", "bwi", **_conv_operands("bwi", t), stride=stride, padding=padding,
                     a_format=a_fmt, b_format=b_fmt, tiles=tiles, out_mask=mask)  # fmt: skip
        assert torch.equal(r.output, expected)
        assert r.result.effectual_macs == _effectual_conv("bwi", t, stride, padding, mask)


def _linear_case(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"x": _ints((5, 7), g), "w": _ints((6, 7), g), "dy": _ints((5, 6), g)}


def _torch_linear(pass_: str, t: dict[str, torch.Tensor]) -> torch.Tensor:
    x, w, dy = (t[k].double() for k in ("x", "w", "dy"))
    return {"fwd": x @ w.t(), "bwi": dy @ w, "bww": dy.t() @ x}[pass_]


@pytest.mark.parametrize("pass_", ["fwd", "bwi", "bww"])
def test_linear_exact_on_integers(pass_: str) -> None:
    seed = 500 + ("fwd", "bwi", "bww").index(pass_)
    print(f"seed={seed}")
    t = _linear_case(seed)
    operands = {"fwd": ("x", "w"), "bwi": ("dy", "w"), "bww": ("x", "dy")}[pass_]
    expected = _torch_linear(pass_, t).to(torch.int64)
    for a_fmt, b_fmt, tiles in VARIANTS:
        r = run_pass("linear", pass_, **{k: t[k] for k in operands}, a_format=a_fmt, b_format=b_fmt, tiles=tiles)
        assert torch.equal(r.output, expected)
    if pass_ == "bwi":
        mask = t["x"] > 0
        r = run_pass("linear", "bwi", dy=t["dy"], w=t["w"], out_mask=mask, a_format="bitmap", tiles=(2, 3, 4))
        assert torch.equal(r.output, torch.where(mask, expected, 0))
        nz = {k: (v != 0).double() for k, v in t.items()}
        assert r.result.effectual_macs == int(((nz["dy"] @ nz["w"]) * mask).sum())


# Golden-model skips (operand order FWD (X, W), BWI (dY, W), BWW (X, dY)), as in ref/policies and docs/contract.md.
POLICY_SKIPS = {
    "dense": {"fwd": (False, False), "bwi": (False, False), "bww": (False, False)},
    "relu_mask": {"fwd": (True, False), "bwi": (True, False), "bww": (True, True)},
    "zero_skip": {"fwd": (True, False), "bwi": (True, False), "bww": (True, False)},
    "stochastic_prune": {"fwd": (True, False), "bwi": (True, False), "bww": (True, True)},
    "resprop": {"fwd": (False, False), "bwi": (True, False), "bww": (False, True)},
    "swat": {"fwd": (False, True), "bwi": (False, True), "bww": (True, False)},
}


def test_gemm_formats_maps_policy_order_to_gemm_order() -> None:
    assert gemm_formats("fwd", (True, False)) == ("bitmap", "dense")  # A = X
    assert gemm_formats("bwi", (False, True)) == ("dense", "bitmap")  # B = W
    assert gemm_formats("bww", (True, False)) == ("dense", "bitmap")  # X is B in BWW
    assert gemm_formats("bww", (False, True)) == ("bitmap", "dense")  # dY is A in BWW


@pytest.mark.parametrize("policy", sorted(POLICY_SKIPS))
def test_every_policy_lowers_exactly(policy: str) -> None:
    seed = 9000 + sorted(POLICY_SKIPS).index(policy)
    print(f"seed={seed} policy={policy}")
    t = _conv_case(seed, 2, 1, 3)
    for pass_ in ("fwd", "bwi", "bww"):
        a_fmt, b_fmt = gemm_formats(pass_, POLICY_SKIPS[policy][pass_])
        mask = t["x"] > 0 if (policy == "relu_mask" and pass_ == "bwi") else None
        expected = _torch_conv(pass_, t, 2, 1)
        if mask is not None:
            expected = torch.where(mask, expected, 0.0)
        r = run_pass("conv2d", pass_, **_conv_operands(pass_, t), stride=2, padding=1,
                     a_format=a_fmt, b_format=b_fmt, out_mask=mask, tiles=(4, 4, 8))  # fmt: skip
        assert torch.equal(r.output, expected.to(torch.int64))
        assert r.result.effectual_macs <= r.result.dense_macs


def test_k_accumulation_structure() -> None:
    t = _conv_case(42, 1, 1, 3)
    prog = lower_pass("conv2d", "fwd", x=t["x"], w=t["w"], padding=1, tiles=(8, 4, 10)).program
    k_tiles = -(-C * 9 // 10)
    run: list[bool] = []
    for cmd in prog.commands:
        if isinstance(cmd, TileGemm):
            run.append(cmd.accumulate)
        else:
            assert run == [False] + [True] * (k_tiles - 1)
            run = []
    assert sum(isinstance(c, Drain) for c in prog.commands) == -(-N * H * W // 8) * 1


def test_requantizing_drain() -> None:
    t = _conv_case(77, 1, 1, 3)
    raw = _torch_conv("fwd", t, 1, 1)
    # Independent expectation: divide by 16 in float64 (exact), torch.round is half-to-even, symmetric int8 clamp.
    expected = torch.round(raw / 16).clamp(-127, 127).to(torch.int64)
    r = run_pass("conv2d", "fwd", x=t["x"], w=t["w"], padding=1, tiles=(8, 8, 8),
                 drain=Drain(0, shift=4, out_bits=8, rounding="half_even"))  # fmt: skip
    assert torch.equal(r.output, expected)
    r = run_pass("conv2d", "fwd", x=t["x"], w=t["w"], padding=1, drain=Drain(0, shift=2, out_bits=4, rounding="floor",
                 relu=True))  # fmt: skip
    assert torch.equal(r.output, torch.floor(raw / 4).clamp(-7, 7).clamp_min(0).to(torch.int64))


QUANT_CASES = [("conv2d", p, s, pd) for p in ("fwd", "bwi", "bww") for s, pd in ((1, 1), (2, 0))] + [
    ("linear", p, 1, 0) for p in ("fwd", "bwi", "bww")
]


@pytest.mark.parametrize("kind,pass_,stride,padding", QUANT_CASES)
def test_quantized_within_quantization_bound(kind: str, pass_: str, stride: int, padding: int) -> None:
    """int8 symmetric quantization, lowering, integer evaluation, dequantization vs float64.

    With steps sa, sb and |a - qa*sa| <= sa/2, |b - qb*sb| <= sb/2 (round-to-nearest, no saturation
    since scale = max|x| / 127), each product errs by |ea*b + a*eb - ea*eb| <= sa*max|b|/2 + sb*max|a|/2 + sa*sb/4,
    so each output of a length-Kred reduction errs by at most Kred * (sa*max|b| + sb*max|a|)/2 + Kred*sa*sb/4.
    A 1e-9 slack covers the float64 rounding of the reference and of the dequantization.
    """
    seed = 3000 + QUANT_CASES.index((kind, pass_, stride, padding))
    print(f"seed={seed}")
    g = torch.Generator().manual_seed(seed)
    if kind == "conv2d":
        p = (H + 2 * padding - 3) // stride + 1
        q = (W + 2 * padding - 3) // stride + 1
        f = {"x": torch.randn(N, C, H, W, generator=g).relu(), "w": torch.randn(K, C, 3, 3, generator=g),
             "dy": torch.randn(N, K, p, q, generator=g)}  # fmt: skip
        kred = {"fwd": C * 9, "bwi": K * 9, "bww": N * p * q}[pass_]
    else:
        f = {"x": torch.randn(5, 7, generator=g).relu(), "w": torch.randn(6, 7, generator=g),
             "dy": torch.randn(5, 6, generator=g)}  # fmt: skip
        kred = {"fwd": 7, "bwi": 6, "bww": 5}[pass_]
    f = {k: v.double() for k, v in f.items()}
    qs = {k: quantize_symmetric(v, 8) for k, v in f.items()}
    a_name, b_name = {"fwd": ("x", "w"), "bwi": ("dy", "w"), "bww": ("x", "dy")}[pass_]
    if kind == "conv2d":
        ref_out = _torch_conv(pass_, f, stride, padding)
        ops = _conv_operands(pass_, {k: qv for k, (qv, _) in qs.items()})
        r = run_pass("conv2d", pass_, **ops, stride=stride, padding=padding, a_format="bitmap", tiles=(8, 4, 16))
    else:
        ref_out = _torch_linear(pass_, f)
        r = run_pass("linear", pass_, **{a_name: qs[a_name][0], b_name: qs[b_name][0]}, tiles=(4, 4, 4))
    sa, sb = qs[a_name][1], qs[b_name][1]
    amax, bmax = float(f[a_name].abs().max()), float(f[b_name].abs().max())
    bound = kred * (sa * bmax + sb * amax) / 2 + kred * sa * sb / 4 + 1e-9
    err = (r.output.double() * (sa * sb) - ref_out).abs().max().item()
    print(f"max error {err:.3e}, bound {bound:.3e}")
    assert err <= bound


def test_lowering_rejects_bad_arguments() -> None:
    t = _conv_case(1, 1, 0, 3)
    with pytest.raises(ValueError, match="tile_k must be a positive integer, got 0"):
        lower_pass("conv2d", "fwd", x=t["x"], w=t["w"], tiles=(4, 4, 0))
    with pytest.raises(ValueError, match="pass_ must be one of"):
        lower_pass("conv2d", "bwd", x=t["x"], w=t["w"])
    with pytest.raises(ValueError, match="a_format must be one of"):
        lower_pass("linear", "fwd", x=t["x"][0, 0], w=t["w"][0, 0], a_format="csr")
    with pytest.raises(ValueError, match="x_shape must be"):
        lower_pass("conv2d", "bwi", dy=t["dy"], w=t["w"])
    with pytest.raises(ValueError, match="dy must have shape"):
        lower_pass("conv2d", "bwi", dy=t["dy"], w=t["w"], x_shape=(N, C, H, W), stride=2)
    with pytest.raises(ValueError, match="x must be an int64 tensor"):
        lower_pass("conv2d", "fwd", x=t["x"].double(), w=t["w"])
    with pytest.raises(ValueError, match="out_mask must have the output shape"):
        lower_pass("conv2d", "fwd", x=t["x"], w=t["w"], out_mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="acc_buffers must be an int >= 1, got 0"):
        lower_pass("conv2d", "fwd", x=t["x"], w=t["w"], acc_buffers=0)


def test_one_accumulator_buffer() -> None:
    """``acc_buffers = 1`` (a core with one accumulator, issue 19): every command uses accumulator 0
    and the layer output is the same."""
    t = _conv_case(5, 1, 1, 3)
    two = lower_pass("conv2d", "fwd", x=t["x"], w=t["w"], padding=1, tiles=(8, 4, 10))
    one = lower_pass("conv2d", "fwd", x=t["x"], w=t["w"], padding=1, tiles=(8, 4, 10), acc_buffers=1)
    assert {c.acc for c in two.program.commands} == {0, 1} and {c.acc for c in one.program.commands} == {0}
    assert torch.equal(evaluate(one.program).output, evaluate(two.program).output)
