"""Integer (hardware-numerics) model of SWAT's top-K threshold unit (Raihan & Aamodt).

The float policy (``ref.policies.swat``) keeps ``|v| >= thr`` where ``thr`` is the K-th largest
``|v|`` of the whole tensor and ``K = topk_count(keep, n) = max(1, min(n, ceil(keep*n)))``
(official float arithmetic; ``count_rule="rounded"`` takes ``ceil(round(keep*n, 9))``).
On signed ``operand_bits``-bit codes the unit does the same exactly:

- **Items and scores.** The tensor is ``n`` codes in row-major order, cut into ``n / slice_len``
  items of ``slice_len`` consecutive codes. An item's *score* is the L1 norm of its codes
  (``sum |v|``). ``slice_len = 1`` is the element mode (``topk_mask``: score = ``|v|``);
  ``slice_len = R*S`` on a ``[K, C, R, S]`` weight is the channel mode (``channel_mask``: one item
  per ``(k, c)`` kernel slice, ``channel_scores``). ``|-2**(b-1)| = 2**(b-1)`` is an exact
  ``b``-bit unsigned magnitude; a score needs ``b - 1 + slice_len.bit_length()`` bits.
- **Keep count.** ``K`` (items to keep, ``1 <= K <= n / slice_len``) is given as an integer; the
  host derives it from the float ``keep = 1 - sparsity`` with :func:`keep_count`, the same
  formula as ``topk_count`` for both ``count_rule`` values (tested equal).
- **Threshold** = the K-th largest score, found exactly by a most-significant-bit-first radix
  select (:func:`radix_select`), one counting pass over the tensor per score bit: at bit ``j`` it
  counts the items whose score agrees with the threshold found so far on the bits above ``j`` and
  has bit ``j`` set; if at least the remaining ``k`` do, the threshold's bit ``j`` is 1, else it
  is 0 and ``k`` drops by that count.
- **Mask**: an item is kept iff ``score >= thr`` (SWAT's tie rule: every item tied with the K-th
  largest is kept, so more than K may survive; with distinct scores exactly K do). Every code of a
  kept item passes unchanged, every code of a dropped item becomes 0. All-zero tensor: ``thr = 0``
  and everything is kept (``|v| >= 0``), as in ``topk_mask``.
- **Periodic threshold** (SWAT's efficient Top-K): the unit counts tensors modulo ``period``
  (``period`` 0 acts as 1). A tensor recomputes the threshold when no threshold is stored yet,
  when ``force`` is set (warm-up epochs, linear layers: ``linear_exact``; the channel-structured
  weight mask on every tensor: ``channel_recompute="always"``), or when the counter is
  0; otherwise it applies the stored threshold. ``restart`` sets the counter to 0 first: with
  ``restart`` on batch 0 of each epoch the counter equals ``batch % period``, the rule of
  ``SwatPolicy.recompute_now``. One model (and one unit) holds one stored threshold: SWAT's
  ``thr_w`` and ``thr_x`` of each layer are separate instances.

Plain Python ints only (no torch), so cocotb testbenches can use it cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "COUNT_RULES",
    "PERIOD_BITS",
    "TopKResult",
    "TopKUnitModel",
    "apply_threshold",
    "item_scores",
    "keep_count",
    "radix_select",
    "score_top_bit",
    "select_threshold",
]

#: Width of the ``period`` field of a tensor command (periods 0..65535; 0 acts as 1).
PERIOD_BITS = 16


COUNT_RULES = ("official", "rounded")


def keep_count(keep: float, n: int, count_rule: str = "official") -> int:
    """``K = ceil(keep * n)``, at least 1 and at most ``n`` (``ref.policies.swat.topk_count``).

    ``"official"``: ``math.ceil(keep * n)`` on the float product, as the official SWAT
    ``topk/drop.py`` (s = 0.7, n = 10: ``keep = 1 - 0.7 = 0.30000000000000004``, K = 4).
    ``"rounded"``: ``ceil(round(keep * n, 9))``, immune to float noise in ``keep * n`` (K = 3 there);
    the rule before the golden model followed the official code.
    """
    if count_rule == "official":
        k = math.ceil(keep * n)
    elif count_rule == "rounded":
        k = math.ceil(round(keep * n, 9))
    else:
        raise ValueError(f"count_rule must be one of {COUNT_RULES}, got {count_rule!r}")
    return max(1, min(n, k))


def score_top_bit(operand_bits: int, slice_len: int) -> int:
    """Index of the highest bit a score can set: scores are at most ``slice_len * 2**(b-1)``."""
    return operand_bits - 2 + slice_len.bit_length()


def item_scores(codes: Sequence[int], slice_len: int = 1) -> list[int]:
    """L1 norm of each run of ``slice_len`` consecutive codes (``slice_len = 1``: ``|v|``)."""
    if slice_len < 1 or len(codes) % slice_len:
        raise ValueError(f"slice_len must be >= 1 and divide n = {len(codes)}, got {slice_len}")
    return [sum(abs(int(v)) for v in codes[i:i + slice_len]) for i in range(0, len(codes), slice_len)]


def radix_select(scores: Sequence[int], k: int, top_bit: int) -> tuple[int, list[int]]:
    """(K-th largest of ``scores``, the count of each pass), bits ``top_bit`` down to 0.

    All scores must lie below ``2**(top_bit + 1)``; ``1 <= k <= len(scores)``.
    """
    if not 1 <= k <= len(scores):
        raise ValueError(f"k must be in 1..{len(scores)}, got {k}")
    thr, counts = 0, []
    for j in range(top_bit, -1, -1):
        candidate = thr | (1 << j)
        count = sum(1 for s in scores if s >> j == candidate >> j)
        counts.append(count)
        if count >= k:
            thr = candidate
        else:
            k -= count
    return thr, counts


def select_threshold(codes: Sequence[int], k: int, *, operand_bits: int, slice_len: int = 1) -> int:
    """The K-th largest item score of ``codes`` (what the unit computes on a recompute)."""
    scores = item_scores(codes, slice_len)
    return radix_select(scores, k, score_top_bit(operand_bits, slice_len))[0]


def apply_threshold(codes: Sequence[int], thr: int, slice_len: int = 1) -> tuple[list[bool], list[int]]:
    """(per-code keep mask, kept codes): a code is kept iff its item's score is ``>= thr``."""
    scores = item_scores(codes, slice_len)
    mask = [scores[i // slice_len] >= thr for i in range(len(codes))]
    return mask, [int(v) if m else 0 for v, m in zip(codes, mask, strict=True)]


@dataclass(frozen=True)
class TopKResult:
    """What the unit emits for one tensor: the masked codes, the mask, and its status beat."""

    values: list[int]
    mask: list[bool]
    threshold: int
    recomputed: bool
    kept: int  # codes kept (elements, not items)


class TopKUnitModel:
    """The unit's behaviour over a sequence of tensors, stored threshold and period counter included."""

    def __init__(self, operand_bits: int, max_elems: int) -> None:
        self.operand_bits = operand_bits
        self.max_elems = max_elems
        self.threshold: int | None = None
        self.count = 0

    def process(self, codes: Sequence[int], k: int, *, slice_len: int = 1, period: int = 1,
                restart: bool = False, force: bool = False) -> TopKResult:
        """One tensor command (see the module docstring); raises on a command the unit does not accept."""
        n, b = len(codes), self.operand_bits
        if not 1 <= n <= self.max_elems:
            raise ValueError(f"n must be in 1..{self.max_elems} (max_elems), got {n}")
        if slice_len < 1 or n % slice_len:
            raise ValueError(f"slice_len must be >= 1 and divide n = {n}, got {slice_len}")
        if not 1 <= k <= n // slice_len:
            raise ValueError(f"k must be in 1..{n // slice_len} (items), got {k}")
        if not 0 <= period < (1 << PERIOD_BITS):
            raise ValueError(f"period must be in 0..{(1 << PERIOD_BITS) - 1}, got {period}")
        low, high = -(1 << (b - 1)), (1 << (b - 1)) - 1
        if any(not low <= int(v) <= high for v in codes):
            raise ValueError(f"codes must be {b}-bit signed integers in {low}..{high}")
        if restart:
            self.count = 0
        recompute = self.threshold is None or force or self.count == 0
        if recompute:
            self.threshold = select_threshold(codes, k, operand_bits=b, slice_len=slice_len)
        assert self.threshold is not None
        mask, values = apply_threshold(codes, self.threshold, slice_len)
        self.count = 0 if self.count + 1 >= period else self.count + 1
        return TopKResult(values, mask, self.threshold, recompute, sum(mask))
