"""The sparse compute core: runs ``ref.contract`` programs, spending cycles only on effectual MACs.

Blocks (one file each): :class:`~hw.operand_loader.OperandLoader` takes commands and operands
into one of two buffer sets; :class:`~hw.dispatcher.Dispatcher` hands outputs that have work to
idle :class:`~hw.sparse_lane.SparseLane` s; lanes write finished outputs into
:class:`~hw.acc_bank.AccBank` s (bank ``n mod lanes``, fixed-priority arbitration, lowest lane
first); a DRAIN reads one row group from every bank per cycle through
:class:`~hw.requantize.Requantizer` s onto ``o_data`` (bank read, read register, two requantizer
registers, output register: the first beat is valid five cycles after the drain starts, then one
per cycle; the stall-all pipeline keeps that rate under backpressure). On the way out the result
path adds each element's ReLU mask bit and, for a pruning DRAIN, prunes the codes with the draws
of :class:`~hw.drain_prune.PruneDraws`, in the same cycles. Stream formats: docs/core.md.

Commands run in order. A GEMM starts when its operands are loaded and the previous command is
finished (its last write-back done), so accumulating GEMMs and drains see every earlier write;
the next GEMM's operands load meanwhile into the other buffer set.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.acc_bank import AccBank
from hw.bits import popcount
from hw.config import StagConfig
from hw.dispatcher import Dispatcher
from hw.drain_prune import PruneDraws
from hw.drain_resprop import DrainReSprop
from hw.layouts import OP_GEMM, core_command_layout_for
from hw.operand_loader import BUFFER_SETS, OperandLoader, descriptor_layout
from hw.requantize import Requantizer
from hw.result_path_ports import result_path_ports
from hw.sparse_lane import SparseLane

__all__ = ["SparseCore", "core_signature", "counters_layout"]

#: Commands that may wait, loaded or not, between the loader and the compute side.
DESCRIPTOR_QUEUE = 4


def counters_layout(counter_bits: int, lanes: int) -> data.StructLayout:
    """Performance counters of the core (all wrap at ``counter_bits``; reset clears them).

    Fields
    ------
    cycles : cycles in which the core was not idle (a command queued, loading or running)
    macs_issued : multiply-accumulates issued to the lanes (the effectual ones in the sparse core)
    macs_dense : multiply-accumulates a dense core issues for the same GEMMs (``tile_m*tile_n*tile_k``
        each); MACs skipped = ``macs_dense - macs_issued``
    input_starved : cycles the loader wanted an operand beat and ``i_data`` had none
    output_stalled : cycles a result beat waited on ``o_data`` for ``ready``
    lane_busy : per lane, cycles in which it issued a MAC
    """
    return data.StructLayout({
        "cycles": counter_bits,
        "macs_issued": counter_bits,
        "macs_dense": counter_bits,
        "input_starved": counter_bits,
        "output_stalled": counter_bits,
        "lane_busy": data.ArrayLayout(counter_bits, lanes),
    })


def core_signature(config: StagConfig) -> wiring.Signature:
    """The ports of :class:`SparseCore` for ``config`` (see its docstring)."""
    return wiring.Signature({
        "i_cmd": In(stream.Signature(core_command_layout_for(config))),
        "i_data": In(stream.Signature(config.bus_bits)),
        "o_data": Out(stream.Signature(config.result_bits)),
        "counters": Out(counters_layout(config.counter_bits, config.lanes)),
        "idle": Out(1),
        **result_path_ports(config),
    })


class SparseCore(wiring.Component):
    """The generated compute core for ``config`` (``config.sparse`` selects the dense baseline).

    Members
    -------
    i_cmd : In(stream of ``core_command_layout_for(config)``)
    i_data : In(stream of ``config.bus_bits`` bits)
        GEMM operands and masks, in command order (docs/core.md).
    o_data : Out(stream of ``config.result_bits = lanes * (acc_bits + 1)`` bits)
        DRAIN results: ``tile_m * tile_n / lanes`` beats per drain, row-major; element ``i`` of a
        beat is column ``group * lanes + i``, a sign-extended ``acc_bits`` value at bits
        ``[i*acc_bits, (i+1)*acc_bits)``. Above the values, bit ``lanes*acc_bits + i`` is the
        element's mask bit: its ReLU mask bit, ``value > 0`` (Sarma et al.;
        ``ref.contract.drain_mask``), or on a ``topk`` drain SWAT's keep bit
        ``|value| >= topk_threshold`` (``ref.contract.drain_keep_mask``). The mask fields of one
        row's beats, concatenated, are that row's output-mask word in the form a masked GEMM takes
        it on ``i_data``.
    counters : Out(:func:`counters_layout`)
    idle : Out(1)
        No command queued, loading or running, and no result waiting.
    prune_tau : In(prune_tau_bits), prune_seed : In(lfsr_width), prune_load : In(1)
        The result-path pruner (``hw.drain_prune``): ``prune_load`` takes the threshold ``tau``
        (0: bypass), reseeds the LFSR and clears ``prune_sum``; only while no pruning drain is
        running (two cycles before one starts). Pruning drains (``prune`` in the command) then
        prune their codes in drain order (``ref.contract.Drain(prune=True)``).
    prune_sum : Out(prune_sum_bits)
        Sum of ``|g|`` over the codes of every pruning drain since the last load, before pruning;
        final when ``idle`` is high.
    topk_threshold : In(operand_bits)
        SWAT's stored top-K threshold (a magnitude) for ``topk`` drains. It is registered, so it
        must be set one cycle before such a drain's command is sent and held while it runs.
    resprop_load : In(1), resprop_mant, resprop_exp, resprop_target, resprop_rows, resprop_cols,
    resprop_row_words, resprop_samples, resprop_sample, resprop_dense : In
        ReSprop's result path (``hw.drain_resprop``): ``resprop_load`` begins a pass. It takes the
        threshold ``mant * 2**exp``, the controller's target (hundredths of a percent), R (output
        rows per sample), C (output columns), the P words per output row (``ceil(C / tile_n) *
        tile_n / lanes``), N, the sample j to store and the dense flag; it swaps the P banks if the
        last pass stored and clears the counts. Only while no drain runs. ``resprop`` drains then
        emit ``S`` (``ref.contract.Drain(resprop=True)``).
    resprop_nnz : Out(resprop_nnz_bits), resprop_exp_next : Out(signed(8))
        Nonzero S since the last load, and the exponent after the x2 / /2 step for them (the
        next pass's ``resprop_exp``); final when ``idle`` is high.
    resprop_p_addr, resprop_p_wdata, resprop_p_we : In; resprop_p_rdata : Out(operand_bits)
        The P read bank, one code at a time (element ``r * row_words * lanes + c``): a write with
        ``resprop_p_we``; ``resprop_p_rdata`` shows the element a cycle after the address. Only while
        no drain runs; used to save and restore a layer's P.
    """

    def __init__(self, config: StagConfig) -> None:
        self.config = config
        self._cmd_layout = core_command_layout_for(config)
        super().__init__(core_signature(config))

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        lanes, tm, tn, tk = cfg.lanes, cfg.tile_m, cfg.tile_n, cfg.tile_k
        groups = tn // lanes
        group_bits = (lanes - 1).bit_length()
        words_per_row = tk // cfg.bus_elems
        per_acc = tm * groups

        # ---- intake ------------------------------------------------------------------------
        m.submodules.loader = loader = OperandLoader(
            command_layout=self._cmd_layout, operand_bits=cfg.operand_bits, tile_m=tm, tile_n=tn,
            tile_k=tk, bus_elems=cfg.bus_elems, sparse=cfg.sparse)
        wiring.connect(m, wiring.flipped(self.i_cmd), loader.i_cmd)
        wiring.connect(m, wiring.flipped(self.i_data), loader.i_data)

        desc_layout = descriptor_layout(self._cmd_layout)
        m.submodules.descriptors = descriptors = SyncFIFO(width=desc_layout.size, depth=DESCRIPTOR_QUEUE)
        m.d.comb += [
            descriptors.w_data.eq(loader.o_desc.payload),
            descriptors.w_en.eq(loader.o_desc.valid),
            loader.o_desc.ready.eq(descriptors.w_rdy),
        ]

        m.submodules.a_mem = a_mem = Memory(shape=unsigned(cfg.bus_bits), depth=loader.a_words, init=[])
        m.submodules.b_mem = b_mem = Memory(shape=unsigned(cfg.bus_bits), depth=loader.b_words, init=[])
        a_wr = a_mem.write_port()
        b_wr = b_mem.write_port()
        m.d.comb += [
            a_wr.addr.eq(loader.a_wr_addr), a_wr.data.eq(loader.a_wr_data), a_wr.en.eq(loader.a_wr_en),
            b_wr.addr.eq(loader.b_wr_addr), b_wr.data.eq(loader.b_wr_data), b_wr.en.eq(loader.b_wr_en),
        ]

        # ---- the command being executed ----------------------------------------------------------
        current = Signal(desc_layout)
        cmd = current.cmd
        IDLE, RUN, DRAIN = 0, 1, 2
        state = Signal(2, init=IDLE)
        take = Signal()
        m.d.comb += [
            take.eq((state == IDLE) & descriptors.r_rdy),
            descriptors.r_en.eq(take),
        ]
        incoming = Signal(desc_layout)
        m.d.comb += incoming.eq(descriptors.r_data)
        starting_gemm = take & (incoming.cmd.op == OP_GEMM)

        # ---- dispatcher and lanes ----------------------------------------------------------------
        m.submodules.dispatcher = dispatcher = Dispatcher(lanes=lanes, tile_m=tm, tile_n=tn, tile_k=tk,
                                                          sparse=cfg.sparse)
        m.d.comb += [
            dispatcher.start.eq(starting_gemm),
            dispatcher.has_mask.eq(cmd.has_mask),
            dispatcher.accumulate.eq(cmd.accumulate),
        ]
        # The current buffer set's bitmaps and mask (two sets: a 2:1 multiplexer per bit).
        assert BUFFER_SETS == 2
        for r in range(tm):
            m.d.comb += dispatcher.mask_rows[r].eq(Mux(current.set, loader.masks[tm + r], loader.masks[r]))
            if cfg.sparse:
                m.d.comb += dispatcher.row_bitmaps[r].eq(
                    Mux(current.set, loader.a_bitmaps[tm + r], loader.a_bitmaps[r]))
        if cfg.sparse:
            for c in range(tn):
                m.d.comb += dispatcher.col_bitmaps[c].eq(
                    Mux(current.set, loader.b_bitmaps[tn + c], loader.b_bitmaps[c]))

        lane_units = []
        for j in range(lanes):
            lane = SparseLane(operand_bits=cfg.operand_bits, acc_bits=cfg.acc_bits, tile_m=tm, tile_n=tn,
                              tile_k=tk, bus_elems=cfg.bus_elems, operand_words=max(loader.a_words, loader.b_words),
                              sparse=cfg.sparse)
            m.submodules[f"lane{j}"] = lane
            lane_units.append(lane)
            wiring.connect(m, dispatcher.o_work[j], lane.i_work)
            a_rd = a_mem.read_port()
            b_rd = b_mem.read_port()
            if cfg.sparse:
                m.d.comb += [
                    lane.b_set.eq(current.set),
                    lane.b_bitmap_wr_addr.eq(loader.b_bitmap_wr_addr),
                    lane.b_bitmap_wr_data.eq(loader.b_bitmap_wr_data),
                    lane.b_bitmap_wr_en.eq(loader.b_bitmap_wr_en),
                ]
            m.d.comb += [
                lane.a_bitmap.eq(cmd.a_bitmap if cfg.sparse else 0),
                lane.b_bitmap.eq(cmd.b_bitmap if cfg.sparse else 0),
                lane.a_base.eq(current.set * (tm * words_per_row)),
                lane.b_base.eq(current.set * (tn * words_per_row)),
                a_rd.addr.eq(lane.a_addr),
                b_rd.addr.eq(lane.b_addr),
                lane.a_word.eq(a_rd.data),
                lane.b_word.eq(b_rd.data),
            ]

        # ---- accumulator banks and write-back arbitration ---------------------------------------
        banks = []
        lane_grants = [[] for _ in range(lanes)]    # per lane: its grant signal at each bank
        for b in range(lanes):
            bank = AccBank(acc_bits=cfg.acc_bits, accumulators=cfg.accumulators, per_acc=per_acc)
            m.submodules[f"bank{b}"] = bank
            banks.append(bank)
            m.d.comb += [
                bank.accumulate.eq(cmd.accumulate),
                bank.clear_all.eq(starting_gemm & ~incoming.cmd.accumulate),
                bank.clear_acc.eq(incoming.cmd.acc),
                bank.clear_one.eq(dispatcher.clear[b]),
                bank.clear_addr.eq(cmd.acc * per_acc + dispatcher.clear_m * groups + dispatcher.clear_group),
            ]
            # Fixed priority: the lowest-numbered lane with a result for this bank wins.
            granted = Const(0, 1)
            requests = []
            for j, lane in enumerate(lane_units):
                result = lane.o_result.payload
                wants = lane.o_result.valid & (result.n[:group_bits] == b if group_bits else 1)
                grant = Signal(name=f"grant_b{b}_l{j}")
                m.d.comb += grant.eq(wants & ~granted)
                granted = granted | wants
                requests.append((grant, result))
                lane_grants[j].append(grant)
            wb = bank.i_wb.payload
            m.d.comb += bank.i_wb.valid.eq(granted)
            for grant, result in requests:
                with m.If(grant):
                    m.d.comb += [
                        wb.addr.eq(cmd.acc * per_acc + result.m * groups + (result.n >> group_bits)),
                        wb.value.eq(result.value),
                        wb.masked.eq(result.masked),
                    ]
        for lane, grants in zip(lane_units, lane_grants, strict=True):
            m.d.comb += lane.o_result.ready.eq(Cat(grants).any())

        # ---- drain ----------------------------------------------------------------------------
        beats = tm * groups
        drain_index = Signal(range(beats + 1))
        read_valid = Signal()           # the banks' read ports hold the values of one row group
        held_valid = Signal()           # the read values are registered (memory read out of the path)
        round_valid = Signal()          # the requantizers' first register holds one row group
        quant_valid = Signal()          # their second register holds one row group
        advance = ~self.o_data.valid | self.o_data.ready
        issuing = (state == DRAIN) & (drain_index != beats)
        # The pruner's draws: a pruned beat leaves the requantizers' second register.
        m.submodules.prune_draws = draws = PruneDraws(lanes=lanes, lfsr_width=cfg.lfsr_width,
                                                      lfsr_taps=cfg.lfsr_taps, tau_bits=cfg.prune_tau_bits)
        pruned_beat = (state == DRAIN) & advance & quant_valid & cmd.prune
        m.d.comb += [
            draws.i_tau.eq(self.prune_tau),
            draws.i_seed.eq(self.prune_seed),
            draws.load.eq(self.prune_load),
            draws.advance.eq(pruned_beat),
        ]
        # SWAT's threshold as the requantizers compare it: thr - 1 and thr == 0, registered so the
        # subtraction stays off the drain path.
        thr_m1 = Signal(cfg.operand_bits)
        thr_zero = Signal()
        m.d.sync += [thr_m1.eq(self.topk_threshold - 1), thr_zero.eq(self.topk_threshold == 0)]
        quantizers = []
        for b, bank in enumerate(banks):
            rq = Requantizer(cfg.acc_bits, cfg.prune_tau_bits, code_bits=cfg.operand_bits,
                             thr_bits=cfg.operand_bits)
            m.submodules[f"requantize{b}"] = rq
            held = Signal.like(bank.rd_value, name=f"drain_value{b}")
            with m.If((state == DRAIN) & advance):
                m.d.sync += held.eq(bank.rd_value)
            m.d.comb += [
                bank.rd_en.eq((state == DRAIN) & advance),
                bank.rd_addr.eq(cmd.acc * per_acc + drain_index),
                rq.i_value.eq(held),
                rq.i_shift.eq(cmd.shift),
                rq.i_out_bits.eq(cmd.out_bits),
                rq.i_rounding.eq(cmd.rounding),
                rq.i_relu.eq(cmd.relu),
                rq.i_prune.eq(cmd.prune),
                rq.i_tau.eq(draws.o_tau),
                rq.i_tau_m1.eq(draws.o_tau_m1),
                rq.i_draw_m1.eq(draws.o_draw_m1[b]),
                rq.i_topk.eq(cmd.topk),
                rq.i_thr_m1.eq(thr_m1),
                rq.i_thr_zero.eq(thr_zero),
                rq.en.eq((state == DRAIN) & advance),
            ]
            quantizers.append(rq)
        # ReSprop's difference: P is read with the banks and meets the code after the requantizer.
        m.submodules.resprop = resprop = DrainReSprop(
            lanes=lanes, tile_n=tn, operand_bits=cfg.operand_bits, acc_bits=cfg.acc_bits,
            words=cfg.resprop_words, sample_bits=cfg.resprop_sample_bits, nnz_bits=cfg.resprop_nnz_bits)
        for name in ("mant", "exp", "target", "rows", "cols", "row_words", "samples", "sample", "dense"):
            m.d.comb += getattr(resprop, f"i_{name}").eq(getattr(self, f"resprop_{name}"))
        m.d.comb += [
            resprop.load.eq(self.resprop_load),
            resprop.start.eq(take),
            resprop.i_word.eq(incoming.cmd.rs_word),
            resprop.i_row.eq(incoming.cmd.rs_row),
            resprop.i_col.eq(incoming.cmd.rs_col),
            resprop.i_sample0.eq(incoming.cmd.rs_sample),
            resprop.draining.eq(state == DRAIN),
            resprop.step.eq((state == DRAIN) & advance),
            resprop.issue.eq(issuing & advance),
            resprop.emit.eq((state == DRAIN) & advance & quant_valid & cmd.resprop),
            self.resprop_nnz.eq(resprop.o_nnz),
            self.resprop_exp_next.eq(resprop.o_exp_next),
            resprop.p_addr.eq(self.resprop_p_addr),
            resprop.p_wdata.eq(self.resprop_p_wdata),
            resprop.p_we.eq(self.resprop_p_we),
            self.resprop_p_rdata.eq(resprop.p_rdata),
        ]
        m.d.comb += [resprop.i_out_bits[b].eq(cmd.out_bits) for b in range(len(quantizers))]
        for b, rq in enumerate(quantizers):
            m.d.comb += [
                resprop.i_codes[b].eq(rq.o_value),
                resprop.i_rounded[b].eq(rq.o_rounded),
                resprop.i_nonzero[b].eq(rq.o_nonzero),
                resprop.i_above[b].eq(rq.o_above),
                resprop.i_below[b].eq(rq.o_below),
            ]
        out_values = [Mux(cmd.resprop, resprop.o_values[b], rq.o_value) for b, rq in enumerate(quantizers)]
        out_masks = [Mux(cmd.resprop, resprop.o_mask[b], rq.o_mask) for b, rq in enumerate(quantizers)]
        with m.If((state == DRAIN) & advance):
            # The mask bit rides on the result beat, into the same output register (no added
            # latency); the requantizer decides it beside its saturation (Requantizer.o_mask).
            m.d.sync += [
                self.o_data.valid.eq(quant_valid),
                self.o_data.payload.eq(Cat(*out_values, *out_masks)),
                quant_valid.eq(round_valid),
                round_valid.eq(held_valid),
                held_valid.eq(read_valid),
                read_valid.eq(issuing),
            ]
            with m.If(issuing):
                m.d.sync += drain_index.eq(drain_index + 1)

        # The pruner's sum of |g| (the next tensor's tau comes from it): the beat's codes are
        # registered as it leaves, then added a cycle later, off the result path.
        summed = [Signal(signed(cfg.operand_bits), name=f"summed{b}") for b in range(lanes)]
        summing = Signal()
        m.d.sync += summing.eq(pruned_beat)
        with m.If(pruned_beat):
            m.d.sync += [reg.eq(rq.o_code) for reg, rq in zip(summed, quantizers, strict=True)]
        with m.If(self.prune_load):
            m.d.sync += self.prune_sum.eq(0)
        with m.Elif(summing):
            magnitudes = [Mux(v[-1], -v, v) for v in summed]
            m.d.sync += self.prune_sum.eq(self.prune_sum + sum(magnitudes))

        # ---- sequencing --------------------------------------------------------------------------
        lanes_idle = Cat(lane.idle for lane in lane_units).all()
        banks_idle = ~Cat(bank.busy for bank in banks).any()
        m.d.comb += [
            loader.release.eq(0),
            loader.release_set.eq(current.set),
        ]
        with m.Switch(state):
            with m.Case(IDLE):
                with m.If(take):
                    m.d.sync += current.eq(incoming)
                    with m.If(incoming.cmd.op == OP_GEMM):
                        m.d.sync += state.eq(RUN)
                    with m.Else():
                        m.d.sync += [state.eq(DRAIN), drain_index.eq(0), read_valid.eq(0),
                                     held_valid.eq(0), round_valid.eq(0), quant_valid.eq(0)]
            with m.Case(RUN):
                with m.If(~dispatcher.busy & lanes_idle & banks_idle):
                    m.d.comb += loader.release.eq(1)
                    m.d.sync += state.eq(IDLE)
            with m.Case(DRAIN):
                with m.If(~issuing & ~read_valid & ~held_valid & ~round_valid & ~quant_valid & advance):
                    m.d.sync += state.eq(IDLE)

        m.d.comb += self.idle.eq((state == IDLE) & ~descriptors.r_rdy & ~loader.busy & ~self.i_cmd.valid &
                                 ~self.o_data.valid)

        # ---- counters ----------------------------------------------------------------------------
        ctr = self.counters
        issued = Cat(lane.issued for lane in lane_units)
        m.d.sync += [
            ctr.cycles.eq(ctr.cycles + ~self.idle),
            ctr.macs_issued.eq(ctr.macs_issued + popcount(issued, lanes)),
            ctr.input_starved.eq(ctr.input_starved + loader.starved),
            ctr.output_stalled.eq(ctr.output_stalled + (self.o_data.valid & ~self.o_data.ready)),
        ]
        with m.If(starting_gemm):
            m.d.sync += ctr.macs_dense.eq(ctr.macs_dense + tm * tn * tk)
        for j, lane in enumerate(lane_units):
            m.d.sync += ctr.lane_busy[j].eq(ctr.lane_busy[j] + lane.issued)
        return m
