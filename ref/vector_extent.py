"""How much of a GEMM tile the vector core is sent: its rows and its reduction length.

The lowering zero-pads ragged edges to whole tiles (``ref.contract.lowering``); padding is no work,
so the vector core takes the number of rows and of ``k`` that carry any (``hw.vector_core``'s
command fields ``rows`` and ``k_len``) and neither loads nor issues the rest. Rows past ``rows`` are
not visited: the core clears a GEMM's accumulator rows when it does not accumulate, so they read
0, and a GEMM that accumulates keeps them. ``rows`` therefore also covers every row whose output
the mask changes under accumulation (a mask row that is not all ones). ``k_len`` is a multiple of
``k_step`` (whole beats of B rows when a beat holds several) and at least ``k_step``.
"""

from __future__ import annotations

from ref.contract.commands import TileGemm

__all__ = ["tile_extent"]


def tile_extent(cmd: TileGemm, *, k_step: int = 1) -> tuple[int, int]:
    """(rows, k_len) of ``cmd`` for the vector core (see the module docstring)."""
    if not isinstance(k_step, int) or k_step < 1:
        raise ValueError(f"tile_extent: k_step must be an int >= 1, got {k_step!r}")
    a = cmd.a.nonzero()
    tk = a.shape[1]
    live_rows = a.any(dim=1)
    if cmd.accumulate and cmd.out_mask is not None:
        live_rows = live_rows | ~cmd.out_mask.all(dim=1)
    rows = int(live_rows.nonzero().max()) + 1 if bool(live_rows.any()) else 0
    cols = a.any(dim=0)
    k_len = int(cols.nonzero().max()) + 1 if bool(cols.any()) else 0
    k_len = min(tk, max(k_step, -(-k_len // k_step) * k_step))
    return rows, k_len
