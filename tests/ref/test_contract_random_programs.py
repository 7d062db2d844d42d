"""Random accelerator programs (ref.contract.random_programs): densities, structure, values, determinism.

Density tolerance: elements are independent Bernoulli(p) draws, so the realized fraction over n
elements has the binomial standard deviation ``sigma = sqrt(p (1 - p) / n)``; every check allows
``Z = 5`` sigma (a false failure has probability < 1e-6 per check). For the effectual-MAC fraction
of mode "all" the triples (m, n, k) are not independent (one A element feeds tile_n triples), so
its variance is derived in ``_effectual_sigma``.
"""

from __future__ import annotations

import math

import pytest
import torch

from ref.contract import Drain, Program, TileGemm, evaluate, random_program
from ref.contract.commands import ROUNDINGS
from ref.contract.random_programs import MODES, mode_densities, random_resprop_program
from ref.numerics import requantize

Z = 5.0
TILES = {"tile_m": 8, "tile_n": 8, "tile_k": 8}
# Large enough that 5 sigma is a meaningful bound: A and B have 8*4*64 = 2048 elements, masks 512.
BIG = {**TILES, "operand_bits": 8, "acc_bits": 32, "n_gemms": 8, "k_tiles": 4}


def _gemms(p: Program) -> list[TileGemm]:
    return [c for c in p.commands if isinstance(c, TileGemm)]


def _drains(p: Program) -> list[Drain]:
    return [c for c in p.commands if isinstance(c, Drain)]


def _fraction(tensors: list[torch.Tensor]) -> tuple[float, int]:
    """(fraction of nonzero / True elements, element count)."""
    n = sum(t.numel() for t in tensors)
    return sum(int((t != 0).sum()) for t in tensors) / n, n


def _check_density(name: str, got: float, p: float, n: int) -> None:
    tol = Z * math.sqrt(p * (1.0 - p) / n)  # exactly 0 for p in {0, 1}: those densities are exact
    assert abs(got - p) <= tol, f"{name}: density {got:.4f}, expected {p:.4f} +- {tol:.4f} (n = {n})"


def _effectual_sigma(d: float, tm: int, tn: int, tk: int, k_tiles: int, n_gemms: int) -> float:
    """Std of the effectual fraction in mode "all" (each factor Bernoulli(q), q = d**(1/3)).

    E = (1/T) sum over T = n_gemms*k_tiles*tm*tn*tk triples of a*b*m. Two distinct triples are
    correlated only when they share exactly one factor: the same A element (tn - 1 others), the
    same B element (tm - 1 others) or the same mask entry (k_tiles*tk - 1 others: one mask per
    output tile, used by all its K tiles). Such a pair has Cov = q**5 - q**6, so
    Var(E) = (d (1 - d) + (tn - 1 + tm - 1 + k_tiles*tk - 1) (q**5 - q**6)) / T.
    """
    q = d ** (1.0 / 3.0)
    t = n_gemms * k_tiles * tm * tn * tk
    return math.sqrt((d * (1 - d) + (tn - 1 + tm - 1 + k_tiles * tk - 1) * (q**5 - q**6)) / t)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_densities_within_binomial_tolerance(mode: str, density: float) -> None:
    seed = 100 + MODES.index(mode) * 10 + int(density * 10)
    print(f"seed={seed} mode={mode} density={density}")
    p = random_program(mode=mode, density=density, seed=seed, **BIG)
    da, db, dm = mode_densities(mode, density)
    gemms = _gemms(p)
    fa, na = _fraction([g.a.to_dense() for g in gemms])
    _check_density("A", fa, da, na)
    fb, nb = _fraction([g.b.to_dense() for g in gemms])
    _check_density("B", fb, db, nb)
    if dm is None:
        assert all(g.out_mask is None for g in gemms)
    else:
        masks = [g.out_mask for g in gemms[:: BIG["k_tiles"]]]  # one mask per output tile
        fm, nm = _fraction(masks)
        _check_density("mask", fm, dm, nm)
    res = evaluate(p)
    eff = res.effectual_macs / res.dense_macs
    if mode == "all":
        tol = Z * _effectual_sigma(density, 8, 8, 8, BIG["k_tiles"], BIG["n_gemms"])
        assert abs(eff - density) <= tol, f"effectual fraction {eff:.4f}, expected {density} +- {tol:.4f}"
    elif mode == "dense":
        assert eff == 1.0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("density", [0.0, 1.0])
def test_density_edges_are_exact(mode: str, density: float) -> None:
    seed = 7
    print(f"seed={seed}")
    p = random_program(mode=mode, density=density, seed=seed, **{**BIG, "n_gemms": 3, "k_tiles": 2})
    da, db, dm = mode_densities(mode, density)
    res = evaluate(p)
    for g in _gemms(p):
        assert bool((g.a.to_dense() != 0).all()) if da == 1.0 else not bool(g.a.to_dense().any())
        assert bool((g.b.to_dense() != 0).all()) if db == 1.0 else not bool(g.b.to_dense().any())
        if dm is not None:
            assert bool(g.out_mask.all()) if dm == 1.0 else not bool(g.out_mask.any())
    sparse_zero = density == 0.0 and mode != "dense"
    assert res.effectual_macs == (0 if sparse_zero else res.dense_macs)
    if sparse_zero:  # nothing effectual: every accumulator is 0, and so is every read-out
        assert all(not bool(t.any()) for t in res.tiles)


def test_default_and_overridden_formats() -> None:
    expect = {"a": ("bitmap", "dense"), "b": ("dense", "bitmap"), "mask": ("dense", "dense"),
              "all": ("bitmap", "bitmap"), "dense": ("dense", "dense")}  # fmt: skip
    for mode, (fa, fb) in expect.items():
        for density in (0.0, 0.5, 1.0):  # the mode decides, not the realized density
            g = _gemms(random_program(mode=mode, density=density, seed=1, **TILES, operand_bits=4, acc_bits=16))
            assert {(x.a.format, x.b.format) for x in g} == {(fa, fb)}
    g = _gemms(random_program(mode="a", density=0.5, seed=1, **TILES, operand_bits=4, acc_bits=16,
                              a_format="dense", b_format="bitmap"))  # fmt: skip
    assert {(x.a.format, x.b.format) for x in g} == {("dense", "bitmap")}


@pytest.mark.parametrize("mode", ["mask", "all"])
def test_structure_follows_the_lowering(mode: str) -> None:
    seed, n_gemms, k_tiles, acc_bits = 11, 5, 3, 20
    print(f"seed={seed}")
    p = random_program(mode=mode, density=0.5, tile_m=4, tile_n=6, tile_k=5, operand_bits=6, acc_bits=acc_bits,
                       n_gemms=n_gemms, k_tiles=k_tiles, seed=seed)  # fmt: skip
    assert (p.tile_m, p.tile_n, p.tile_k, p.acc_bits) == (4, 6, 5, acc_bits)
    assert len(p.commands) == n_gemms * (k_tiles + 1)
    assert p.output_shape == (n_gemms * 4, 6)
    for t in range(n_gemms):
        block = p.commands[t * (k_tiles + 1) : (t + 1) * (k_tiles + 1)]
        gemms, drain = block[:-1], block[-1]
        assert all(isinstance(g, TileGemm) and g.acc == t % 2 for g in gemms)
        assert [g.accumulate for g in gemms] == [False] + [True] * (k_tiles - 1)
        assert all(g.out_mask is gemms[0].out_mask for g in gemms)  # one mask for all K tiles
        assert isinstance(drain, Drain) and drain.acc == t % 2
        reg = p.drain_regions[t]
        assert (reg.row0, reg.col0, reg.rows, reg.cols) == (t * 4, 0, 4, 6)
    res = evaluate(p)
    assert res.output is not None and res.output.shape == (n_gemms * 4, 6)


def test_drain_parameters_cover_their_ranges() -> None:
    seeds = range(40)
    print(f"seeds={list(seeds)}")
    acc_bits = 12
    seen: dict[str, set[object]] = {"raw": set(), "relu": set(), "rounding": set(), "shift": set(), "bits": set()}
    for seed in seeds:
        p = random_program(mode="dense", density=1.0, tile_m=1, tile_n=1, tile_k=1, operand_bits=4,
                           acc_bits=acc_bits, n_gemms=4, k_tiles=1, seed=seed)  # fmt: skip
        for d in _drains(p):
            seen["raw"].add(d.out_bits is None)
            seen["relu"].add(d.relu)
            if d.out_bits is None:
                assert d.shift == 0
                continue
            assert 0 <= d.shift <= acc_bits + 2 and 2 <= d.out_bits <= min(32, acc_bits)
            seen["rounding"].add(d.rounding)
            seen["shift"].add(d.shift)
            seen["bits"].add(d.out_bits)
    assert seen["raw"] == {True, False} and seen["relu"] == {True, False}
    assert seen["rounding"] == set(ROUNDINGS)
    assert {0, acc_bits + 2} <= seen["shift"] and {2, acc_bits} <= seen["bits"]
    # acc_bits above 60: the shift stays within Drain's limit of 62.
    for seed in range(10):
        p = random_program(mode="dense", density=1.0, tile_m=1, tile_n=1, tile_k=1, operand_bits=4, acc_bits=64,
                           n_gemms=4, k_tiles=1, seed=seed)  # fmt: skip
        assert all(d.shift <= 62 for d in _drains(p))


@pytest.mark.parametrize("bits", [2, 3, 8, 32])
def test_values_span_the_signed_range_with_extremes(bits: int) -> None:
    seed = 5
    print(f"seed={seed}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    p = random_program(mode="all", density=0.6, seed=seed, **{**BIG, "operand_bits": bits, "acc_bits": 64})
    codes: set[int] = set()
    for g in _gemms(p):
        for t in (g.a.to_dense(), g.b.to_dense()):
            nz = t[t != 0]
            assert int(nz.min()) >= lo and int(nz.max()) <= hi
            if nz.numel() >= 2:  # every tile with two nonzeros holds both extremes
                assert int(nz.min()) == lo and int(nz.max()) == hi
            codes.update(int(v) for v in nz.unique())
    if bits <= 3:  # small widths: every nonzero code occurs
        assert codes == set(range(lo, hi + 1)) - {0}


def _wrap_int(v: int, bits: int) -> int:
    """Two's-complement wrap of a Python int (independent of the evaluator's tensor wrap)."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


@pytest.mark.parametrize("acc_bits", [8, 20, 64])
def test_evaluates_like_a_plain_integer_model(acc_bits: int) -> None:
    """Random programs run through the evaluator; small accumulators wrap (extremes make that likely)."""
    seed = 21 + acc_bits
    print(f"seed={seed}")
    p = random_program(mode="all", density=0.7, tile_m=3, tile_n=4, tile_k=5, operand_bits=8, acc_bits=acc_bits,
                       n_gemms=4, k_tiles=3, seed=seed)  # fmt: skip
    res = evaluate(p)
    gemms = _gemms(p)
    wrapped = False
    for t, (drain, tile) in enumerate(zip(_drains(p), res.tiles, strict=True)):
        block = gemms[t * 3 : (t + 1) * 3]
        mask = block[0].out_mask
        exact = sum((g.a.to_dense() @ g.b.to_dense() for g in block), torch.zeros((3, 4), dtype=torch.int64))
        acc = torch.tensor([[_wrap_int(int(v), acc_bits) if bool(m) else 0 for v, m in zip(r, mr, strict=True)]
                            for r, mr in zip(exact.tolist(), mask.tolist(), strict=True)])  # fmt: skip
        wrapped |= bool((acc != torch.where(mask, exact, 0)).any())
        want = acc if drain.out_bits is None else requantize(acc, drain.shift, drain.out_bits, drain.rounding)
        assert torch.equal(tile, want.clamp_min(0) if drain.relu else want)
    assert wrapped == (acc_bits == 8)


def test_deterministic_per_seed() -> None:
    print("seeds=3,4")

    def snapshot(p: Program) -> list[object]:
        out: list[object] = []
        for c in p.commands:
            if isinstance(c, TileGemm):
                out += [c.acc, c.accumulate, c.a.format, c.a.to_dense().tolist(), c.b.to_dense().tolist(),
                        None if c.out_mask is None else c.out_mask.tolist()]  # fmt: skip
            else:
                out.append(c)
        return out

    kw = {**TILES, "operand_bits": 8, "acc_bits": 24, "n_gemms": 3, "k_tiles": 2}
    for mode in MODES:
        a = snapshot(random_program(mode=mode, density=0.4, seed=3, **kw))
        assert a == snapshot(random_program(mode=mode, density=0.4, seed=3, **kw))
        assert a != snapshot(random_program(mode=mode, density=0.4, seed=4, **kw))


def test_one_accumulator_buffer_gives_the_same_results() -> None:
    """A core with one accumulator (``accumulators = 1``, issue 19) gets programs whose every
    command uses accumulator 0, with the same operands and results as the two-buffer program."""
    kw = {**TILES, "operand_bits": 6, "acc_bits": 20, "n_gemms": 3, "k_tiles": 2, "seed": 5}
    two = random_program(mode="all", density=0.6, **kw)
    one = random_program(mode="all", density=0.6, acc_buffers=1, **kw)
    assert {c.acc for c in two.commands} == {0, 1} and {c.acc for c in one.commands} == {0}
    assert all(torch.equal(a, b) for a, b in zip(evaluate(one).tiles, evaluate(two).tiles, strict=True))
    rs = {"n_samples": 2, "rows_per_sample": 5, "cols": 5, **TILES, "operand_bits": 6, "acc_bits": 20,
          "out_bits": 5, "sample": 1, "seed": 6}
    two, one = random_resprop_program(**rs), random_resprop_program(**rs, acc_buffers=1)
    assert {c.acc for c in two.commands} == {0, 1} and {c.acc for c in one.commands} == {0}
    assert torch.equal(evaluate(one).output, evaluate(two).output)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "sparse"}, r"mode must be one of \('a', 'b', 'mask', 'all', 'dense'\)"),
        ({"density": 1.5}, r"density must be a number in \[0, 1\]"),
        ({"density": -0.1}, r"density must be a number in \[0, 1\]"),
        ({"density": True}, r"density must be a number"),
        ({"tile_m": 0}, r"tile_m must be an int >= 1"),
        ({"tile_k": 2.0}, r"tile_k must be an int >= 1"),
        ({"operand_bits": 1}, r"operand_bits must be an int in \[2, 32\]"),
        ({"operand_bits": 33}, r"operand_bits must be an int in \[2, 32\]"),
        ({"acc_bits": 65}, r"acc_bits must be an int in \[2, 64\]"),
        ({"n_gemms": 0}, r"n_gemms must be an int >= 1"),
        ({"k_tiles": 0}, r"k_tiles must be an int >= 1"),
        ({"seed": -1}, r"seed must be an int >= 0"),
        ({"acc_buffers": 0}, r"acc_buffers must be an int >= 1"),
        ({"a_format": "csr"}, r"a_format must be None or one of \('dense', 'bitmap'\)"),
        ({"b_format": "csr"}, r"b_format must be None or one of \('dense', 'bitmap'\)"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    base: dict[str, object] = {"mode": "a", "density": 0.5, **TILES, "operand_bits": 8, "acc_bits": 32, "seed": 0}
    with pytest.raises(ValueError, match=match):
        random_program(**{**base, **kwargs})


def test_resprop_saturate_bits_shortens_the_shift_and_saturates_both_ways() -> None:
    kw = {"n_samples": 2, "rows_per_sample": 5, "cols": 9, "tile_m": 4, "tile_n": 4, "tile_k": 8,
          "operand_bits": 8, "acc_bits": 24, "out_bits": 6, "sample": 0, "dense": True, "seed": 5}
    plain = random_resprop_program(**kw)
    short = random_resprop_program(**kw, saturate_bits=2)
    shifts = [next(c.shift for c in p.commands if isinstance(c, Drain)) for p in (plain, short)]
    assert shifts[0] >= 2 and shifts[1] == shifts[0] - 2
    qmax = (1 << (kw["out_bits"] - 1)) - 1
    g = evaluate(short).output              # a dense pass emits the codes themselves
    assert (g == qmax).any() and (g == -qmax).any()
    assert int((g.abs() == qmax).sum()) > int((evaluate(plain).output.abs() == qmax).sum())
    with pytest.raises(ValueError, match="saturate_bits must be an int >= 0, got -1"):
        random_resprop_program(**kw, saturate_bits=-1)
