"""Dense policy: plain arithmetic on every operand, nothing skipped (the baseline)."""

from __future__ import annotations

from ref.policies.base import Policy


class DensePolicy(Policy):
    """All passes dense; work accounting still reports the natural zeros of the operands."""

    name = "dense"
