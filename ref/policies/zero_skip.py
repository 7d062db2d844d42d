"""Gong et al. 2020 (SparseTrain on SIMD): skip natural ReLU zeros; exact.

Sparse operand per pass (from the authors' test harness): X in FWD, dY in BWI, X in BWW.
The values are computed densely (the result is identical); only the issued-MAC model differs.
NaN/Inf: the golden model follows dense IEEE arithmetic (0 * inf = nan propagates); the integer
RTL datapath has no inf, so the difference cannot arise there.
"""

from __future__ import annotations

from typing import ClassVar

from ref.policies.base import Policy


class ZeroSkipPolicy(Policy):
    name = "zero_skip"
    skips: ClassVar[dict[str, tuple[bool, bool]]] = {"fwd": (True, False), "bwi": (True, False), "bww": (True, False)}

    def primary_operand(self) -> tuple[str, str]:
        return ("fwd", "a")
