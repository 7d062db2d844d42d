"""The integer top-K model (``ref.topk_codes``) against SWAT's float policy on integer-valued tensors."""

from __future__ import annotations

import random

import pytest
import torch
from ref_testutil import (
    make_conv,
    official_channel_keep,
    official_k,
    official_select_percentage,
    official_unstructured_keep,
)

from ref.policies.base import IterationInfo
from ref.policies.swat import SwatPolicy, channel_mask, channel_scores, topk_count, topk_mask
from ref.topk_codes import (
    TopKUnitModel,
    apply_threshold,
    item_scores,
    keep_count,
    radix_select,
    score_top_bit,
    select_threshold,
)
from sim.topk_vectors import random_codes


def test_keep_count_is_topk_count():
    rng = random.Random(0)
    keeps = [0.0, 1e-9, 0.1, 0.2, 0.3, 1 / 3, 0.7, 0.9, 0.999, 1.0] + [rng.random() for _ in range(200)]
    keeps += [1.0 - s for s in (0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)]
    for keep in keeps:
        for n in (1, 2, 3, 7, 10, 100, 144, 1000, 4608, 9216, 12345):
            assert keep_count(keep, n) == topk_count(keep, n), (keep, n)
            for rule in ("official", "rounded"):
                assert keep_count(keep, n, rule) == topk_count(keep, n, rule), (keep, n, rule)


def test_keep_count_follows_the_official_code():
    """Default K = ceil(keep * n) on the float product (drop.py); s = 0.7, n = 10 keeps 4, the old
    rounded rule 3."""
    assert keep_count(1 - 0.7, 10) == 4 == official_k(official_select_percentage(0.7), 10)
    assert keep_count(1 - 0.7, 10, "rounded") == 3
    for s in (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99):
        for n in range(1, 2001):
            assert keep_count(1 - s, n) == official_k(official_select_percentage(s), n), (s, n)
    with pytest.raises(ValueError, match="count_rule"):
        keep_count(0.3, 10, "exact")


@pytest.mark.parametrize("seed", [280, 281])
def test_unit_masks_are_the_official_rule(seed):
    """select_threshold + apply_threshold with keep_count's K, on >= 200 random code tensors (element
    and channel mode, many ties), equal drop.py's rule (drop_nhwc, drop_structured) re-implemented."""
    print(f"seed={seed}")
    rng = random.Random(seed)
    bits = 4
    for i in range(120):
        kind = ("random", "equal", "extreme", "sparse", "zeros")[i % 5]
        s = rng.choice([0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, round(rng.random() * 0.99, 2), rng.random() * 0.99])
        if i % 2:
            n = rng.choice([rng.randint(1, 300), 10 * rng.randint(1, 30)])
            codes = random_codes(rng, n, bits, kind)
            thr = select_threshold(codes, keep_count(1 - s, n), operand_bits=bits)
            assert apply_threshold(codes, thr)[0] == official_unstructured_keep([float(c) for c in codes], s), (i, s)
        else:
            shape = (rng.randint(1, 10), rng.choice([1, 2, 5, rng.randint(1, 6)]), rng.choice([1, 3]), 3)
            n, slice_len = shape[0] * shape[1] * shape[2] * shape[3], shape[2] * shape[3]
            codes = random_codes(rng, n, bits, kind)
            k = keep_count(1 - s, shape[0] * shape[1])
            thr = select_threshold(codes, k, operand_bits=bits, slice_len=slice_len)
            nested = torch.tensor(codes, dtype=torch.float64).reshape(shape).tolist()
            want = [f for row in official_channel_keep(nested, s) for f in row]
            assert apply_threshold(codes, thr, slice_len)[0][::slice_len] == want, (i, shape, s)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_radix_select_is_the_kth_largest(seed):
    print(f"seed={seed}")
    rng = random.Random(seed)
    for _ in range(200):
        n = rng.randint(1, 60)
        top = rng.randint(0, 12)
        scores = [rng.randint(0, (1 << (top + 1)) - 1) for _ in range(n)]
        if rng.random() < 0.3:  # many ties
            scores = [s >> max(0, top - 1) for s in scores]
        k = rng.randint(1, n)
        thr, counts = radix_select(scores, k, top)
        assert thr == sorted(scores, reverse=True)[k - 1]
        assert len(counts) == top + 1


def test_most_negative_code_has_the_largest_magnitude():
    codes = [-128, 127, -127, 5]
    assert select_threshold(codes, 1, operand_bits=8) == 128
    mask, values = apply_threshold(codes, 128)
    assert mask == [True, False, False, False] and values == [-128, 0, 0, 0]
    assert score_top_bit(8, 1) == 7 and max(item_scores(codes)) < (1 << 8)
    assert score_top_bit(4, 9) == 6 and 1 << 6 <= 9 * 8 < 1 << 7  # nine codes of -8 sum to 72


@pytest.mark.parametrize("kind", ["random", "zeros", "equal", "extreme", "sparse"])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_element_mode_equals_topk_mask(bits, kind):
    seed = 10 * bits + len(kind)
    print(f"seed={seed}")
    rng = random.Random(seed)
    for _ in range(30):
        n = rng.randint(1, 300)
        codes = random_codes(rng, n, bits, kind)
        keep = rng.choice([1e-6, 0.01, 0.1, 0.5, 0.9, 0.999, 1.0, rng.random()])
        v = torch.tensor(codes, dtype=torch.float64)
        want_mask, want_thr = topk_mask(v, keep)
        thr = select_threshold(codes, keep_count(keep, n), operand_bits=bits)
        mask, values = apply_threshold(codes, thr)
        assert thr == want_thr
        assert mask == want_mask.tolist()
        assert values == torch.where(want_mask, v, 0.0).long().tolist()


def test_distinct_magnitudes_keep_exactly_k():
    rng = random.Random(4)
    mags = rng.sample(range(128), 100)
    codes = [m if rng.random() < 0.5 else -m for m in mags]
    for k in (1, 2, 37, 99, 100):
        thr = select_threshold(codes, k, operand_bits=8)
        assert sum(apply_threshold(codes, thr)[0]) == k


@pytest.mark.parametrize("bits", [4, 8])
def test_channel_mode_equals_channel_mask(bits):
    rng = random.Random(bits)
    print(f"seed={bits}")
    for _ in range(20):
        shape = (rng.randint(1, 6), rng.randint(1, 5), rng.choice([1, 3]), rng.choice([1, 3]))
        n = shape[0] * shape[1] * shape[2] * shape[3]
        codes = random_codes(rng, n, bits, rng.choice(["random", "extreme", "sparse", "zeros"]))
        w = torch.tensor(codes, dtype=torch.float64).reshape(shape)
        keep = rng.choice([0.01, 0.3, 0.5, 1.0, rng.random()])
        slice_len = shape[2] * shape[3]
        assert item_scores(codes, slice_len) == channel_scores(w).flatten().long().tolist()
        want_mask, want_thr = channel_mask(w, keep)
        k = keep_count(keep, shape[0] * shape[1])
        thr = select_threshold(codes, k, operand_bits=bits, slice_len=slice_len)
        assert thr == want_thr
        assert apply_threshold(codes, thr, slice_len)[0] == want_mask.flatten().tolist()


@pytest.mark.parametrize("structure,channel_recompute", [
    ("unstructured", "always"), ("channel", "periodic"), ("channel", "always")])
def test_period_logic_equals_swat_policy(structure, channel_recompute):
    """Stored threshold reuse, per-epoch restart and warm-up forcing, as SwatPolicy does them. The
    official channel-structured weight mask (channel_recompute='always') is a forced recompute on
    every tensor."""
    rng = random.Random(7)
    layer = make_conv(1, 1, 3, False, cin=3, cout=4)
    period, warmup, sparsity, bits = 3, 1, 0.7, 8
    pol = SwatPolicy(layer.spec(), sparsity, topk_period=period, structure=structure, warmup_epochs=warmup,
                     channel_recompute=channel_recompute)
    always = structure == "channel" and channel_recompute == "always"
    unit = TopKUnitModel(bits, 1024)
    slice_len = 9 if structure == "channel" else 1
    w = torch.tensor(random_codes(rng, 4 * 3 * 9, bits, "random"), dtype=torch.float64).reshape(4, 3, 3, 3)
    x = torch.zeros(1, 3, 5, 5, dtype=torch.float64)
    seen = []
    for epoch in range(3):
        for batch in range(5):
            # Small integer steps keep W integer-valued and let the stored threshold drift off.
            w = (w + torch.randint(-9, 10, w.shape, generator=torch.Generator().manual_seed(epoch * 10 + batch))).clamp(
                -128, 127)
            pol.begin_iteration(IterationInfo(epoch=epoch, batch=batch, batches_per_epoch=5))
            plan = pol.forward(x, w, training=True)
            codes = [int(c) for c in w.flatten().tolist()]
            got = unit.process(codes, keep_count(1 - sparsity, len(codes) // slice_len), slice_len=slice_len,
                               period=period, restart=batch == 0, force=epoch < warmup or always)
            assert got.recomputed == bool(plan.scalars["recomputed_w"])
            assert got.threshold == plan.scalars["thr_w"]
            assert got.mask == plan.trace["swat_mask_w"].flatten().tolist()
            assert got.values == torch.where(plan.trace["swat_mask_w"], w, 0.0).flatten().long().tolist()
            seen.append(got.recomputed)
    # Warm-up epoch recomputes always; later epochs at batches 0 and 3 only (official channel mask: always).
    assert seen == [True] * 15 if always else [True] * 5 + [True, False, False, True, False] * 2


def test_period_zero_and_one_recompute_every_tensor():
    for period in (0, 1):
        unit = TopKUnitModel(4, 16)
        assert [unit.process([1, -2, 3], 1, period=period).recomputed for _ in range(4)] == [True] * 4


@pytest.mark.parametrize("kwargs,message", [
    ({"codes": [], "k": 1}, "n must be in 1..8"),
    ({"codes": [1] * 9, "k": 1}, "n must be in 1..8"),
    ({"codes": [1, 2, 3], "k": 1, "slice_len": 2}, "slice_len must be >= 1 and divide n = 3"),
    ({"codes": [1, 2, 3, 4], "k": 3, "slice_len": 2}, "k must be in 1..2"),
    ({"codes": [1, 2], "k": 0}, "k must be in 1..2"),
    ({"codes": [8], "k": 1}, "codes must be 4-bit signed integers in -8..7"),
    ({"codes": [1], "k": 1, "period": 1 << 16}, "period must be in 0..65535"),
])
def test_invalid_commands(kwargs, message):
    codes = kwargs.pop("codes")
    with pytest.raises(ValueError, match=message):
        TopKUnitModel(4, 8).process(codes, **kwargs)
