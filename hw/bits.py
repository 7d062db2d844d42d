"""Small bit-level expression builders shared by the core's blocks."""

from __future__ import annotations

from amaranth import Const, Value

__all__ = ["popcount", "tree_sum"]


def popcount(value: Value, width: int) -> Value:
    """Number of set bits among ``value[:width]``, as a balanced adder tree (depth log2(width)).

    Combinational; the result is wide enough for ``width`` (0 for ``width == 0``).
    """
    return tree_sum([value[i] for i in range(width)])


def tree_sum(terms: list[Value]) -> Value:
    """The sum of ``terms`` as a balanced adder tree (depth log2(len(terms)), not a chain of
    ``len(terms)`` carry chains). Combinational; wide enough for the sum; 0 for no terms."""
    terms = list(terms)
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            pairs.append(terms[-1])
        terms = pairs
    return terms[0]
