"""Small bit-level expression builders shared by the core's blocks."""

from __future__ import annotations

from amaranth import Const, Value

__all__ = ["popcount"]


def popcount(value: Value, width: int) -> Value:
    """Number of set bits among ``value[:width]``, as a balanced adder tree (depth log2(width)).

    Combinational; the result is wide enough for ``width`` (0 for ``width == 0``).
    """
    terms = [value[i] for i in range(width)]
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            pairs.append(terms[-1])
        terms = pairs
    return terms[0]
