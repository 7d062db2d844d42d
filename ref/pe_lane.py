"""Bit-exact model of the PE lane (``hw.pe_lane.PELane``): zero-skipping signed MAC.

The model is what the lane's RTL is judged against. It keeps the RTL's integer semantics: operands
are signed ``operand_bits`` values, products are exact, the accumulator wraps modulo
``2**acc_bits`` (two's complement), and counters wrap modulo ``2**counter_bits``. Timing is not
modelled here; only values and counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["LaneOutcome", "MacRequest", "run_pe_lane", "wrap_signed"]


def wrap_signed(value: int, bits: int) -> int:
    """``value`` reduced to a ``bits``-wide two's-complement integer."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass(frozen=True)
class MacRequest:
    """One request to the lane: operands and the accumulation delimiters."""

    a: int
    b: int
    first: bool = False
    last: bool = False


@dataclass
class LaneOutcome:
    """What the lane produces for a request sequence.

    ``results`` holds one accumulator value per ``last`` request, in order; the counters are the
    values of the lane's ``macs_issued`` / ``macs_skipped`` outputs after the last request.
    """

    results: list[int] = field(default_factory=list)
    macs_issued: int = 0
    macs_skipped: int = 0


def run_pe_lane(
    requests: Iterable[MacRequest], *, operand_bits: int, acc_bits: int, counter_bits: int
) -> LaneOutcome:
    """Evaluate a request sequence exactly as the lane does, starting from reset.

    Raises ``ValueError`` naming the request index if an operand does not fit ``operand_bits``.
    """
    low, high = -(1 << (operand_bits - 1)), (1 << (operand_bits - 1)) - 1
    outcome = LaneOutcome()
    acc = 0  # reset value of the accumulator register
    for index, request in enumerate(requests):
        for name in ("a", "b"):
            value = getattr(request, name)
            if not low <= value <= high:
                raise ValueError(
                    f"request {index}: operand {name}={value} does not fit signed {operand_bits} bits "
                    f"({low}..{high})"
                )
        effectual = request.a != 0 and request.b != 0
        base = 0 if request.first else acc
        acc = wrap_signed(base + (request.a * request.b if effectual else 0), acc_bits)
        if effectual:
            outcome.macs_issued = (outcome.macs_issued + 1) % (1 << counter_bits)
        else:
            outcome.macs_skipped = (outcome.macs_skipped + 1) % (1 << counter_bits)
        if request.last:
            outcome.results.append(acc)
    return outcome
