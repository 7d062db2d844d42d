"""The PE lane model on hand-checked cases (expected values computed independently here)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ref.pe_lane import MacRequest, run_pe_lane, wrap_signed


def test_wrap_signed():
    assert wrap_signed(127, 8) == 127
    assert wrap_signed(128, 8) == -128
    assert wrap_signed(-129, 8) == 127
    assert wrap_signed(-1, 8) == -1
    assert wrap_signed(256 + 5, 8) == 5


def test_dot_products_equal_numpy_and_counts_are_exact():
    rng = random.Random(3)
    print("seed=3")
    requests, expected, zeros = [], [], 0
    for _ in range(50):
        length = rng.randint(1, 20)
        a = np.array([rng.choice((0, rng.randint(-128, 127))) for _ in range(length)])
        b = np.array([rng.choice((0, rng.randint(-128, 127))) for _ in range(length)])
        expected.append(int(np.dot(a, b)))
        zeros += int(np.sum((a == 0) | (b == 0)))
        requests += [MacRequest(int(x), int(y), first=i == 0, last=i == length - 1)
                     for i, (x, y) in enumerate(zip(a, b, strict=True))]
    outcome = run_pe_lane(requests, operand_bits=8, acc_bits=32, counter_bits=32)
    assert outcome.results == expected
    assert outcome.macs_skipped == zeros
    assert outcome.macs_issued == len(requests) - zeros


def test_accumulator_wraps_two_complement():
    requests = [MacRequest(-8, -8, first=i == 0, last=i == 3) for i in range(4)]  # 4 * 64 = 256
    assert run_pe_lane(requests, operand_bits=4, acc_bits=8, counter_bits=8).results == [0]
    requests = [MacRequest(7, 7, first=i == 0, last=i == 2) for i in range(3)]  # 147
    assert run_pe_lane(requests, operand_bits=4, acc_bits=8, counter_bits=8).results == [147 - 256]


def test_counters_wrap():
    requests = [MacRequest(1, 1, first=True, last=True)] * 300
    outcome = run_pe_lane(requests, operand_bits=4, acc_bits=8, counter_bits=8)
    assert outcome.macs_issued == 300 - 256


def test_out_of_range_operand_names_the_request():
    with pytest.raises(ValueError, match=r"request 1: operand b=8 does not fit signed 4 bits \(-8..7\)"):
        run_pe_lane([MacRequest(1, 1), MacRequest(1, 8)], operand_bits=4, acc_bits=8, counter_bits=8)
