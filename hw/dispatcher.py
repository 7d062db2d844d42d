"""Dispatcher: walks a tile's outputs and hands every one that needs work to an idle lane.

The outputs are visited in *groups* of ``lanes`` consecutive columns of one row (row-major), one
group per cycle at best. For each output of a group the dispatcher decides, from the A row bitmap,
the B column bitmaps and the output mask:

- masked off: no lane is used; under ``accumulate`` the accumulator's live bit is cleared (without
  ``accumulate`` the whole accumulator was already cleared when the command started);
- no effectual ``k`` (A row AND B column is empty): nothing to do, the output is 0 (or keeps its
  old value under ``accumulate``);
- otherwise a *work item* (the output with its A row bitmap) goes to a lane, which reads the B
  column bitmap from its own copy.

Work items are compacted onto the lanes with room: the i-th pending item goes to the i-th lane
with room (prefix counts over both), so skipped outputs leave no hole in the lanes. This is what
turns element-wise output sparsity (ReLU masks) into saved cycles; skipping only all-zero rows
would capture almost none of it. Items that find no lane wait in the group register.

The dense core (``sparse=False``) sends every output, masked or not, with an all-ones bitmap.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.bits import popcount
from hw.sparse_lane import work_item_layout

__all__ = ["Dispatcher"]


class Dispatcher(wiring.Component):
    """Output dispatcher of the sparse core; see the module docstring.

    Parameters
    ----------
    lanes, tile_m, tile_n, tile_k : int
        ``tile_n`` is a multiple of ``lanes`` (a group is ``lanes`` columns, one per bank).
    sparse : bool

    Members
    -------
    start : In(1)
        Begin a command; ``has_mask``, ``accumulate`` and the bitmaps are held until ``busy`` falls.
    row_bitmaps : In(ArrayLayout(tile_k, tile_m)); col_bitmaps : In(ArrayLayout(tile_k, tile_n))
        Nonzero bitmaps of A's rows and B's columns (sparse core only).
    mask_rows : In(ArrayLayout(tile_n, tile_m))
        Output mask, 1 = compute.
    o_work : Out(stream of work items), one per lane
        ``valid`` is only raised when the lane's (registered) ``ready`` is high.
    clear, clear_m, clear_group : Out
        Live bits to clear: output ``(clear_m, clear_group * lanes + i)`` for each set bit ``i``.
    busy : Out(1)
        Outputs of the command remain to be handed out.

    Timing: the first group is fetched on the edge after ``start`` and reaches the group register
    one edge later; each group takes at least one cycle in the group register, so a command takes
    at least ``tile_m * tile_n / lanes + 2`` cycles here.
    """

    def __init__(self, *, lanes: int, tile_m: int, tile_n: int, tile_k: int, sparse: bool) -> None:
        self._lanes, self._tm, self._tn, self._tk, self._sparse = lanes, tile_m, tile_n, tile_k, sparse
        groups = tile_n // lanes
        bitmaps = {
            "row_bitmaps": In(data.ArrayLayout(tile_k, tile_m)),
            "col_bitmaps": In(data.ArrayLayout(tile_k, tile_n)),
        } if sparse else {}
        super().__init__({
            "start": In(1),
            "has_mask": In(1),
            "accumulate": In(1),
            **bitmaps,
            "mask_rows": In(data.ArrayLayout(tile_n, tile_m)),
            "o_work": Out(stream.Signature(work_item_layout(tile_m, tile_n, tile_k))).array(lanes),
            "clear": Out(lanes),
            "clear_m": Out(range(tile_m)),
            "clear_group": Out(range(groups)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, tm, tn, tk = self._lanes, self._tm, self._tn, self._tk
        groups = tn // lanes

        # Next group to fetch.
        ld_m = Signal(range(tm))
        ld_g = Signal(range(groups))
        ld_more = Signal()          # a group remains to be fetched

        # The fetch register: the next group's bitmaps and mask bits, as read from the buffers. Its
        # own clock period keeps the buffer-set and row multiplexers apart from the effectual test.
        p_valid = Signal()
        p_m = Signal(range(tm))
        p_g = Signal(range(groups))
        p_masked = Signal(lanes)

        # The group register.
        gr_valid = Signal()
        gr_fresh = Signal()         # loaded on the last edge (its masked outputs are cleared now)
        gr_m = Signal(range(tm))
        gr_g = Signal(range(groups))
        gr_masked = Signal(lanes)
        pending = Signal(lanes)

        mask_row = self.mask_rows[ld_m]
        fetch_masked = [self.has_mask & ~mask_row.bit_select(ld_g * lanes + i, 1) for i in range(lanes)]
        nx_need = []
        if self._sparse:
            p_row = Signal(tk)
            p_cols = Signal(data.ArrayLayout(tk, lanes))
            gr_row = Signal(tk)
            for i in range(lanes):
                nx_need.append(~p_masked[i] & ((p_row & p_cols[i]) != 0))
        else:
            nx_need = [Const(1, 1)] * lanes

        # Compaction: the i-th pending item goes to the i-th lane with room.
        room = Signal(lanes)
        m.d.comb += room.eq(Cat(self.o_work[j].ready for j in range(lanes)))
        assigned = Signal(lanes)
        sel = [[Signal(name=f"sel_{i}_{j}") for j in range(lanes)] for i in range(lanes)]
        for i in range(lanes):
            item_rank = popcount(pending[:i], i) if i else Const(0, 1)
            for j in range(lanes):
                lane_rank = popcount(room[:j], j) if j else Const(0, 1)
                m.d.comb += sel[i][j].eq(pending[i] & room[j] & (item_rank == lane_rank))
            m.d.comb += assigned[i].eq(Cat(sel[i][j] for j in range(lanes)).any())
        for j in range(lanes):
            port = self.o_work[j]
            m.d.comb += port.valid.eq(Cat(sel[i][j] for i in range(lanes)).any())
            # At most one item selects lane j: encode it with an OR per index bit (no priority chain).
            pick = Signal(range(lanes), name=f"pick_{j}")
            m.d.comb += pick.eq(Cat(
                Cat(sel[i][j] for i in range(lanes) if (i >> b) & 1).any() for b in range(len(pick))))
            m.d.comb += [
                port.payload.m.eq(gr_m),
                port.payload.n.eq(gr_g * lanes + pick),
                port.payload.masked.eq(gr_masked.bit_select(pick, 1)),
            ]
            if self._sparse:
                # The row is the whole group's; each lane reads its item's B column bitmap from its
                # own copy by `n`, so no column bitmap goes through this multiplexer.
                m.d.comb += port.payload.abits.eq(gr_row)

        remaining = pending & ~assigned
        take = Signal()             # the group register takes the fetched group on this edge
        fetch = Signal()            # the fetch register takes the next group on this edge
        m.d.comb += [
            take.eq(p_valid & (~gr_valid | (remaining == 0))),
            fetch.eq(ld_more & (~p_valid | take)),
            self.busy.eq(gr_valid | p_valid | ld_more),
            self.clear.eq(Mux(gr_fresh & self.accumulate, gr_masked, 0)),
            self.clear_m.eq(gr_m),
            self.clear_group.eq(gr_g),
        ]

        m.d.sync += gr_fresh.eq(take)
        with m.If(self.start):
            m.d.sync += [ld_m.eq(0), ld_g.eq(0), ld_more.eq(1), p_valid.eq(0), gr_valid.eq(0), pending.eq(0)]
        with m.Else():
            with m.If(fetch):
                m.d.sync += [p_valid.eq(1), p_m.eq(ld_m), p_g.eq(ld_g), p_masked.eq(Cat(fetch_masked))]
                if self._sparse:
                    m.d.sync += p_row.eq(self.row_bitmaps[ld_m])
                    for i in range(lanes):
                        m.d.sync += p_cols[i].eq(self.col_bitmaps[ld_g * lanes + i])
                last_group = (ld_m == tm - 1) & (ld_g == groups - 1)
                m.d.sync += ld_more.eq(~last_group)
                with m.If(ld_g == groups - 1):
                    m.d.sync += [ld_g.eq(0), ld_m.eq(ld_m + 1)]
                with m.Else():
                    m.d.sync += ld_g.eq(ld_g + 1)
            with m.Elif(take):
                m.d.sync += p_valid.eq(0)
            with m.If(take):
                m.d.sync += [
                    gr_valid.eq(1),
                    gr_m.eq(p_m),
                    gr_g.eq(p_g),
                    gr_masked.eq(p_masked),
                    pending.eq(Cat(nx_need)),
                ]
                if self._sparse:
                    m.d.sync += gr_row.eq(p_row)
            with m.Elif(gr_valid):
                m.d.sync += pending.eq(remaining)
                with m.If(remaining == 0):
                    m.d.sync += gr_valid.eq(0)
        return m
