import math

import numpy as np
import pytest

from ref.lfsr import DEFAULT_TAPS, GaloisLFSR, is_maximal, shift_once


def walk_period(width: int, taps: int, seed: int = 1) -> int:
    s, n = shift_once(seed, taps), 1
    while s != seed:
        s, n = shift_once(s, taps), n + 1
        assert n < (1 << width) + 1, "state sequence does not return to the seed"
    return n


@pytest.mark.parametrize("width", range(8, 17))
def test_default_taps_walk_full_period(width: int) -> None:
    assert walk_period(width, DEFAULT_TAPS[width]) == (1 << width) - 1


def test_is_maximal_agrees_with_brute_force_for_all_width6_masks() -> None:
    for taps in range(1 << 5, 1 << 6):  # every 6-bit mask with the top bit set
        assert is_maximal(6, taps) == (walk_period(6, taps) == 63), hex(taps)


def test_all_default_taps_are_maximal() -> None:
    for width, taps in DEFAULT_TAPS.items():
        assert is_maximal(width, taps), width


def test_one_draw_by_hand() -> None:
    # width 4, taps 0b1100, seed 1: 1 -> (0 ^ 1100)=12 -> 6 -> 3 -> (1 ^ 1100)=13
    lf = GaloisLFSR(4, 0xC, seed=1)
    assert [lf.shift() for _ in range(4)] == [12, 6, 3, 13]
    assert GaloisLFSR(4, 0xC, seed=1).draw() == 13


@pytest.mark.parametrize("width", [8, 13, 16, 24, 32])
def test_draw_many_matches_sequential_draws(width: int) -> None:
    seed = 0x5A5A5A5A % ((1 << width) - 1) + 1
    print("lfsr seed", seed)
    a, b = GaloisLFSR(width, seed=seed), GaloisLFSR(width, seed=seed)
    seq = [a.draw() for _ in range(1500)]
    vec = b.draw_many(1000).tolist() + b.draw_many(500).tolist()
    assert vec == seq
    assert a.state == b.state


def test_draw_equals_width_shifts() -> None:
    a, b = GaloisLFSR(16, seed=0xACE1), GaloisLFSR(16, seed=0xACE1)
    for _ in range(50):
        for _ in range(16):
            a.shift()
        assert b.draw() == a.state


def test_full_period_of_draws_visits_every_nonzero_state_once() -> None:
    # gcd(8, 255) = 1, so 255 draws of 8 shifts each cover all nonzero 8-bit states.
    assert math.gcd(8, 255) == 1
    u = GaloisLFSR(8, seed=77).uniforms((255,))
    vals = np.sort((u.numpy() * 256).astype(np.int64))
    assert vals.tolist() == list(range(1, 256))


def test_uniforms_lie_on_the_open_grid() -> None:
    u = GaloisLFSR(16, seed=3).uniforms((4, 5, 6))
    assert u.shape == (4, 5, 6)
    k = u * 65536
    assert bool((k == k.round()).all()) and float(u.min()) >= 1 / 65536 and float(u.max()) <= 65535 / 65536


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"width": 1}, "width"), ({"width": 33}, "width"), ({"width": 8, "seed": 0}, "seed"),
     ({"width": 8, "seed": 256}, "seed"), ({"width": 8, "taps": 0x38}, "taps")],
)  # fmt: skip
def test_bad_arguments(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GaloisLFSR(**kwargs)
