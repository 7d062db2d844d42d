import itertools

import pytest
import torch

from ref.accounting import WorkLedger, pass_work
from ref.layer_ops import ConvGeometry, LinearGeometry


def sparse(shape: tuple[int, ...], seed: int, density: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(shape, generator=gen, dtype=torch.float64)
    return torch.where(torch.rand(shape, generator=gen, dtype=torch.float64) < density, v, torch.zeros(()))


def brute_conv_counts(x, w, dy, stride, pad, mask_x):
    """(dense, effectual) per pass by explicit loops over every (n,k,c,p,q,r,s) product."""
    n_, c_, h_, w_ = x.shape
    k_, _, r_, s_ = w.shape
    p_, q_ = dy.shape[2:]
    cnt = {p: [0, 0] for p in ("fwd", "bwi", "bww")}
    for n, k, c, p, q, r, s in itertools.product(*map(range, (n_, k_, c_, p_, q_, r_, s_))):
        h, ww = p * stride + r - pad, q * stride + s - pad
        if not (0 <= h < h_ and 0 <= ww < w_):
            continue
        xv, wv, gv = x[n, c, h, ww] != 0, w[k, c, r, s] != 0, dy[n, k, p, q] != 0
        for pname in cnt:
            cnt[pname][0] += 1
        cnt["fwd"][1] += int(xv and wv)
        cnt["bwi"][1] += int(gv and wv and bool(mask_x[n, c, h, ww]))
        cnt["bww"][1] += int(xv and gv)
    return cnt


@pytest.mark.parametrize(("stride", "pad", "kernel"), [(1, 1, 3), (2, 1, 3), (2, 0, 3), (1, 0, 1)])
def test_conv_counts_match_brute_force(stride: int, pad: int, kernel: int) -> None:
    geom = ConvGeometry(stride, pad)
    x = sparse((2, 3, 5, 5), 1, 0.6)
    w = sparse((4, 3, kernel, kernel), 2, 0.7)
    y_shape = geom.fwd(x, w).shape
    dy = sparse(tuple(y_shape), 3, 0.5)
    mask = sparse(tuple(x.shape), 4, 0.5) != 0
    ref = brute_conv_counts(x, w, dy, stride, pad, mask)
    fwd = pass_work(geom, "fwd", x, w, y_shape)
    bwi = pass_work(geom, "bwi", dy, w, x.shape, out_mask=mask)
    bww = pass_work(geom, "bww", x, dy, w.shape)
    assert (fwd.dense_macs, fwd.effectual_macs) == tuple(ref["fwd"])
    assert (bwi.dense_macs, bwi.effectual_macs) == tuple(ref["bwi"])
    assert (bww.dense_macs, bww.effectual_macs) == tuple(ref["bww"])
    assert fwd.nnz_a == int((x != 0).sum()) and fwd.numel_a == x.numel()
    assert bwi.mask_density == pytest.approx(float(mask.double().mean()))
    for wk in (fwd, bwi, bww):
        assert wk.effectual_macs <= wk.issued_macs <= wk.dense_macs


def test_issued_skips_only_declared_operands() -> None:
    geom = ConvGeometry(1, 0)
    x = sparse((2, 3, 5, 5), 5, 0.5)
    w = torch.ones(4, 3, 1, 1, dtype=torch.float64)
    y_shape = geom.fwd(x, w).shape
    # 1x1, pad 0: every X element meets every one of the K filters exactly once.
    assert pass_work(geom, "fwd", x, w, y_shape, skip_a=True, skip_b=False).issued_macs == int((x != 0).sum()) * 4
    assert pass_work(geom, "fwd", x, w, y_shape, skip_a=False, skip_b=False).issued_macs == x.numel() * 4


def test_linear_counts_and_extremes() -> None:
    geom = LinearGeometry()
    x, w = sparse((6, 10), 7, 0.5), sparse((3, 10), 8, 0.5)
    fw = pass_work(geom, "fwd", x, w, torch.Size((6, 3)))
    assert fw.dense_macs == 6 * 3 * 10
    assert fw.effectual_macs == int(((x != 0).double() @ (w != 0).double().t()).sum())
    zero = pass_work(geom, "fwd", torch.zeros(6, 10, dtype=torch.float64), w, torch.Size((6, 3)))
    assert zero.effectual_macs == zero.issued_macs == 0
    full = pass_work(geom, "fwd", torch.ones(6, 10, dtype=torch.float64), torch.ones(3, 10, dtype=torch.float64),
                     torch.Size((6, 3)))  # fmt: skip
    assert full.effectual_macs == full.dense_macs
    with pytest.raises(ValueError, match="pass_name"):
        pass_work(geom, "bwd", x, w, torch.Size((6, 3)))


def test_ledger_aggregates_mac_weighted() -> None:
    geom = LinearGeometry()
    led = WorkLedger()
    w = torch.ones(3, 10, dtype=torch.float64)
    led.add("fc", "fwd", pass_work(geom, "fwd", torch.ones(2, 10, dtype=torch.float64), w, torch.Size((2, 3))))
    led.add("fc", "fwd", pass_work(geom, "fwd", torch.zeros(2, 10, dtype=torch.float64), w, torch.Size((2, 3))))
    s = led.summary()["fc"]["fwd"]
    assert s["effectual_fraction"] == 0.5 and s["operand_density_a"] == 0.5 and s["iterations"] == 2
    assert led.pass_fractions()["fwd"]["effectual_fraction"] == 0.5
