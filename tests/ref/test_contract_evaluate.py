"""Evaluator semantics: GEMM, accumulate/clear, output mask, effectual counts, wrap, drain."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ref.contract import Drain, Operand, Program, PruneSetting, Region, ReSpropSetting, TileGemm, evaluate, lower_gemm
from ref.lfsr import GaloisLFSR
from ref.resprop_codes import ReSpropCodes

SEED = 20240611


def _t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


def _prog(cmds: list, tile: tuple[int, int, int], acc_bits: int = 32) -> Program:
    return Program(tuple(cmds), acc_bits, *tile)


ROUNDINGS = ("half_away", "half_even", "floor")


@pytest.mark.parametrize("fmt_a", ["dense", "bitmap"])
@pytest.mark.parametrize("fmt_b", ["dense", "bitmap"])
def test_hand_computed_gemm(fmt_a: str, fmt_b: str) -> None:
    a = _t([[1, 2, 0], [0, -1, 3]])  # [2, 3]
    b = _t([[1, 0], [2, 1], [0, -2]])  # [3, 2]
    # By hand: row0 = [1*1+2*2, 2*1] = [5, 2]; row1 = [-1*2, -1*1 + 3*-2] = [-2, -7].
    res = evaluate(_prog([TileGemm(0, Operand.of(a, fmt_a), Operand.of(b, fmt_b)), Drain(0)], (2, 2, 3)))
    assert torch.equal(res.tiles[0], _t([[5, 2], [-2, -7]]))
    assert res.dense_macs == 2 * 2 * 3
    # Effectual pairs by hand: (0,0): k=0,1 -> 2; (0,1): k=1 -> 1; (1,0): k=1 -> 1; (1,1): k=1,2 -> 2.
    assert res.effectual_macs == 6


def test_accumulate_versus_clear() -> None:
    a = Operand.dense(_t([[1, 1], [1, 1]]))
    b = Operand.dense(_t([[1, 2], [3, 4]]))  # a @ b = [[4, 6], [4, 6]]
    cmds = [TileGemm(0, a, b), TileGemm(0, a, b, accumulate=True), Drain(0), TileGemm(0, a, b), Drain(0)]
    res = evaluate(_prog(cmds, (2, 2, 2)))
    assert torch.equal(res.tiles[0], _t([[8, 12], [8, 12]]))
    assert torch.equal(res.tiles[1], _t([[4, 6], [4, 6]]))  # accumulate=False cleared the old sum
    assert [c.kind for c in res.counts] == ["tile_gemm", "tile_gemm", "drain", "tile_gemm", "drain"]


def test_accumulators_are_independent() -> None:
    one = Operand.dense(_t([[1]]))
    two = Operand.dense(_t([[2]]))
    cmds = [TileGemm(0, one, one), TileGemm(1, two, two), TileGemm(0, one, two, accumulate=True), Drain(1), Drain(0)]
    res = evaluate(_prog(cmds, (1, 1, 1)))
    assert [int(t) for t in res.tiles] == [4, 3]


def test_out_mask_zeroes_clears_and_skips() -> None:
    a = Operand.dense(_t([[1, 2], [3, 4]]))
    b = Operand.dense(_t([[1, 1], [1, 1]]))  # a @ b = [[3, 3], [7, 7]]
    mask = torch.tensor([[True, False], [False, True]])
    cmds = [TileGemm(0, a, b), TileGemm(0, a, b, mask, accumulate=True), Drain(0)]
    res = evaluate(_prog(cmds, (2, 2, 2)))
    # Masked-off outputs are exactly 0 even though the first GEMM left 3 and 7 there.
    assert torch.equal(res.tiles[0], _t([[6, 0], [0, 14]]))
    assert res.counts[0].effectual_macs == 8
    assert res.counts[1].effectual_macs == 4  # only the two unmasked outputs, 2 pairs each
    all_off = evaluate(_prog([TileGemm(0, a, b, torch.zeros((2, 2), dtype=torch.bool)), Drain(0)], (2, 2, 2)))
    assert all_off.effectual_macs == 0 and not bool(all_off.tiles[0].any())


@pytest.mark.parametrize("density", [0.0, 0.3, 0.7, 1.0])
def test_effectual_count_matches_einsum(density: float) -> None:
    seed = SEED + int(density * 10)
    print(f"seed={seed} density={density}")
    g = torch.Generator().manual_seed(seed)
    m, n, k = 5, 7, 6
    a = torch.randint(-4, 5, (m, k), generator=g) * (torch.rand((m, k), generator=g) < density)
    b = torch.randint(-4, 5, (k, n), generator=g) * (torch.rand((k, n), generator=g) < density)
    mask = torch.rand((m, n), generator=g) < 0.6
    res = evaluate(_prog([TileGemm(3, Operand.bitmap(a), Operand.dense(b), mask), Drain(3)], (m, n, k)))
    expected = torch.einsum("mk,kn,mn->", (a != 0).double(), (b != 0).double(), mask.double())
    assert res.effectual_macs == int(expected)
    assert torch.equal(res.tiles[0], torch.where(mask, (a.double() @ b.double()).long(), 0))


def test_wraparound_at_small_acc_bits() -> None:
    # 8-bit accumulator: 100 + 100 = 200 wraps to 200 - 256 = -56; -100 - 100 = -200 wraps to 56.
    a = Operand.dense(_t([[10, 10], [-10, -10]]))
    b = Operand.dense(_t([[10], [10]]))
    res = evaluate(_prog([TileGemm(0, a, b), Drain(0)], (2, 1, 2), acc_bits=8))
    assert res.tiles[0].flatten().tolist() == [-56, 56]
    # Wrap is modular, so a later accumulate that brings the true sum back into range is exact.
    cmds = [TileGemm(0, a, b), TileGemm(0, Operand.dense(_t([[-10, -10], [10, 10]])), b, accumulate=True), Drain(0)]
    assert evaluate(_prog(cmds, (2, 1, 2), acc_bits=8)).tiles[0].flatten().tolist() == [0, 0]
    # 64 bits: int64's own wrap, 2**62 * 4 = 2**64 = 0.
    cmds = [TileGemm(0, Operand.dense(_t([[2**62]])), Operand.dense(_t([[4]]))), Drain(0)]
    big = evaluate(_prog(cmds, (1, 1, 1), acc_bits=64))
    assert int(big.tiles[0]) == 0


def _drain_one(value: int, **kw: object) -> int:
    cmds = [TileGemm(0, Operand.dense(_t([[value]])), Operand.dense(_t([[1]]))), Drain(0, **kw)]
    return int(evaluate(_prog(cmds, (1, 1, 1))).tiles[0])


@pytest.mark.parametrize(
    "value,rounding,expected",
    [(5, "half_away", 3), (5, "half_even", 2), (5, "floor", 2), (-5, "half_away", -3), (-5, "half_even", -2),
     (-5, "floor", -3), (7, "half_even", 4), (6, "half_away", 3), (-7, "half_away", -4), (-6, "floor", -3)],
)  # fmt: skip
def test_drain_rounding_shift_one(value: int, rounding: str, expected: int) -> None:
    assert _drain_one(value, shift=1, out_bits=8, rounding=rounding) == expected


def test_drain_rounding_shift_two() -> None:
    # 10 / 4 = 2.5 -> half_away 3, half_even 2, floor 2; 11 / 4 = 2.75 -> 3, 3, 2; -9 / 4 = -2.25 -> -2, -2, -3.
    assert [_drain_one(10, shift=2, out_bits=8, rounding=r) for r in ROUNDINGS] == [3, 2, 2]
    assert [_drain_one(11, shift=2, out_bits=8, rounding=r) for r in ROUNDINGS] == [3, 3, 2]
    assert [_drain_one(-9, shift=2, out_bits=8, rounding=r) for r in ROUNDINGS] == [-2, -2, -3]


def test_drain_saturation_relu_and_raw() -> None:
    assert _drain_one(1000, shift=0, out_bits=8) == 127
    assert _drain_one(-1000, shift=0, out_bits=8) == -127  # symmetric range, as quantize_symmetric
    assert _drain_one(1000, shift=3, out_bits=8) == 125
    assert _drain_one(-1000, shift=3, out_bits=8, relu=True) == 0
    assert _drain_one(-123456, shift=0, out_bits=None) == -123456
    assert _drain_one(-123456, out_bits=None, relu=True) == 0


def test_program_assembles_regions() -> None:
    a = Operand.dense(_t([[1, 0], [0, 1]]))
    b0 = Operand.dense(_t([[1, 2], [3, 4]]))
    b1 = Operand.dense(_t([[5, 6], [7, 8]]))
    cmds = [TileGemm(0, a, b0), Drain(0), TileGemm(1, a, b1), Drain(1)]
    prog = Program(tuple(cmds), 32, 2, 2, 2, (2, 3), (Region(0, 0, 2, 2), Region(0, 2, 2, 1)))
    assert torch.equal(evaluate(prog).output, _t([[1, 2, 5], [3, 4, 7]]))


def test_invalid_programs_name_the_field() -> None:
    a = Operand.dense(_t([[1]]))
    with pytest.raises(ValueError, match="tile_m must be a positive integer, got 0"):
        Program((), 32, 0, 1, 1)
    with pytest.raises(ValueError, match="acc_bits"):
        Program((), 65, 1, 1, 1)
    with pytest.raises(ValueError, match="rounding must be one of"):
        Drain(0, shift=1, out_bits=8, rounding="nearest")
    with pytest.raises(ValueError, match="shift must be 0 for a raw drain"):
        Drain(0, shift=2)
    with pytest.raises(ValueError, match="commands\\[0\\]: a must be"):
        Program((TileGemm(0, a, a),), 32, 2, 1, 1)
    with pytest.raises(ValueError, match="out_mask must have shape"):
        TileGemm(0, a, a, torch.ones((2, 2), dtype=torch.bool))
    with pytest.raises(ValueError, match="no earlier TileGemm"):
        evaluate(Program((Drain(5),), 32, 1, 1, 1))
    with pytest.raises(ValueError, match="no earlier TileGemm cleared"):
        evaluate(Program((TileGemm(1, a, a, accumulate=True),), 32, 1, 1, 1))


def _prune_program(tau: int, seed: int, prune_flags: tuple[bool, ...]) -> Program:
    gen = torch.Generator().manual_seed(seed)
    commands = []
    for t, prune in enumerate(prune_flags):
        a = torch.randint(-7, 8, (4, 8), generator=gen)
        b = torch.randint(-7, 8, (8, 4), generator=gen)
        commands += [TileGemm(t % 2, Operand.dense(a), Operand.dense(b)),
                     Drain(t % 2, shift=3, out_bits=4, relu=t == 2, prune=prune)]
    return Program(tuple(commands), 14, 4, 4, 8, prune=PruneSetting(tau, seed, 8, 0xB8))


def test_pruning_drains_follow_the_pruner_model_in_drain_order() -> None:
    """Pruning drains equal ``prune_codes`` on the requantized tiles with one draw per element of
    the pruning drains only (tile by tile, row-major), from an LFSR seeded at the program start;
    prune_sum is sum |g| before pruning; masks are of the pruned values."""
    flags = (True, False, True, True)
    for tau in (3, 9):
        program = _prune_program(tau, 5, flags)
        plain = evaluate(Program(tuple(Drain(c.acc, c.shift, c.out_bits, c.rounding, c.relu) if isinstance(c, Drain)
                                       else c for c in program.commands), 14, 4, 4, 8))
        got = evaluate(program)
        lfsr = GaloisLFSR(8, 0xB8, 5)
        total = 0
        for tile, want_plain, prune in zip(got.tiles, plain.tiles, flags, strict=True):
            if not prune:
                assert torch.equal(tile, want_plain)
                continue
            total += int(want_plain.abs().sum())
            draws = [lfsr.draw() for _ in range(tile.numel())]
            for g, out, d in zip(want_plain.flatten().tolist(), tile.flatten().tolist(), draws, strict=True):
                # The float rule of ALGORITHMS.md: |g| < u*tau -> 0; else g if |g| >= tau; else sign*tau.
                if abs(g) < d / 256 * tau:
                    assert out == 0
                elif abs(g) >= tau:
                    assert out == g
                else:
                    assert out == (1 if g > 0 else -1) * min(tau, 7)
        assert got.prune_sum == total
        assert all(torch.equal(mk, t > 0) for mk, t in zip(got.masks, got.tiles, strict=True))
    # tau = 0: bypass, no draw consumed, but the sum still runs (it forms the next tensor's tau).
    bypass = evaluate(_prune_program(0, 5, flags))
    assert all(torch.equal(a, b) for a, b in zip(bypass.tiles, plain.tiles, strict=True))
    assert bypass.prune_sum == total


def test_invalid_pruning_names_the_field() -> None:
    with pytest.raises(ValueError, match="prune needs a requantized drain"):
        Drain(0, prune=True)
    with pytest.raises(ValueError, match="needs a PruneSetting"):
        Program((TileGemm(0, Operand.dense(torch.ones(4, 8, dtype=torch.int64)),
                          Operand.dense(torch.ones(8, 4, dtype=torch.int64))),
                 Drain(0, 1, 4, prune=True)), 14, 4, 4, 8)
    with pytest.raises(ValueError, match="seed must be"):
        PruneSetting(3, 0, 8, 0xB8)
    with pytest.raises(ValueError, match="tau must be"):
        PruneSetting(-1, 1, 8, 0xB8)


def test_topk_drains_emit_swat_keep_bits_and_leave_the_codes() -> None:
    """A ``topk`` Drain's mask is SWAT's keep rule |v| >= thr on its codes (ties kept), written out
    per element; its codes equal the same Drain's without ``topk``; other Drains keep ``v > 0``.
    With the threshold SWAT would select over the topk tiles' codes (the K-th largest magnitude),
    exactly K elements are kept when the magnitudes at the threshold do not tie."""
    gen = torch.Generator().manual_seed(SEED)
    print(f"seed={SEED}")
    a = torch.randint(-7, 8, (4, 8), generator=gen)
    b = torch.randint(-7, 8, (8, 4), generator=gen)
    gemm = TileGemm(0, Operand.dense(a), Operand.dense(b))
    plain = Drain(0, shift=4, out_bits=4, relu=True)
    plain_codes = evaluate(Program((gemm, plain), 14, 4, 4, 8)).tiles[0]
    for thr in range(0, 9):
        got = evaluate(Program((gemm, Drain(0, shift=4, out_bits=4, relu=True, topk=True), plain), 14, 4, 4, 8,
                               topk_threshold=thr))
        assert torch.equal(got.tiles[0], plain_codes) and torch.equal(got.tiles[1], plain_codes)
        for v, bit in zip(plain_codes.flatten().tolist(), got.masks[0].flatten().tolist(), strict=True):
            assert bit == (abs(v) >= thr), (v, thr)
        assert torch.equal(got.masks[1], plain_codes > 0)
    # Without ReLU, negative codes are kept by magnitude.
    signed = evaluate(Program((gemm, Drain(0, shift=4, out_bits=4, topk=True)), 14, 4, 4, 8, topk_threshold=3))
    assert bool((signed.masks[0] & (signed.tiles[0] < 0)).any())
    # The K-th largest magnitude as threshold keeps exactly K when it is not tied.
    mags = sorted(plain_codes.abs().flatten().tolist(), reverse=True)
    ks = [k for k in range(1, len(mags)) if mags[k - 1] > mags[k]]
    assert ks
    for k in ks:
        got = evaluate(Program((gemm, Drain(0, shift=4, out_bits=4, relu=True, topk=True)), 14, 4, 4, 8,
                               topk_threshold=mags[k - 1]))
        assert int(got.masks[0].sum()) == k


def test_invalid_topk_names_the_field() -> None:
    with pytest.raises(ValueError, match="topk needs a requantized drain"):
        Drain(0, topk=True)
    with pytest.raises(ValueError, match="topk and prune cannot both be set"):
        Drain(0, 1, 4, prune=True, topk=True)
    with pytest.raises(ValueError, match="topk must be a bool"):
        Drain(0, 1, 4, topk=1)
    one = Operand.dense(torch.ones(4, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="needs a topk_threshold"):
        Program((TileGemm(0, one, Operand.dense(torch.ones(8, 4, dtype=torch.int64))),
                 Drain(0, 1, 4, topk=True)), 14, 4, 4, 8)
    with pytest.raises(ValueError, match="topk_threshold must be None or an int >= 0"):
        Program((), 14, 4, 4, 8, topk_threshold=-1)


def _resprop_pass(n: int, r: int, c: int, j: int, mant: int, exp: int, target_cp: int, dense: bool, seed: int,
                  tiles: tuple[int, int, int] = (3, 2, 4)) -> Program:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randint(-8, 8, (n * r, 4), generator=gen)
    b = torch.randint(-8, 8, (4, c), generator=gen)
    p = torch.randint(-8, 8, (r, c), generator=gen)
    return lower_gemm(a, b, tiles=tiles, acc_bits=16, drain=Drain(0, shift=2, out_bits=5, resprop=True),
                      resprop=ReSpropSetting(p, n, j, mant, exp, target_cp, dense))


@pytest.mark.parametrize(("n", "r", "c", "j", "mant", "exp", "target_cp", "dense"), [
    (3, 4, 5, 1, 3, 0, 5000, False),    # a sample's rows straddle the 3-row tiles; ragged columns
    (5, 1, 3, 4, 1, -1, 0, False),      # one row per sample (a linear layer); T = 0; exponent up
    (2, 3, 2, 2, 1, 1, 10000, False),   # j = N: nothing stored; T = 2; exponent down
    (2, 2, 3, 0, 5, 0, 0, True),        # dense iteration: S = g, P still stored, exponent kept
])
def test_resprop_drains_equal_the_resprop_unit_model(n, r, c, j, mant, exp, target_cp, dense) -> None:
    """A resprop pass equals ``ref.resprop_codes.ReSpropCodes.run_pass`` (the stream unit's model)
    on the drained codes in sample-major order: S, nnz, the threshold used, the exponent after the
    controller's step and the P the next pass reads."""
    seed = SEED + 31 * n + r
    print(f"seed={seed}")
    program = _resprop_pass(n, r, c, j, mant, exp, target_cp, dense, seed)
    threshold = program.resprop.threshold
    setting = program.resprop
    got = evaluate(program)
    plain = evaluate(dataclasses.replace(
        program, resprop=None,
        commands=tuple(dataclasses.replace(x, resprop=False) if isinstance(x, Drain) else x for x in program.commands)))
    g = plain.output  # [N*R, C]: row n*R + i is row i of sample n, so the flattening is [N, R*C]
    depth = 1 << (r * c - 1).bit_length()   # the unit's banks are a power of two deep; e < r*c needs no wrap
    unit = ReSpropCodes(bits=6, depth=depth, mant=mant, exp=exp)
    unit.banks[unit.read_bank] = setting.p.flatten().tolist() + [0] * (depth - r * c)
    want = unit.run_pass(g.flatten().tolist(), n_samples=n, elems=r * c, sample=j, dense=dense, target_cp=target_cp)
    assert want.thr_used == threshold
    assert got.resprop_exp_after == want.exp_after
    assert got.output.flatten().tolist() == want.s
    assert got.resprop_nnz == want.nnz
    assert got.resprop_p.flatten().tolist() == unit.stored_p[: r * c]
    assert got.resprop_nnz > 0
    if threshold and not dense:
        assert got.resprop_nnz < int((g != 0).sum())   # the keep test went both ways
    for tile, mask in zip(got.tiles, got.masks, strict=True):
        assert torch.equal(mask, tile != 0)


def test_resprop_padding_leaves_as_zero() -> None:
    """Tile padding past the [N*R, C] output (here 2 rows, 1 column) is 0 with mask 0, although P
    is nonzero at the positions its row index wraps to."""
    program = _resprop_pass(2, 2, 3, 0, 0, 0, 0, False, SEED)
    res = evaluate(program)
    assert (program.resprop.p != 0).any()
    last_row_tile = [t for t, reg in zip(res.tiles, program.drain_regions, strict=True) if reg.row0 == 3]
    for tile in last_row_tile:
        assert torch.equal(tile[1:], torch.zeros_like(tile[1:]))
    right = [t for t, reg in zip(res.tiles, program.drain_regions, strict=True) if reg.col0 == 2]
    for tile in right:
        assert torch.equal(tile[:, 1:], torch.zeros_like(tile[:, 1:]))


def test_invalid_resprop_names_the_field() -> None:
    p = torch.zeros((2, 2), dtype=torch.int64)
    with pytest.raises(ValueError, match="out_bits"):
        Drain(0, resprop=True)
    for name in ("relu", "prune", "topk"):
        with pytest.raises(ValueError, match=f"resprop and {name}"):
            Drain(0, shift=0, out_bits=4, resprop=True, **{name: True})
    for kwargs, field in ((dict(p=p.float()), "p"), (dict(n_samples=0), "n_samples"), (dict(sample=-1), "sample"),
                          (dict(mant=-1), "mant"), (dict(exp=128), "exp"), (dict(target_cp=10001), "target_cp"),
                          (dict(dense=1), "dense")):
        args = dict(p=p, n_samples=2, sample=0, mant=0, exp=0, target_cp=0, dense=False) | kwargs
        with pytest.raises(ValueError, match=field):
            ReSpropSetting(**args)
    good = _resprop_pass(2, 3, 2, 0, 1, 0, 0, False, SEED)
    with pytest.raises(ValueError, match="ReSpropSetting"):
        dataclasses.replace(good, resprop=None)
    # The pass must be the whole [N*R, C] output, each region its clipped tile, each element once.
    with pytest.raises(ValueError, match="output_shape"):
        dataclasses.replace(good, resprop=dataclasses.replace(good.resprop, n_samples=3))
    regions = list(good.drain_regions)
    regions[0] = Region(0, 0, 2, 2)
    with pytest.raises(ValueError, match="clipped"):
        dataclasses.replace(good, drain_regions=tuple(regions))
    regions[0] = regions[1]
    with pytest.raises(ValueError, match="exactly once"):
        dataclasses.replace(good, drain_regions=tuple(regions))
