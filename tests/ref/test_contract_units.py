"""The unit commands of the contract (ref.contract.units): each result against its rule written
out independently here (float rules, sorting, torch.autograd), and bad commands rejected by field."""

from __future__ import annotations

import math
import re

import pytest
import torch

from ref.contract import decode_bitmap, encode_bitmap
from ref.contract.machine import StepParams
from ref.contract.units import (
    BitmapDecode,
    BitmapEncode,
    MaskApply,
    PruneOut,
    ReluMaskEmit,
    ReluMaskOut,
    ReSpropDifference,
    ReSpropOut,
    StochasticPrune,
    TopKOut,
    TopKSelect,
    evaluate_unit,
)
from ref.lfsr import GaloisLFSR
from ref.resprop_codes import threshold_value

SEED = 515
MACHINE = StepParams(operand_bits=8, acc_bits=32, tile_m=4, tile_n=4, tile_k=16, bus_elems=4, lfsr_width=16,
                     lfsr_taps=0xD008, prune_frac_bits=8, prune_count_bits=12, topk_max_elems=512,
                     resprop_max_elems=64, resprop_max_batch=8)


def codes(shape, seed, *, bits=8, zero_fraction=0.3) -> torch.Tensor:
    print(f"codes shape={shape} seed={seed}")
    gen = torch.Generator().manual_seed(seed)
    q = 1 << (bits - 1)
    t = torch.randint(-q, q, shape, generator=gen, dtype=torch.int64)
    return torch.where(torch.rand(shape, generator=gen) < zero_fraction, torch.zeros((), dtype=torch.int64), t)


def test_relu_mask_emit_is_relu_and_its_autograd_mask():
    z = codes((3, 5, 7), SEED)
    out = evaluate_unit(ReluMaskEmit(z), MACHINE)
    assert isinstance(out, ReluMaskOut)
    zf = z.double().requires_grad_()
    torch.relu(zf).sum().backward()
    assert torch.equal(out.act, torch.relu(z))
    assert torch.equal(out.mask, zf.grad == 1)  # ReLU's gradient is 0 at z = 0: the mask is z > 0
    assert 0 < int(out.mask.sum()) < z.numel() and bool((z == 0).any())


def test_mask_apply_zeroes_where_the_mask_is_clear():
    dx, z = codes((2, 3, 8), SEED + 1), codes((2, 3, 8), SEED + 2)
    out = evaluate_unit(MaskApply(dx, z > 0), MACHINE)
    for got, d, m in zip(out.flatten().tolist(), dx.flatten().tolist(), (z > 0).flatten().tolist(), strict=True):
        assert got == (d if m else 0)


def test_stochastic_prune_is_the_float_rule_with_the_lfsr_draws():
    q = codes((4, 50), SEED + 3, zero_fraction=0.1)
    c_fixed, seed = 3 << 7, 0x1234  # c = 1.5 in 8 fraction bits
    out = evaluate_unit(StochasticPrune(q, c_fixed=c_fixed, seed=seed), MACHINE)
    assert isinstance(out, PruneOut)
    tau = math.floor(c_fixed * int(q.abs().sum()) / (q.numel() * 2**MACHINE.prune_frac_bits))
    assert out.tau == tau > 0
    lfsr = GaloisLFSR(MACHINE.lfsr_width, MACHINE.lfsr_taps, seed)
    draws = lfsr.draw_many(q.numel()).tolist()
    for g, d, got in zip(q.flatten().tolist(), draws, out.codes.flatten().tolist(), strict=True):
        u = d / 2**MACHINE.lfsr_width
        want = 0 if abs(g) < u * tau else g if abs(g) >= tau else int(math.copysign(min(tau, 127), g))
        assert got == want, (g, d)
    assert int((out.codes != q).sum()) > 0


@pytest.mark.parametrize("slice_len", [1, 9])
def test_topk_keeps_exactly_the_k_largest_items(slice_len):
    # Distinct item scores: a permutation of magnitudes, one item per score.
    items = 40
    gen = torch.Generator().manual_seed(SEED + slice_len)
    scores = torch.randperm(items, generator=gen) + 1
    base = torch.zeros(items, slice_len, dtype=torch.int64)
    base[:, 0] = scores  # the item's L1 norm is its first code's magnitude
    signs = torch.where(torch.rand(items, slice_len, generator=gen) < 0.5, -1, 1)
    t = (base * signs).reshape(-1)
    k = 13
    out = evaluate_unit(TopKSelect(t, k=k, slice_len=slice_len), MACHINE)
    assert isinstance(out, TopKOut)
    keep_items = out.keep.reshape(items, slice_len)
    assert bool((keep_items == keep_items[:, :1]).all())  # whole slices are kept or dropped
    kept = set(torch.nonzero(keep_items[:, 0]).flatten().tolist())
    assert kept == set(torch.argsort(scores, descending=True)[:k].tolist())
    assert out.kept == k * slice_len and out.threshold == int(scores.sort(descending=True).values[k - 1])
    assert torch.equal(out.values, torch.where(out.keep, t, 0))


def test_topk_keeps_ties_at_the_threshold():
    t = torch.tensor([5, -5, 5, 1, 0, 3], dtype=torch.int64)
    out = evaluate_unit(TopKSelect(t, k=2), MACHINE)
    assert out.threshold == 5 and out.keep.tolist() == [True, True, True, False, False, False]


def test_resprop_difference_is_the_float_threshold_rule():
    dy, p = codes((3, 2, 4, 4), SEED + 5, bits=7), codes((2, 4, 4), SEED + 6, bits=7)
    load, target = (21, -1), 2500  # thr = 10.5, target 25 %
    out = evaluate_unit(ReSpropDifference(dy, p, load=load, target_cp=target, sample=1), MACHINE)
    assert isinstance(out, ReSpropOut)
    d = dy - p[None]
    s = torch.where(d.abs().double() > threshold_value(*load), d, 0)
    assert torch.equal(out.s, s) and out.nnz == int((s != 0).sum())
    share = 100.0 * out.nnz / s.numel()
    assert out.exp_after == load[1] + (1 if share > 25 else -1 if share < 25 else 0)
    assert 0 < out.nnz < s.numel()


def test_bitmap_codec_commands_are_the_format_and_its_inverse():
    v = codes((6, MACHINE.tile_k), SEED + 7, zero_fraction=0.6)
    v[2] = 0  # an all-zero vector
    tile = evaluate_unit(BitmapEncode(v), MACHINE)
    assert torch.equal(tile.bitmap, v != 0)
    assert tile.values.tolist() == [x for row in v.tolist() for x in row if x != 0]
    assert torch.equal(evaluate_unit(BitmapDecode(tile), MACHINE), v)
    assert torch.equal(decode_bitmap(encode_bitmap(v)), v)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ReluMaskEmit(torch.zeros(3)), "ReluMaskEmit.z must be an int64 code tensor"),
    (lambda: ReluMaskEmit(torch.zeros(0, dtype=torch.int64)), "ReluMaskEmit.z must not be empty"),
    (lambda: MaskApply(torch.zeros(3, dtype=torch.int64), torch.ones(4, dtype=torch.bool)),
     "MaskApply.mask must be a bool tensor of dx's shape (3,)"),
    (lambda: StochasticPrune(torch.ones(3, dtype=torch.int64), c_fixed=-1, seed=1),
     "StochasticPrune.c_fixed must be an int >= 0"),
    (lambda: StochasticPrune(torch.ones(3, dtype=torch.int64), c_fixed=1, seed=0),
     "StochasticPrune.seed must be a nonzero LFSR state"),
    (lambda: TopKSelect(torch.ones(6, dtype=torch.int64), k=1, slice_len=4),
     "TopKSelect.slice_len must be an int >= 1 that divides the 6 codes"),
    (lambda: TopKSelect(torch.ones(6, dtype=torch.int64), k=4, slice_len=2), "TopKSelect.k must be an int in 1..3"),
    (lambda: ReSpropDifference(torch.ones(2, 3, dtype=torch.int64), torch.ones(4, dtype=torch.int64), load=(1, 0),
                               target_cp=10, sample=0), "ReSpropDifference.p must be one sample of dy, shape (3,)"),
    (lambda: ReSpropDifference(torch.ones(2, 3, dtype=torch.int64), torch.ones(3, dtype=torch.int64), load=(1, 0),
                               target_cp=10001, sample=0), "ReSpropDifference.target_cp must be an int in 0..10000"),
    (lambda: BitmapEncode(torch.ones(4, dtype=torch.int64)), "BitmapEncode.vectors must be 2-D"),
    (lambda: BitmapDecode(torch.ones(2, 2, dtype=torch.int64)), "BitmapDecode.tile must be a BitmapTile"),
])
def test_bad_commands_name_the_field(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


@pytest.mark.parametrize(("command", "message"), [
    (ReluMaskEmit(torch.tensor([128], dtype=torch.int64)), "ReluMaskEmit.z must hold signed 8-bit codes in -128..127"),
    (StochasticPrune(torch.ones(4096, dtype=torch.int64), c_fixed=1, seed=1),
     "StochasticPrune.codes has 4096 codes; the pruner counts to 4095 (prune_count_bits)"),
    (StochasticPrune(torch.ones(8, dtype=torch.int64), c_fixed=1, seed=1 << 16),
     "StochasticPrune.seed must be a 16-bit LFSR state"),
    (TopKSelect(torch.ones(513, dtype=torch.int64), k=1), "more than topk_max_elems = 512"),
    (ReSpropDifference(torch.ones(9, 4, dtype=torch.int64), torch.ones(4, dtype=torch.int64), load=(1, 0),
                       target_cp=10, sample=0), "the batch 9; the unit holds 64 (resprop_max_elems) and 8"),
    (BitmapEncode(torch.ones(2, 8, dtype=torch.int64)), "BitmapEncode.vectors must be tile_k = 16 codes long, got 8"),
])
def test_commands_the_machine_cannot_run_are_rejected(command, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluate_unit(command, MACHINE)
