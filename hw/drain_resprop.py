"""ReSprop's sparse difference on the core's result path (Goli & Aamodt on drained gradients).

A ``resprop`` DRAIN (``ref.contract.Drain(resprop=True)``) turns every drained code ``g`` (the
layer's output gradient dY, as the next layer's BWI drains it) into ``S = D`` where ``|D| > T``,
``D = g - P``, else 0 (``S = g`` on a dense pass), with ``S != 0`` as its mask bit, and stores the
codes of one sample as the next pass's P. ``ref.contract.evaluate.resprop_tile`` is the definition.

P memory: two banks (ping-pong) of ``words`` words, each word the ``lanes`` codes of one drain
beat. Element ``(r, c)`` of P (output row ``r`` of a sample, column ``c``) is code ``c mod lanes``
of word ``r * row_words + c div lanes``, ``row_words`` the P words of one output row (the output
columns padded to whole tiles, ``ceil(C / tile_n) * tile_n / lanes``). A pass reads the *read*
bank and writes sample ``j``'s codes into the other; ``load`` swaps them if the last pass stored
(so every sample of a pass sees the previous P, as ``ref.resprop_codes``).

Timing, in the core's drain pipeline (``step``: the pipeline moves; ``issue``: a beat's bank read
is issued this cycle): the P word is read with the accumulator banks, carried down three
registers beside the value (read register, the requantizer's two) and meets the rounded value in
the cycle the requantizer's second register shows it; the beat's bookkeeping goes on to the cycle
the requantizer shows the code (one more register behind requantizers of latency 3,
``requantizer_latency``, where the difference registers its result beside their decision
register). ``o_values`` / ``o_mask`` are combinational from there into the core's output
register, so a resprop drain takes the same cycles as any drain. The difference is not formed after the
saturation (that put two carry chains in series on the clock path): ``hw.saturated_difference``
decides the saturated cases a cycle early and selects among the three cases with the
requantizer's own saturation decisions. ``emit`` (the beat enters the output register) writes
the stored codes and counts the nonzeros; the counts and the controller's next exponent
(``o_exp_next``, ReSprop's x2 / /2 step) settle one cycle later.

Host port: ``p_addr`` is an element address ``r * row_words * lanes + c`` in the read bank;
``p_we`` writes ``p_wdata`` there; ``p_rdata`` shows the element one cycle after ``p_addr`` is set.
Only while no drain runs (``draining`` low): a host saves and restores P between layers with it.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.bits import popcount
from hw.resprop import EXP_BITS, PERCENT_SCALE, TARGET_BITS, adapt_exponent_logic, effective_threshold_logic
from hw.saturated_difference import SaturatedDifference

__all__ = ["DrainReSprop"]


class DrainReSprop(wiring.Component):
    """The result path's ReSprop difference, P storage, nonzero count and threshold controller.

    Parameters
    ----------
    lanes : int            codes per drain beat (a power of two)
    tile_n : int           columns of an output tile (a multiple of ``lanes``)
    operand_bits : int     width of the stored P codes and of the threshold
    acc_bits : int         width of the drained values (``o_values`` too)
    words : int            words per P bank (a power of two)
    sample_bits : int      width of a sample index or batch size
    nnz_bits : int         width of the nonzero count
    requantizer_latency : int
        ``en`` cycles of the requantizers whose outputs arrive on ``i_codes`` (2, or 3 with their
        ``decision_register``): the beat's bookkeeping is carried that far

    Members
    -------
    load : In(1)
        Begin a pass: take the threshold ``i_mant * 2**i_exp`` (its floor T, clamped to
        ``2**operand_bits - 1``, is what the pass compares with), ``i_target`` (the controller's
        target in hundredths of a percent), ``i_rows`` (R >= 1, output rows per sample),
        ``i_cols`` (C >= 1), ``i_row_words``, ``i_samples`` (N), ``i_sample`` (j; >= N stores
        none) and ``i_dense``; swap the banks if the last pass stored; clear the counts.
    start : In(1), i_word, i_row, i_col : In(word_bits), i_sample0 : In(sample_bits)
        A drain starts (its command's ``rs_*`` fields): its first element is P word ``i_word``,
        row ``i_row`` of sample ``i_sample0``, column tile ``i_col``.
    draining, step, issue, emit : In(1)
        The core's drain state: a drain runs; the drain pipeline moves; a beat is read (with
        ``step``); a resprop beat enters the output register (with ``step``).
    i_codes : In(ArrayLayout(signed(acc_bits), lanes))   the requantized codes ``g`` of the beat
    i_out_bits : In(ArrayLayout(6, lanes))
        the drain's ``out_bits``, one copy per lane (a core spread over the chip gives each group
        of lanes a copy of its own); held for the whole drain, from a cycle before the first beat
        reaches the requantizers' second register
    i_rounded : In(ArrayLayout(signed(operand_bits + 2), lanes)), i_nonzero, i_above, i_below : In(lanes)
        the requantizers' ``o_rounded``, ``o_above`` and ``o_below`` (from their second register)
        and ``o_nonzero`` (with their code) for the beat,
        from which the difference is decided beside the saturation
    o_values : Out(ArrayLayout(signed(acc_bits), lanes)) ``S``, sign-extended
    o_mask : Out(lanes)                                   ``S != 0`` (0 on tile padding)
    o_nnz : Out(nnz_bits)   nonzero S since ``load``; final one cycle after the last beat left
    o_exp_next : Out(signed(EXP_BITS))
        The exponent after ReSprop's x2 / /2 step for the counts so far (``i_exp`` on a dense
        pass): ``-1`` if ``10000 * nnz < target * n``, ``+1`` if ``>``, saturating (``n``: the
        pass's elements, tile padding excluded); final with ``o_nnz``
    p_addr, p_wdata, p_we, p_rdata : the host port (module docstring)
    """

    def __init__(self, *, lanes: int, tile_n: int, operand_bits: int, acc_bits: int, words: int,
                 sample_bits: int, nnz_bits: int, requantizer_latency: int = 2) -> None:
        assert lanes & (lanes - 1) == 0 and tile_n % lanes == 0 and words & (words - 1) == 0
        assert requantizer_latency in (2, 3)
        self._latency = requantizer_latency
        self._lanes, self._tile_n, self._bits, self._acc_bits = lanes, tile_n, operand_bits, acc_bits
        self._words = words
        word_bits = max(1, (words - 1).bit_length())
        self._word_bits = word_bits
        elem_bits = max(1, (words * lanes - 1).bit_length())
        super().__init__({
            "load": In(1),
            "i_mant": In(operand_bits),
            "i_exp": In(signed(EXP_BITS)),
            "i_target": In(TARGET_BITS),
            "i_rows": In(range(words + 1)),
            "i_cols": In(range(words * lanes + 1)),
            "i_row_words": In(range(words + 1)),
            "i_samples": In(sample_bits),
            "i_sample": In(sample_bits),
            "i_dense": In(1),
            "start": In(1),
            "i_word": In(word_bits),
            "i_row": In(word_bits),
            "i_col": In(word_bits),
            "i_sample0": In(sample_bits),
            "draining": In(1),
            "step": In(1),
            "issue": In(1),
            "emit": In(1),
            "i_codes": In(data.ArrayLayout(signed(acc_bits), lanes)),
            "i_out_bits": In(data.ArrayLayout(6, lanes)),
            "i_rounded": In(data.ArrayLayout(signed(operand_bits + 2), lanes)),
            "i_nonzero": In(lanes),
            "i_above": In(lanes),
            "i_below": In(lanes),
            "o_values": Out(data.ArrayLayout(signed(acc_bits), lanes)),
            "o_mask": Out(lanes),
            "o_nnz": Out(nnz_bits),
            "o_exp_next": Out(signed(EXP_BITS)),
            "p_addr": In(elem_bits),
            "p_wdata": In(operand_bits),
            "p_we": In(1),
            "p_rdata": Out(operand_bits),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, tn, ob, words = self._lanes, self._tile_n, self._bits, self._words
        groups = tn // lanes
        lane_bits = (lanes - 1).bit_length()
        wb = self._word_bits

        # ---- pass settings (taken at load) ------------------------------------------------------
        thr = Signal(ob)
        exp = Signal(signed(EXP_BITS))
        target = Signal(TARGET_BITS)
        rows_m1 = Signal(range(words))
        cols = Signal.like(self.i_cols)
        row_words = Signal.like(self.i_row_words)
        samples = Signal.like(self.i_samples)
        sample = Signal.like(self.i_sample)
        dense = Signal()
        read_bank = Signal()
        stored = Signal()       # the running pass wrote a sample: swap at the next load
        with m.If(self.load):
            m.d.sync += [thr.eq(effective_threshold_logic(m, self.i_mant, self.i_exp, ob)), exp.eq(self.i_exp),
                         target.eq(self.i_target), rows_m1.eq(self.i_rows - 1), cols.eq(self.i_cols),
                         row_words.eq(self.i_row_words), samples.eq(self.i_samples),
                         sample.eq(self.i_sample), dense.eq(self.i_dense), stored.eq(0),
                         read_bank.eq(read_bank ^ stored)]

        # ---- P memory -----------------------------------------------------------------------------
        m.submodules.p_mem = p_mem = Memory(shape=unsigned(lanes * ob), depth=2 * words, init=[])
        rd = p_mem.read_port()
        wr = p_mem.write_port(granularity=ob)

        # ---- walker: where the next issued beat sits in P ---------------------------------------
        prow = Signal(range(words))
        smp = Signal(self.i_samples.shape())
        row_addr = Signal(wb + 1)          # word of the beat's row at group 0 (one guard bit)
        col_word = Signal(wb + 1)          # word offset of the tile's column, for a sample's row 0
        cols_left = Signal(signed(len(cols) + 1))   # output columns from the tile's first one on
        # The beat's column group within its row (none when a beat is a whole row: the vector core).
        group = Signal(range(groups)) if groups > 1 else Const(0, 1)
        with m.If(self.start):
            m.d.sync += [prow.eq(self.i_row), smp.eq(self.i_sample0), row_addr.eq(self.i_word),
                         col_word.eq(self.i_col * groups), cols_left.eq(cols - self.i_col * tn)]
            if groups > 1:
                m.d.sync += group.eq(0)
        with m.Elif(self.issue):
            with m.If(group == groups - 1):
                if groups > 1:
                    m.d.sync += group.eq(0)
                with m.If(prow == rows_m1):
                    m.d.sync += [prow.eq(0), row_addr.eq(col_word)]
                    # Padding rows past the batch stay at sample N: counting on, `smp` (as wide as
                    # N) wrapped back into the batch, e.g. at N = resprop_max_batch = 1 or with
                    # tile_m - 1 padding rows past N = 4 in 3 bits (issue 19).
                    with m.If(smp != samples):
                        m.d.sync += smp.eq(smp + 1)
                with m.Else():
                    m.d.sync += [prow.eq(prow + 1), row_addr.eq(row_addr + row_words)]
            if groups > 1:
                with m.Else():
                    m.d.sync += group.eq(group + 1)

        # Per beat, carried down the pipeline beside the value: its P word, whether its row belongs
        # to the batch (padding rows past N*R do not), whether it is sample j's, and how many of its
        # lanes are columns of the output (the rest is tile padding).
        meta_layout = data.StructLayout({
            "word": wb, "row_ok": 1, "store": 1, "lanes_ok": range(lanes + 1)})
        meta_issue = Signal(meta_layout)
        beat_cols = Signal(signed(len(cols_left) + 1))
        m.d.comb += [
            meta_issue.word.eq(row_addr + group),
            meta_issue.row_ok.eq(smp < samples),
            meta_issue.store.eq((smp == sample) & (smp < samples)),
            beat_cols.eq(cols_left - group * lanes),
            meta_issue.lanes_ok.eq(Mux(beat_cols < 0, 0, Mux(beat_cols > lanes, lanes, beat_cols))),
        ]
        # meta: read register, held (the requantizer's input), then one per requantizer register;
        # P: held, then the requantizer's first register (the difference registers it beside the
        # second; behind a decision register, the difference's own output register follows).
        metas = [Signal(meta_layout, name=f"meta_{i}") for i in range(self._latency + 2)]
        ps = [Signal(lanes * ob, name=f"p_{i}") for i in range(2)]
        with m.If(self.step):
            m.d.sync += [dst.eq(src) for dst, src in zip(metas, [meta_issue, *metas[:-1]], strict=True)]
            m.d.sync += [dst.eq(src) for dst, src in zip(ps, [rd.data, *ps[:-1]], strict=True)]
        meta_quant = metas[-1]       # the beat the requantizers show
        p_round = ps[-1]             # the P of the beat entering their second register

        # ---- read port: the drain's P words, or the host's element -------------------------------
        host_word = self.p_addr[lane_bits:lane_bits + wb] if wb else Const(0)
        host_lane = Signal(max(1, lane_bits))
        m.d.sync += host_lane.eq(self.p_addr[:lane_bits] if lane_bits else 0)
        with m.If(self.draining):
            m.d.comb += [rd.addr.eq(Cat(meta_issue.word, read_bank)), rd.en.eq(self.step)]
        with m.Else():
            m.d.comb += [rd.addr.eq(Cat(host_word, read_bank)), rd.en.eq(1)]
        m.d.comb += self.p_rdata.eq(rd.data.word_select(host_lane, ob) if lane_bits else rd.data)

        # ---- the difference, per lane -------------------------------------------------------------
        # Decided beside the requantizer's saturation (hw.saturated_difference): P and T enter it as
        # the beat moves into the requantizer's second register, its rounded value and saturation
        # decisions a cycle later. Behind a decision register (latency 3) the difference registers
        # its result with it, so its compares and selects do not share a clock period with the
        # output beat's mask and value selects.
        codes_ob = []
        for e in range(lanes):
            code = Signal(signed(ob + 1), name=f"code{e}")   # |g| < 2**(ob-1): out_bits <= operand_bits
            m.submodules[f"difference{e}"] = diff = SaturatedDifference(ob, output_register=self._latency == 3)
            mask = Signal(name=f"mask{e}")
            m.d.comb += [
                code.eq(self.i_codes[e]),
                diff.en.eq(self.step),
                diff.i_p.eq(p_round[e * ob:(e + 1) * ob]),
                diff.i_thr.eq(thr),
                diff.i_out_bits.eq(self.i_out_bits[e]),
                diff.i_rounded.eq(self.i_rounded[e]),
                diff.i_above.eq(self.i_above[e]),
                diff.i_below.eq(self.i_below[e]),
                mask.eq(meta_quant.row_ok & (meta_quant.lanes_ok > e) &
                        Mux(dense, self.i_nonzero[e], diff.o_keep)),
                self.o_mask[e].eq(mask),
                self.o_values[e].eq(Mux(mask, Mux(dense, code, diff.o_diff), 0)),
            ]
            codes_ob.append(code[:ob])

        # ---- write port: sample j's codes at emit, or the host's element ---------------------------
        storing = self.emit & meta_quant.store
        with m.If(storing):
            m.d.comb += [wr.addr.eq(Cat(meta_quant.word, ~read_bank)), wr.data.eq(Cat(*codes_ob)),
                         wr.en.eq((1 << lanes) - 1)]
            m.d.sync += stored.eq(1)
        with m.Elif(self.p_we & ~self.draining):
            m.d.comb += [wr.addr.eq(Cat(host_word, read_bank)), wr.data.eq(Cat(*[self.p_wdata] * lanes)),
                         wr.en.eq(Const(1, lanes) << (self.p_addr[:lane_bits] if lane_bits else 0))]

        # ---- counts: the emitted mask bits, added a cycle later (off the result path) -------------
        # The controller's decision is the sign of 10000 * nnz - target * n, summed per element as
        # 10000 - target (a nonzero S) or -target (a zero one; tile padding adds nothing). The two
        # terms are registered at load, so the sum needs adders only, no multiplier. Each element's
        # term is chosen at emit into a register of its own, so the cycle after holds only the
        # adder tree and the accumulation: choosing the terms from a registered mask in that cycle
        # too put a 6.9 ns net from the mask's register to the tree on the 4-lane vector core's
        # critical path (53.2 MHz, docs/design_study.md).
        counted = Signal(lanes)
        m.d.sync += counted.eq(Mux(self.emit, self.o_mask, 0))
        term_bits = TARGET_BITS + 2
        hit = Signal(signed(term_bits))
        miss = Signal(signed(term_bits))
        with m.If(self.load):
            m.d.sync += [hit.eq(PERCENT_SCALE - self.i_target), miss.eq(-self.i_target)]
        diff_mag = ((1 << TARGET_BITS) - 1) * words * lanes * (1 << len(self.i_samples))
        diff = Signal(signed(diff_mag.bit_length() + 1))
        terms = [Signal(signed(term_bits), name=f"count_term{e}") for e in range(lanes)]
        for e, term in enumerate(terms):
            counts = self.emit & meta_quant.row_ok & (meta_quant.lanes_ok > e)
            m.d.sync += term.eq(Mux(counts, Mux(self.o_mask[e], hit, miss), 0))
        while len(terms) > 1:   # a balanced adder tree, as popcount
            terms = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)] + terms[len(terms) - len(terms) % 2:]
        with m.If(self.load):
            m.d.sync += [self.o_nnz.eq(0), diff.eq(0)]
        with m.Else():
            m.d.sync += [self.o_nnz.eq(self.o_nnz + popcount(counted, lanes)), diff.eq(diff + terms[0])]
        m.d.comb += self.o_exp_next.eq(adapt_exponent_logic(exp, diff, dense))
        return m
