"""Routed ECP5 cost of three candidate compute slices for the next core (design study).

Three Amaranth slices, int8 operands and 32-bit accumulators, every multiplier a
:class:`hw.mac.PipelinedMultiplier` (``target="ecp5"``: one MULT18X18D with its own registers):

- ``dense_array`` (:class:`DenseArray`, 16 x 8 = 128 MACs): the output-stationary dense MAC array a
  user would build as the baseline;
- ``vector_lane`` (:class:`VectorLane`, V = 16, tile_k = 64): one-sided skipping; a stored B tile,
  one nonzero of an A row per cycle broadcast into V multipliers;
- ``match_pe`` (:class:`MatchPE`, G = 4, tile_k = 64): a SparTen-style two-sided PE; G matches of
  an A row and a B column (bitmap AND) per cycle into one accumulator.

Each slice is converted to Verilog (``emit_src=False``), synthesized with Yosys ``synth_ecp5`` and
placed and routed out of context on an LFE5U-85F by :func:`stag.synth.synthesize_verilog`; the
report (LUT4, CCU2C, FF, DSP, BRAM, routed Fmax, seconds, and LUT4 per MAC =
(LUT4 + 2 * CCU2C) / multipliers) is printed and written to ``benchmarks/results/slices/<name>.json``.
Tool logs stay in ``runs/slices/<name>/``.

    python benchmarks/slices.py [--only NAME] [--no-pnr] [--freq MHZ]

Every result is observable at the ports, so synthesis removes nothing that the slice computes.

Timing fixes: each slice got at most two focused fixes after its first routed run; ``FIX_NOTES``
below records the figures before and after each and the remaining critical path, and every JSON
report carries its slice's note. None of the three reaches 150 MHz yet (see the notes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.back import verilog
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hw.mac import TARGETS, PipelinedMultiplier  # noqa: E402
from stag.synth import synthesize_verilog  # noqa: E402

__all__ = ["SLICES", "DenseArray", "MatchPE", "VectorLane", "build_slice", "run_slice"]

#: Operand and accumulator widths of every slice.
OPERAND_BITS = 8
ACC_BITS = 32
RESULTS = ROOT / "benchmarks" / "results" / "slices"
WORK = ROOT / "runs" / "slices"

#: The focused timing fixes, with routed figures before and after each (nextpnr seed 1, --freq 200,
#: LFE5U-85F out of context; LUT4 / CCU2C / FF, Fmax). The code comments name each fix.
FIX_NOTES: dict[str, str] = {
    "dense_array": (
        "as first written: 7122 / 2048 / 4906, 72.4 MHz; critical path rd_row -> one 16:1 read-out mux "
        "spanning the array -> rd_data (13.8 ns, 12.3 ns of it routing). "
        "Fix 1, read-out as an index register per column and two registered 4:1 mux levels: "
        "6854 / 2048 / 5974, 107.1 MHz; critical path a per-row `first` copy (one per 8 PEs) -> "
        "accumulator (5.5 ns route). "
        "Fix 2, one `first`/`valid` copy per PE (a row copy feeding 8 PE copies): 6886 / 2048 / 6228, "
        "105.8 MHz; the flag path is gone, the critical path is now a DSP output -> its accumulator's "
        "carry chain placed 67 columns away (7.4 ns route). The final report's run of the same design "
        "routed at 111.9 MHz (placement noise between runs: about 6 %), with the same kind of critical "
        "path (DSP output -> accumulator, 6.4 ns route). Not done (fix budget): a fabric register "
        "after each DSP output, or keeping the placer from pulling accumulators toward the read-out."),
    "vector_lane": (
        "as first written: 1257 / 334 / 978, 99.6 MHz; critical path remaining bitmap -> 64-bit carry "
        "chain (lowest set bit) -> 4-level one-hot encoder -> k register (10.0 ns). "
        "Fix 1, rem - 1 shared by the one-hot and the cleared remainder, the one-hot registered and "
        "encoded in the next stage straight into the memory address: 1286 / 302 / 1035, 94.6 MHz; "
        "critical path now DP16KD clock-to-output 5.6 ns (Yosys maps no output register) -> LUT -> "
        "route to a DSP. "
        "Fix 2, a fabric register on the memory read data (+1 cycle): 1286 / 302 / 1175, 118.3 MHz; "
        "critical path j == last-index compare (3 LUT levels) -> clock enable of the 64-bit bitmap "
        "register (3.5 ns fan-out route). Not done (fix budget): compute `last` a cycle ahead. "
        "After the fixes, a cost change (not timing): an empty row clears the one broadcast A value "
        "instead of masking 16 products: 1030 / 302 / 1171, 129.0 MHz (the final report); critical "
        "path DP16KD clock-to-output (5.8 ns) -> a LUT Yosys adds on the read data -> the read-data "
        "register beside it (7.8 ns): the block RAM itself. Next: a DP16KD instance with its output "
        "register (REGMODE OUTREG), like the MULT18X18D in hw/mac.py."),
    "match_pe": (
        "as first written: 8388 / 778 / 2368, 60.6 MHz; critical path position register -> 64:1 value "
        "mux written as Array(...)[pos] (129 LUT4 per bit after Yosys) -> DSP input (16.5 ns, 14.0 ns "
        "routing). "
        "Fix 1, the value mux as word_select (56 LUT4 per bit): 6907 / 778 / 2368, 72.1 MHz; critical "
        "path the same mux (13.9 ns, 5.4 ns route from the position register's fan-out). "
        "Fix 2, the value mux in two registered 8:1 levels (+1 cycle): 6898 / 778 / 2907, 69.4 MHz; the "
        "mux path is gone, the critical path is now the rank stage: k register (4.4 ns fan-out route "
        "to 64 comparators) -> masked 16-bit popcount -> partial-count register (14.4 ns). Not done "
        "(fix budget): per-pair prefix-rank tables (rank = a 64:1 lookup instead of a popcount per "
        "match) or a deeper popcount pipeline with duplicated k registers."),
}


def _check_int(owner: str, field: str, value, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{owner} {field} must be an integer in {low}..{high}, not {value!r}")


def _check_target(owner: str, target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"{owner} target must be one of {', '.join(map(repr, TARGETS))}, not {target!r}")


def _copies(m: Module, value, count: int, name: str) -> list[Signal]:
    """``count`` registered copies of ``value``, each driving its own share of a fan-out. They are
    declared ``keep`` so Yosys does not merge them back (``stag.synth`` keeps their flip-flops)."""
    regs = []
    for i in range(count):
        reg = Signal(value.shape(), name=f"{name}_copy{i}", attrs={"keep": 1})
        m.d.sync += reg.eq(value)
        regs.append(reg)
    return regs


def _delay(m: Module, value, cycles: int, name: str):
    """``value`` delayed by ``cycles`` registers."""
    for i in range(cycles):
        reg = Signal(value.shape(), name=f"{name}_d{i + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def _tree_sum(values: list):
    """Balanced adder tree (Amaranth widens each sum, so nothing overflows)."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def _encode(onehot: Value, width: int) -> Value:
    """Binary index of the set bit of a one-hot vector (0 if none)."""
    bits = max(1, math.ceil(math.log2(width)))
    return Cat(*(Cat(*(onehot[i] for i in range(width) if i >> j & 1)).any() for j in range(bits)))


# ----------------------------------------------------------------------------------------------------------------------
# a. Dense output-stationary MAC array


class DenseArray(wiring.Component):
    """Output-stationary dense MAC array: ``rows x cols`` PEs, each ``acc[r][c] += a[r] * b[c]``.

    Every cycle with ``valid`` a row operand vector ``a`` and a column operand vector ``b`` enter;
    they are registered at the edge of the array, each register duplicated so that one copy
    drives at most ``fanout`` multipliers. PE (r, c) multiplies its copies of ``a[r]`` and ``b[c]``
    in a :class:`~hw.mac.PipelinedMultiplier` and adds the product to its 32-bit accumulator
    (``first`` restarts the sum with this product). Latency: the operands of cycle *t* are in the
    accumulators after the edge ending cycle *t + 4* (edge register + 3 multiplier stages + the
    accumulator). Read-out: ``rd_row`` selects a row; ``rd_data`` shows its ``cols`` accumulators
    three cycles later (index register, then two registered mux levels).

    Members
    -------
    a : ``In(ArrayLayout(signed(8), rows))``; b : ``In(ArrayLayout(signed(8), cols))``
    valid, first : ``In(1)``
    rd_row : ``In(range(rows))``; rd_data : ``Out(ArrayLayout(signed(32), cols))``
    """

    def __init__(self, *, rows: int, cols: int, target: str = "ecp5", fanout: int = 4) -> None:
        _check_int("DenseArray", "rows", rows, 2, 64)
        _check_int("DenseArray", "cols", cols, 1, 64)
        _check_int("DenseArray", "fanout", fanout, 1, 64)
        _check_target("DenseArray", target)
        self.rows, self.cols, self.target, self.fanout = rows, cols, target, fanout
        super().__init__({
            "a": In(data.ArrayLayout(signed(OPERAND_BITS), rows)),
            "b": In(data.ArrayLayout(signed(OPERAND_BITS), cols)),
            "valid": In(1),
            "first": In(1),
            "rd_row": In(range(rows)),
            "rd_data": Out(data.ArrayLayout(signed(ACC_BITS), cols)),
        })

    @property
    def multipliers(self) -> int:
        return self.rows * self.cols

    def elaborate(self, platform):
        m = Module()
        rows, cols, fanout = self.rows, self.cols, self.fanout
        a_copies = [_copies(m, self.a[r], math.ceil(cols / fanout), f"a{r}") for r in range(rows)]
        b_copies = [_copies(m, self.b[c], math.ceil(rows / fanout), f"b{c}") for c in range(cols)]
        # Flags: 4 stages like the operands (edge register + multiplier latency), the last two a
        # fan-out tree: one copy per row, then one per PE, which drives only that PE's 32
        # accumulator bits. (Timing fix 2: with one copy per row driving 8 PEs spread over the
        # chip, the `first` net limited the slice to 107 MHz; see FIX_NOTES.)
        valid = _delay(m, self.valid, PipelinedMultiplier.LATENCY - 1, "valid")
        first = _delay(m, self.first, PipelinedMultiplier.LATENCY - 1, "first")
        accs = []
        for r in range(rows):
            (row_valid,) = _copies(m, valid, 1, f"valid_row{r}")
            (row_first,) = _copies(m, first, 1, f"first_row{r}")
            pe_valid = _copies(m, row_valid, cols, f"valid_row{r}_pe")
            pe_first = _copies(m, row_first, cols, f"first_row{r}_pe")
            row = []
            for c in range(cols):
                mac = PipelinedMultiplier(a_bits=OPERAND_BITS, b_bits=OPERAND_BITS, target=self.target)
                m.submodules[f"mul_{r}_{c}"] = mac
                acc = Signal(signed(ACC_BITS), name=f"acc_{r}_{c}")
                m.d.comb += [mac.a.eq(a_copies[r][c // fanout]), mac.b.eq(b_copies[c][r // fanout]),
                             mac.en.eq(1)]
                with m.If(pe_valid[c]):
                    m.d.sync += acc.eq(Mux(pe_first[c], 0, acc) + mac.product)
                row.append(acc)
            accs.append(row)
        # Read-out: a registered row index per column, then two registered 4:1 (or smaller) mux
        # levels. (Timing fix 1: a single 16:1 mux from one rd_row register spanned the array and
        # limited the slice to 72 MHz; see FIX_NOTES.)
        for c in range(cols):
            (rd_row,) = _copies(m, self.rd_row, 1, f"rd_row_col{c}")
            groups = [list(range(g, min(g + 4, rows))) for g in range(0, rows, 4)]
            picked = []
            for g, members in enumerate(groups):
                reg = Signal(signed(ACC_BITS), name=f"rd_col{c}_group{g}")
                m.d.sync += reg.eq(Array(accs[r][c] for r in members)[rd_row[:2]])
                picked.append(reg)
            high = _delay(m, rd_row[2:], 1, f"rd_row_col{c}_high")
            m.d.sync += self.rd_data[c].eq(Array(picked)[high] if len(picked) > 1 else picked[0])
        return m


# ----------------------------------------------------------------------------------------------------------------------
# b. Vector lane: one-sided skipping over a stored B tile


class VectorLane(wiring.Component):
    """One nonzero of an A row per cycle, broadcast against a stored B tile row into ``width`` MACs.

    The lane holds a B tile (``tile_k`` rows of ``width`` int8 values) in a memory written one row
    per cycle (``b_we``, ``b_addr``, ``b_data``). A rows arrive compressed: first their packed
    nonzero values, one per cycle on ``a_we``/``a_data`` (the j-th write is the j-th nonzero in
    ascending k), then the row's ``tile_k``-bit nonzero bitmap with ``row_valid`` (a write in the
    commit cycle still belongs to that row). Writes and commits are accepted while ``row_ready``.
    Values live in two banks and bitmaps in two slots (active, pending), so the next row loads
    while one computes and rows follow each other without a bubble.

    Each cycle the active row issues its lowest remaining set bit k (then cleared) with its j-th
    packed value (a counter: no popcount); B[k] is read and ``a[k] * B[k][v]`` goes into ``width``
    :class:`~hw.mac.PipelinedMultiplier` s and 32-bit accumulators. The write count of a row marks
    its last nonzero, so the bitmap's population must equal the number of values written. A row
    with an empty bitmap occupies one issue cycle and yields zeros. After the last nonzero's
    product is accumulated, ``o_valid`` is high for one cycle and ``o_data`` holds the row's
    ``width`` sums (the accumulators themselves, registered; they stay until the next row's
    first product). Latency: issue + 1 (register) + 1 (memory read) + 1 (read data register)
    + 3 (multiplier) + 1 (accumulator). Sustained rate: one nonzero per cycle. No backpressure on the output.
    """

    def __init__(self, *, width: int, tile_k: int, target: str = "ecp5") -> None:
        _check_int("VectorLane", "width", width, 1, 64)
        _check_int("VectorLane", "tile_k", tile_k, 2, 256)
        _check_target("VectorLane", target)
        self.width, self.tile_k, self.target = width, tile_k, target
        super().__init__({
            "b_we": In(1),
            "b_addr": In(range(tile_k)),
            "b_data": In(data.ArrayLayout(signed(OPERAND_BITS), width)),
            "a_we": In(1),
            "a_data": In(signed(OPERAND_BITS)),
            "row_valid": In(1),
            "row_bitmap": In(tile_k),
            "row_ready": Out(1),
            "o_valid": Out(1),
            "o_data": Out(data.ArrayLayout(signed(ACC_BITS), width)),
        })

    @property
    def multipliers(self) -> int:
        return self.width

    def elaborate(self, platform):
        m = Module()
        tile_k, width = self.tile_k, self.width

        m.submodules.b_mem = b_mem = Memory(shape=unsigned(OPERAND_BITS * width), depth=tile_k, init=[])
        b_write = b_mem.write_port()
        b_read = b_mem.read_port(transparent_for=())
        m.d.comb += [b_write.en.eq(self.b_we), b_write.addr.eq(self.b_addr), b_write.data.eq(self.b_data)]

        idx_bits = max(1, (tile_k - 1).bit_length())
        # Two banks of packed A values, addressed {bank, j}.
        m.submodules.a_mem = a_mem = Memory(shape=signed(OPERAND_BITS), depth=2 << idx_bits, init=[])
        a_write = a_mem.write_port()
        a_read = a_mem.read_port(transparent_for=())

        # Loading: the bank being filled and its write count.
        load_bank = Signal()
        load_count = Signal(range(tile_k + 1))
        pend_valid = Signal()
        m.d.comb += self.row_ready.eq(~pend_valid)
        a_we = Signal()
        commit = Signal()
        count = Signal(range(tile_k + 2))
        m.d.comb += [
            a_we.eq(self.a_we & self.row_ready),
            commit.eq(self.row_valid & self.row_ready),
            count.eq(load_count + a_we),
            a_write.en.eq(a_we),
            a_write.addr.eq(Cat(load_count[:idx_bits], load_bank)),
            a_write.data.eq(self.a_data),
        ]
        with m.If(commit):
            m.d.sync += [load_count.eq(0), load_bank.eq(~load_bank)]
        with m.Elif(a_we):
            m.d.sync += load_count.eq(load_count + 1)

        # Row slots: a committed row is (bitmap, index of its last value, empty, bank).
        idx = range(tile_k)
        act_valid, act_rem = Signal(), Signal(tile_k)
        act_last, act_empty, act_bank = Signal(idx), Signal(), Signal()
        pend_rem, pend_last, pend_empty, pend_bank = Signal(tile_k), Signal(idx), Signal(), Signal()
        new_last, new_empty = Signal(idx), Signal()
        m.d.comb += [new_last.eq(count - 1), new_empty.eq(count == 0)]
        j = Signal(idx)

        # Issue: lowest remaining set bit. rem - 1 serves both the one-hot lowest bit and the
        # cleared remainder (one carry chain). The one-hot is registered and encoded to k in the
        # next stage, right into the memory's address register. (Timing fix: encoding k in the
        # issue cycle put a 4-level OR tree after the 64-bit carry chain: 99.6 MHz; see FIX_NOTES.)
        rem_minus_1 = Signal(tile_k)
        lowest = Signal(tile_k)
        m.d.comb += [rem_minus_1.eq(act_rem - 1), lowest.eq(act_rem & ~rem_minus_1)]
        last = Signal()
        m.d.comb += last.eq(act_empty | (j == act_last))
        issue = act_valid
        done = issue & last

        i_valid, i_first, i_last, i_empty = Signal(), Signal(), Signal(), Signal()
        i_lowest = Signal(tile_k)
        i_addr = Signal(idx_bits + 1)
        m.d.sync += [i_valid.eq(issue), i_first.eq(j == 0), i_last.eq(last), i_empty.eq(act_empty),
                     i_lowest.eq(lowest), i_addr.eq(Cat(j[:idx_bits], act_bank))]

        with m.If(~act_valid | done):
            m.d.sync += j.eq(0)
            with m.If(pend_valid):
                m.d.sync += [act_valid.eq(1), act_rem.eq(pend_rem), act_last.eq(pend_last),
                             act_empty.eq(pend_empty), act_bank.eq(pend_bank)]
                m.d.sync += pend_valid.eq(0)  # commit is impossible here: row_ready is low
            with m.Elif(commit):
                m.d.sync += [act_valid.eq(1), act_rem.eq(self.row_bitmap), act_last.eq(new_last),
                             act_empty.eq(new_empty), act_bank.eq(load_bank)]
            with m.Else():
                m.d.sync += act_valid.eq(0)
        with m.Else():
            m.d.sync += [act_rem.eq(act_rem & rem_minus_1), j.eq(j + 1)]
            with m.If(commit):
                m.d.sync += [pend_valid.eq(1), pend_rem.eq(self.row_bitmap), pend_last.eq(new_last),
                             pend_empty.eq(new_empty), pend_bank.eq(load_bank)]

        # Memory read (registered addresses above; data one cycle later), then a fabric register
        # on the read data. (Timing fix 2: the DP16KD has no output register in Yosys' mapping,
        # and its 5.6 ns clock-to-output plus the route to the DSPs limited the lane to 94.6 MHz;
        # see FIX_NOTES.)
        m.d.comb += [b_read.addr.eq(_encode(i_lowest, tile_k)), a_read.addr.eq(i_addr)]
        b_data = _delay(m, b_read.data, 1, "b_read_q")
        # An empty row's token multiplies 0: its broadcast A value is cleared here, once, instead
        # of masking each of the `width` products.
        m_empty = _delay(m, i_empty, 1, "m_empty")
        a_data = Signal(signed(OPERAND_BITS), name="a_read_q")
        m.d.sync += a_data.eq(Mux(m_empty, 0, a_read.data))
        r_valid, r_first, r_last = (_delay(m, s, 2, n) for s, n in (
            (i_valid, "r_valid"), (i_first, "r_first"), (i_last, "r_last")))

        # Multipliers (their input registers take the memory outputs), then accumulate.
        lat = PipelinedMultiplier.LATENCY
        p_valid, p_first, p_last = (_delay(m, s, lat, n) for s, n in (
            (r_valid, "p_valid"), (r_first, "p_first"), (r_last, "p_last")))
        b_row = data.View(data.ArrayLayout(signed(OPERAND_BITS), width), b_data)
        for v in range(width):
            mac = PipelinedMultiplier(a_bits=OPERAND_BITS, b_bits=OPERAND_BITS, target=self.target)
            m.submodules[f"mul_{v}"] = mac
            m.d.comb += [mac.a.eq(a_data), mac.b.eq(b_row[v]), mac.en.eq(1)]
            with m.If(p_valid):
                m.d.sync += self.o_data[v].eq(Mux(p_first, 0, self.o_data[v]) + mac.product)
        m.d.sync += self.o_valid.eq(p_valid & p_last)
        return m


# ----------------------------------------------------------------------------------------------------------------------
# c. SparTen-style two-sided match PE


def _prefix_ranks(m: Module, bits: Signal, width: int, name: str) -> tuple[list[Signal], Signal]:
    """Exclusive prefix popcounts ``rank[i] = popcount(bits[0:i])`` and the total, pipelined over
    three register stages (nibble counts; prefix within groups of 4 nibbles; group prefix and
    combination). ``width`` must be a multiple of 4."""
    rank_bits = width.bit_length()
    nibbles = width // 4
    # Stage 1: per nibble, the count below each of its bits and its total.
    local = [Signal(range(4), name=f"{name}_local{i}") for i in range(width)]
    nib_total = [Signal(range(5), name=f"{name}_nib{n}") for n in range(nibbles)]
    for n in range(nibbles):
        b = [bits[4 * n + i] for i in range(4)]
        m.d.sync += [local[4 * n].eq(0), local[4 * n + 1].eq(b[0]), local[4 * n + 2].eq(b[0] + b[1]),
                     local[4 * n + 3].eq(b[0] + b[1] + b[2]), nib_total[n].eq(b[0] + b[1] + b[2] + b[3])]
    local_2 = [_delay(m, s, 1, s.name) for s in local]  # stage 2 copy, for stage 3
    # Stage 2: exclusive prefix of the nibble totals within each group of 4, and group totals.
    groups = math.ceil(nibbles / 4)
    in_group = [Signal(range(13), name=f"{name}_ingroup{n}") for n in range(nibbles)]
    group_total = [Signal(range(17), name=f"{name}_group{g}") for g in range(groups)]
    for g in range(groups):
        members = list(range(4 * g, min(4 * g + 4, nibbles)))
        running = Const(0, 1)
        for n in members:
            m.d.sync += in_group[n].eq(running)
            running = running + nib_total[n]
        m.d.sync += group_total[g].eq(running)
    # Stage 3: group prefix + in-group prefix + local count.
    ranks = [Signal(range(width + 1), name=f"{name}_rank{i}") for i in range(width)]
    total = Signal(range(width + 1), name=f"{name}_total")
    group_pre, running = [], Const(0, 1)
    for g in range(groups):
        group_pre.append(running)
        running = running + group_total[g]
    m.d.sync += total.eq(running)
    for i in range(width):
        n = i // 4
        m.d.sync += ranks[i].eq((group_pre[n // 4] + in_group[n] + local_2[i])[:rank_bits])
    return ranks, total


class MatchPE(wiring.Component):
    """Two-sided sparse dot product (SparTen-style): ``matches`` effectual pairs per cycle.

    ``load`` (accepted while ``ready``) takes one A row and one B column of ``tile_k`` int8
    values, each as a bitmap and its packed nonzero values (value j = the j-th set bit), into
    registers. The PE ANDs the bitmaps and ranks the AND's set bits (exclusive prefix popcount,
    pipelined over three stages). Then each cycle it issues the ``matches`` lowest remaining set
    bits k_g (those of rank c * G + g at issue cycle c), finds each one's packed position in A and
    in B by the prefix popcount of that bitmap below k_g (the rank), muxes the value pairs into G
    :class:`~hw.mac.PipelinedMultiplier` s and adds the G products (adder tree) into one 32-bit
    accumulator. When the AND bitmap is exhausted (an empty AND takes one issue cycle), ``o_valid``
    is high for one cycle with the sum on ``o_sum`` (the registered accumulator). ``ready`` returns
    when the last values have been read, so the next pair loads while the products drain.
    Pipeline: load register, AND, 3 ranking stages, then per issue cycle: the k_g registers, the
    rank popcount (2 stages), the value mux (2 registered levels, the second into the
    multipliers' input registers), the multipliers (3), the adder tree (1) and the accumulator (1).
    The ranking is not overlapped with the previous pair's issue (5 idle cycles per pair).
    """

    def __init__(self, *, matches: int, tile_k: int, target: str = "ecp5") -> None:
        if matches not in (1, 2, 4, 8):
            raise ValueError(f"MatchPE matches must be one of 1, 2, 4, 8 (a power of two: ranks split "
                             f"into issue cycle and slot by their bits), not {matches!r}")
        if not isinstance(tile_k, int) or isinstance(tile_k, bool) or not 8 <= tile_k <= 256 or tile_k % 4:
            raise ValueError(f"MatchPE tile_k must be a multiple of 4 in 8..256, not {tile_k!r}")
        _check_target("MatchPE", target)
        self.matches, self.tile_k, self.target = matches, tile_k, target
        values = data.ArrayLayout(signed(OPERAND_BITS), tile_k)
        super().__init__({
            "load": In(1),
            "ready": Out(1),
            "a_bitmap": In(tile_k),
            "a_values": In(values),
            "b_bitmap": In(tile_k),
            "b_values": In(values),
            "o_valid": Out(1),
            "o_sum": Out(signed(ACC_BITS)),
        })

    @property
    def multipliers(self) -> int:
        return self.matches

    def elaborate(self, platform):
        m = Module()
        tile_k, matches = self.tile_k, self.matches
        idx_bits = max(1, (tile_k - 1).bit_length())
        slot_bits = (matches - 1).bit_length()
        values = data.ArrayLayout(signed(OPERAND_BITS), tile_k)

        a_bm, b_bm = Signal(tile_k), Signal(tile_k)
        a_vals, b_vals = Signal(values), Signal(values)
        busy = Signal()
        m.d.comb += self.ready.eq(~busy)
        start = Signal()
        m.d.comb += start.eq(self.load & ~busy)
        with m.If(start):
            m.d.sync += [a_bm.eq(self.a_bitmap), b_bm.eq(self.b_bitmap), a_vals.eq(self.a_values),
                         b_vals.eq(self.b_values), busy.eq(1)]

        # Ranking of the AND bitmap: 1 + 3 cycles after the load.
        and_bm = Signal(tile_k)
        m.d.sync += and_bm.eq(a_bm & b_bm)
        ranks, total = _prefix_ranks(m, and_bm, tile_k, "and")
        and_held = _delay(m, and_bm, 3, "and_bm")
        ranked = _delay(m, start, 4, "ranked")  # ranks and total of the new pair are ready

        # Issue: cycle c takes the set bits of rank c*G .. c*G+G-1.
        issuing = Signal()
        c = Signal(range(tile_k + 1))
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_slot_valid = Signal(matches)
        s1_k = [Signal(idx_bits, name=f"s1_k{g}") for g in range(matches)]
        base = Signal(range(tile_k + matches + 1))
        m.d.comb += base.eq(c * matches)
        last = Signal()
        m.d.comb += last.eq(base + matches >= total)
        with m.If(ranked):
            m.d.sync += [issuing.eq(1), c.eq(0)]
        with m.Elif(issuing):
            m.d.sync += c.eq(c + 1)
            with m.If(last):
                m.d.sync += issuing.eq(0)
        m.d.sync += [s1_valid.eq(issuing), s1_first.eq(c == 0), s1_last.eq(last)]
        hit = Signal(tile_k)  # set bits whose rank lies in this cycle's window
        m.d.comb += hit.eq(Cat(*(and_held[i] & (ranks[i] >> slot_bits == c) for i in range(tile_k))))
        for g in range(matches):
            onehot = Cat(*(hit[i] & (ranks[i][:slot_bits] == g) if slot_bits else hit[i] for i in range(tile_k)))
            m.d.sync += [s1_k[g].eq(_encode(onehot, tile_k)), s1_slot_valid[g].eq(base + g < total)]

        # Packed positions: popcount of each bitmap below k_g, over two stages.
        def below(bm, kk):
            return [bm[i] & (kk > i) for i in range(tile_k)]

        s2_valid, s2_first, s2_last = (_delay(m, s, 1, n) for s, n in (
            (s1_valid, "s2_valid"), (s1_first, "s2_first"), (s1_last, "s2_last")))
        s2_slot_valid = _delay(m, s1_slot_valid, 1, "s2_slot_valid")
        s3_valid, s3_first, s3_last = (_delay(m, s, 1, n) for s, n in (
            (s2_valid, "s3_valid"), (s2_first, "s3_first"), (s2_last, "s3_last")))
        s3_slot_valid = _delay(m, s2_slot_valid, 1, "s3_slot_valid")
        positions = []
        for g in range(matches):
            pos = []
            for side, bm in (("a", a_bm), ("b", b_bm)):
                bits = below(bm, s1_k[g])
                partials = []
                for p in range(0, tile_k, 16):
                    part = Signal(range(17), name=f"s2_{side}{g}_part{p // 16}")
                    m.d.sync += part.eq(_tree_sum(bits[p:p + 16]))
                    partials.append(part)
                position = Signal(range(tile_k + 1), name=f"s3_{side}{g}_pos")
                m.d.sync += position.eq(_tree_sum(partials))
                pos.append(position)
            positions.append(pos)
        # The last values of the pair are read in stage 3: then the next pair may load.
        with m.If(s3_valid & s3_last):
            m.d.sync += busy.eq(0)

        # Value muxes in two registered levels (8:1 within groups of 8 values, then 8:1 across
        # the groups; timing fix 2, see FIX_NOTES), then the multipliers' input registers. An
        # empty slot's A value is cleared at the first level (a synchronous reset of its register).
        group = 8 if tile_k % 8 == 0 else 4
        low_bits = (group - 1).bit_length()
        products = []
        s4_valid, s4_first, s4_last = (_delay(m, s, 1, n) for s, n in (
            (s3_valid, "s4_valid"), (s3_first, "s4_first"), (s3_last, "s4_last")))
        for g in range(matches):
            mac = PipelinedMultiplier(a_bits=OPERAND_BITS, b_bits=OPERAND_BITS, target=self.target)
            m.submodules[f"mul_{g}"] = mac
            operands = []
            for side, vals, position in (("a", a_vals, positions[g][0]), ("b", b_vals, positions[g][1])):
                flat = vals.as_value()
                # word_select, not Array(...)[pos]: Yosys maps the shift to a mux tree of 56 LUT4 per
                # bit for 64:1, but the Array's case statement to 129 (timing fix 1, see FIX_NOTES).
                parts = []
                for q in range(tile_k // group):
                    part = Signal(OPERAND_BITS, name=f"s4_{side}{g}_group{q}")
                    words = flat[q * group * OPERAND_BITS:(q + 1) * group * OPERAND_BITS]
                    picked = words.word_select(position[:low_bits], OPERAND_BITS)
                    m.d.sync += part.eq(Mux(s3_slot_valid[g], picked, 0) if side == "a" else picked)
                    parts.append(part)
                high = _delay(m, position[low_bits:idx_bits], 1, f"s4_{side}{g}_high")
                operands.append(Cat(*parts).word_select(high, OPERAND_BITS).as_signed())
            m.d.comb += [mac.a.eq(operands[0]), mac.b.eq(operands[1]), mac.en.eq(1)]
            products.append(mac.product)
        lat = PipelinedMultiplier.LATENCY
        p_valid, p_first, p_last = (_delay(m, s, lat, n) for s, n in (
            (s4_valid, "p_valid"), (s4_first, "p_first"), (s4_last, "p_last")))
        tree = Signal(signed(2 * OPERAND_BITS + slot_bits), name="product_sum")
        m.d.sync += tree.eq(_tree_sum(products))
        t_valid, t_first, t_last = (_delay(m, s, 1, n) for s, n in (
            (p_valid, "t_valid"), (p_first, "t_first"), (p_last, "t_last")))
        with m.If(t_valid):
            m.d.sync += self.o_sum.eq(Mux(t_first, 0, self.o_sum) + tree)
        m.d.sync += self.o_valid.eq(t_valid & t_last)
        return m


# ----------------------------------------------------------------------------------------------------------------------
# Driver

#: name -> (constructor, measured parameters).
SLICES = {
    "dense_array": (DenseArray, {"rows": 16, "cols": 8}),
    "vector_lane": (VectorLane, {"width": 16, "tile_k": 64}),
    "match_pe": (MatchPE, {"matches": 4, "tile_k": 64}),
}


def build_slice(name: str, *, target: str = "ecp5", **overrides) -> wiring.Component:
    """The slice ``name`` at its measured parameters (``overrides`` replace some)."""
    if name not in SLICES:
        raise ValueError(f"slice must be one of {', '.join(SLICES)}, not {name!r}")
    cls, params = SLICES[name]
    return cls(**{**params, **overrides}, target=target)


def run_slice(name: str, *, place_and_route: bool = True, frequency_mhz: float = 200.0, seed: int = 1,
              pnr_timeout_s: float | None = None) -> dict:
    """Convert, synthesize and (optionally) route one slice; returns and writes its JSON report."""
    component = build_slice(name)
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    top = f"slice_{name}"
    started = time.perf_counter()
    source = work / f"{top}.v"
    source.write_text(verilog.convert(component, name=top, emit_src=False), encoding="utf-8")
    convert_seconds = time.perf_counter() - started
    report = synthesize_verilog([source], top, work / "synth", place_and_route=place_and_route,
                                frequency_mhz=frequency_mhz, seed=seed, pnr_timeout_s=pnr_timeout_s,
                                design_name=name)
    multipliers = component.multipliers
    result = {
        "slice": name,
        "parameters": SLICES[name][1],
        "operand_bits": OPERAND_BITS,
        "acc_bits": ACC_BITS,
        "multipliers": multipliers,
        "lut4": report.lut4,
        "ccu2c": report.carry,
        "carry": report.carry,  # the same count under SynthReport's name, for readers of those reports
        "ff": report.ff,
        "dsp": report.dsp,
        "bram": report.bram,
        "fmax_mhz": report.fmax_mhz,
        "requested_mhz": frequency_mhz if place_and_route else None,
        "lut4_per_mac": round((report.lut4 + 2 * report.carry) / multipliers, 1),
        "ff_per_mac": round(report.ff / multipliers, 1),
        "convert_seconds": round(convert_seconds, 1),
        "synth_seconds": round(report.synth_seconds, 1),
        "pnr_seconds": None if report.pnr_seconds is None else round(report.pnr_seconds, 1),
        "routed": report.routed,
        "pnr_note": report.pnr_note,
        "flow": report.flow,
        "synth_note": report.synth_note,
        "seed": seed,
        "device": report.device,
        "cells": report.cells,
        "verilog_sha256": report.verilog_sha256,
        "timing_fixes": FIX_NOTES.get(name, ""),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _line(result: dict) -> str:
    fmax = "-" if result["fmax_mhz"] is None else f"{result['fmax_mhz']:.1f}"
    pnr = "-" if result["pnr_seconds"] is None else f"{result['pnr_seconds']:.0f}"
    return (f"{result['slice']:<12} {result['multipliers']:>5} {result['lut4']:>6} {result['ccu2c']:>6} "
            f"{result['ff']:>6} {result['dsp']:>4} {result['bram']:>5} {fmax:>7} {result['lut4_per_mac']:>8} "
            f"{result['synth_seconds']:>6.0f} {pnr:>6}  {result['flow']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(SLICES), help="run one slice")
    parser.add_argument("--no-pnr", action="store_true", help="cell counts only, skip place and route")
    parser.add_argument("--freq", type=float, default=200.0, metavar="MHZ", help="nextpnr target (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr seed (default 1)")
    parser.add_argument("--pnr-timeout", type=float, default=None, metavar="MIN",
                        help="stop place-and-route after MIN minutes (default: no limit)")
    args = parser.parse_args(argv)
    names = [args.only] if args.only else list(SLICES)
    print(f"{'slice':<12} {'MACs':>5} {'LUT4':>6} {'CCU2C':>6} {'FF':>6} {'DSP':>4} {'BRAM':>5} {'Fmax':>7} "
          f"{'LUT/MAC':>8} {'syn s':>6} {'pnr s':>6}  flow", flush=True)
    for name in names:  # one at a time: place and route is single-threaded and slow
        result = run_slice(name, place_and_route=not args.no_pnr, frequency_mhz=args.freq, seed=args.seed,
                           pnr_timeout_s=None if args.pnr_timeout is None else 60.0 * args.pnr_timeout)
        print(_line(result), flush=True)
    print(f"reports in {RESULTS.relative_to(ROOT)}/, logs in {WORK.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
