"""The accelerator top level: the sparse core behind AXI4-Stream ports and AXI4-Lite registers.

:class:`AxiTop` wraps :class:`hw.core.SparseCore` without changing its behaviour or timing: the three
AXI4-Stream ports are wired straight to the core's streams (no buffering, zero latency), the
result stream gains ``TLAST`` on the last beat of each drained tile, and an AXI4-Lite slave gives
identification, configuration readback, control, status, the performance counters and an
interrupt. Register map and stream formats: docs/interface.md; offsets: :mod:`hw.axi_registers`.

Port names follow the AXI convention that cocotbext-axi's ``from_prefix`` understands
(``s_axis_cmd_tdata``, ``s_axil_awaddr``, ...); clock and reset are Amaranth's ``clk`` and ``rst``
(synchronous, active high).

Stream padding. Each ``tdata`` is the core's payload rounded up to whole bytes; the payload sits in
the low bits (bit 0 is the core's bit 0) and the padding in the high bits. The result stream drives
its padding bits 0; on the two input streams the padding bits are ignored by the core, and a beat
taken with any padding bit set raises STATUS.PAD_ERROR (a driver packing error).

AXI4-Lite decoding. Registers are decoded on address bits [11:2]; bits [1:0] are ignored, WSTRB
selects the bytes written; an unmapped word answers SLVERR.

AXI4-Lite timing. A write is taken when AW and W are both valid and no response is pending
(``awready = wready = awvalid & wvalid & ~bvalid``); the response follows on the next cycle. A read
is taken when no read data is pending (``arready = ~rvalid``) and answered on the next cycle
(``RESPROP_P_DATA``, whose memory read takes a cycle, on the one after). So one access per two
cycles at most; the bus is for control, the streams carry the data.
"""

from __future__ import annotations

from amaranth import Cat, ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw import axi_registers as regs
from hw.config import StagConfig
from hw.core import SparseCore, core_signature

__all__ = ["AxiTop", "config_registers"]

RESP_OKAY = 0b00
RESP_SLVERR = 0b10


def config_registers(config: StagConfig) -> dict[str, int]:
    """The value of every configuration readback register (:data:`hw.axi_registers.CONFIG_FIELDS`)."""
    widths = regs.stream_widths(config)
    values = {
        "operand_bits": config.operand_bits, "acc_bits": config.acc_bits, "max_reduction": config.max_reduction,
        "lanes": config.lanes, "tile_m": config.tile_m, "tile_n": config.tile_n, "tile_k": config.tile_k,
        "bus_elems": config.bus_elems, "accumulators": config.accumulators, "sparse": int(config.sparse),
        "counter_bits": config.counter_bits, "acc_index_bits": config.acc_index_bits,
        "cmd_bits": widths.cmd_bits, "cmd_tdata_bits": widths.cmd_tdata_bits, "data_bits": widths.data_bits,
        "data_tdata_bits": widths.data_tdata_bits, "result_bits": widths.result_bits,
        "result_tdata_bits": widths.result_tdata_bits,
        "drain_beats": config.tile_m * config.tile_n // config.lanes,
        "counters": len(regs.counter_names(config.lanes)),
    }
    assert tuple(values) == regs.CONFIG_FIELDS
    return values


class AxiTop(wiring.Component):
    """``SparseCore(config)`` with AXI4-Stream command, data and result ports and AXI4-Lite registers.

    Members
    -------
    s_axis_cmd_tdata/tvalid/tready : AXI4-Stream slave, ``cmd_tdata_bits`` wide
        One command word per beat (docs/core.md, "The command word"), in bits ``[cmd_bits-1:0]``.
    s_axis_data_tdata/tvalid/tready : AXI4-Stream slave, ``data_tdata_bits`` wide
        GEMM operand and mask beats (docs/core.md, "The data stream"), in bits ``[data_bits-1:0]``.
    m_axis_result_tdata/tvalid/tready/tlast : AXI4-Stream master, ``result_tdata_bits`` wide
        Drained results (docs/core.md, "The result stream"); ``tlast`` on the last of the
        ``tile_m * tile_n / lanes`` beats of every drain. Padding bits are 0.
    s_axil_* : AXI4-Lite slave, 32-bit data, ``ADDR_BITS``-bit byte addresses (no AxPROT)
    irq : Out(1)
        Level interrupt: ``STATUS.DONE & CTRL.IRQ_EN``. DONE is set on the cycle after the core's
        ``idle`` rises (it has run out of work and every result has been taken) and is cleared by
        writing 1 to it.

    Latency: the streams add none (they are wires to the core); register reads answer one cycle
    after the address is taken; ``idle``, DONE and the counters lag the core by at most one cycle.
    """

    def __init__(self, config: StagConfig, *, core_module: str | None = None) -> None:
        self.config = config
        # None: elaborate the core inside (Amaranth simulation). A module name: instantiate that
        # already generated Verilog module instead (``stag_<name>``), so generating the AXI top does
        # not elaborate the core a second time; its Verilog then needs the core's file beside it.
        self._core_module = core_module
        self._widths = w = regs.stream_widths(config)
        members = {
            "s_axis_cmd_tdata": In(w.cmd_tdata_bits), "s_axis_cmd_tvalid": In(1), "s_axis_cmd_tready": Out(1),
            "s_axis_data_tdata": In(w.data_tdata_bits), "s_axis_data_tvalid": In(1), "s_axis_data_tready": Out(1),
            "m_axis_result_tdata": Out(w.result_tdata_bits), "m_axis_result_tvalid": Out(1),
            "m_axis_result_tready": In(1), "m_axis_result_tlast": Out(1),
            "s_axil_awaddr": In(regs.ADDR_BITS), "s_axil_awvalid": In(1), "s_axil_awready": Out(1),
            "s_axil_wdata": In(32), "s_axil_wstrb": In(4), "s_axil_wvalid": In(1), "s_axil_wready": Out(1),
            "s_axil_bresp": Out(2), "s_axil_bvalid": Out(1), "s_axil_bready": In(1),
            "s_axil_araddr": In(regs.ADDR_BITS), "s_axil_arvalid": In(1), "s_axil_arready": Out(1),
            "s_axil_rdata": Out(32), "s_axil_rresp": Out(2), "s_axil_rvalid": Out(1), "s_axil_rready": In(1),
            "irq": Out(1),
        }
        super().__init__(members)

    def elaborate(self, platform):
        cfg, w = self.config, self._widths
        m = Module()
        if self._core_module is None:
            m.submodules.core = core = SparseCore(cfg)
        else:
            core = _instantiate_core(m, cfg, self._core_module)

        # ---- streams: wires to the core ---------------------------------------------------------
        cmd_taken = self.s_axis_cmd_tvalid & self.s_axis_cmd_tready
        data_taken = self.s_axis_data_tvalid & self.s_axis_data_tready
        result_taken = self.m_axis_result_tvalid & self.m_axis_result_tready
        m.d.comb += [
            core.i_cmd.payload.eq(self.s_axis_cmd_tdata[:w.cmd_bits]),
            core.i_cmd.valid.eq(self.s_axis_cmd_tvalid),
            self.s_axis_cmd_tready.eq(core.i_cmd.ready),
            core.i_data.payload.eq(self.s_axis_data_tdata[:w.data_bits]),
            core.i_data.valid.eq(self.s_axis_data_tvalid),
            self.s_axis_data_tready.eq(core.i_data.ready),
            self.m_axis_result_tdata.eq(core.o_data.payload),     # zero-extended into the padding
            self.m_axis_result_tvalid.eq(core.o_data.valid),
            core.o_data.ready.eq(self.m_axis_result_tready),
        ]
        # Every drain is exactly drain_beats beats, so a beat counter from reset finds each tile's end.
        drain_beats = cfg.tile_m * cfg.tile_n // cfg.lanes
        beat = Signal(range(drain_beats))
        last = Signal()
        m.d.comb += [last.eq(beat == drain_beats - 1), self.m_axis_result_tlast.eq(last)]
        with m.If(result_taken):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))

        # Padding bits of a taken input beat must be 0 (the core never sees them).
        padding = []
        if w.cmd_tdata_bits > w.cmd_bits:
            padding.append(cmd_taken & self.s_axis_cmd_tdata[w.cmd_bits:].any())
        if w.data_tdata_bits > w.data_bits:
            padding.append(data_taken & self.s_axis_data_tdata[w.data_bits:].any())
        bad_padding = Cat(padding).any() if padding else Const(0)

        # ---- status: done, interrupt, progress counts ---------------------------------------------
        irq_en = Signal()
        done = Signal()
        pad_error = Signal()
        was_idle = Signal(init=1)       # init 1: leaving reset idle is not "done"
        m.d.sync += was_idle.eq(core.idle)
        m.d.comb += self.irq.eq(done & irq_en)
        cmd_count = Signal(regs.CMD_COUNT_BITS)
        tile_count = Signal(regs.TILE_COUNT_BITS)
        with m.If(cmd_taken):
            m.d.sync += cmd_count.eq(cmd_count + 1)
        with m.If(result_taken & last):
            m.d.sync += tile_count.eq(tile_count + 1)
        scratch = Signal(32)
        prune_tau = Signal(cfg.prune_tau_bits)
        prune_seed = Signal(cfg.lfsr_width, init=cfg.lfsr_seed)
        topk_threshold = Signal(cfg.operand_bits)
        m.d.comb += [core.prune_tau.eq(prune_tau), core.prune_seed.eq(prune_seed),
                     core.topk_threshold.eq(topk_threshold)]
        # ReSprop's pass settings, taken by the core at a RESPROP_LOAD write.
        resprop = {name: Signal.like(getattr(core, f"resprop_{name}"), name=f"resprop_{name}")
                   for name in regs.RESPROP_SETTINGS}
        resprop_index = Signal.like(core.resprop_p_addr)
        m.d.comb += [getattr(core, f"resprop_{name}").eq(reg) for name, reg in resprop.items()]
        m.d.comb += [core.resprop_p_addr.eq(resprop_index), core.resprop_p_wdata.eq(self.s_axil_wdata)]
        counters = core.counters.as_value()
        snapshot = Signal(len(counters))

        # Registers are decoded on the word address: AXI addresses bytes, a read returns the whole
        # word and a write changes the bytes WSTRB selects, so the two low address bits carry no
        # information. Verilator's lint exempts signals named *unused* (--unused-regexp): this
        # states that the bits are ignored on purpose rather than forgotten.
        unused_addr_lsbs = Signal(4)
        m.d.comb += unused_addr_lsbs.eq(Cat(self.s_axil_awaddr[:2], self.s_axil_araddr[:2]))

        # ---- AXI4-Lite writes ---------------------------------------------------------------------
        bvalid = Signal()
        bresp = Signal(2)
        write = Signal()
        m.d.comb += [
            write.eq(self.s_axil_awvalid & self.s_axil_wvalid & ~bvalid),
            self.s_axil_awready.eq(write),
            self.s_axil_wready.eq(write),
            self.s_axil_bvalid.eq(bvalid),
            self.s_axil_bresp.eq(bresp),
        ]
        wdata, wstrb = self.s_axil_wdata, self.s_axil_wstrb
        clear_done = Signal()
        clear_pad = Signal()
        with m.If(write):
            m.d.sync += [bvalid.eq(1), bresp.eq(RESP_OKAY)]
            with m.Switch(self.s_axil_awaddr[2:]):
                with m.Case(regs.CTRL >> 2):
                    with m.If(wstrb[0]):
                        m.d.sync += irq_en.eq(wdata[0])
                with m.Case(regs.STATUS >> 2):
                    m.d.comb += [clear_done.eq(wstrb[0] & wdata[1]), clear_pad.eq(wstrb[0] & wdata[3])]
                with m.Case(regs.SNAPSHOT >> 2):
                    with m.If(wstrb[0] & wdata[0]):
                        m.d.sync += snapshot.eq(counters)
                with m.Case(regs.SCRATCH >> 2):
                    for i in range(4):
                        with m.If(wstrb[i]):
                            m.d.sync += scratch[8 * i:8 * i + 8].eq(wdata[8 * i:8 * i + 8])
                # The pruner's registers take whole words (WSTRB all ones): a partial tau or seed
                # would be a driver error, and ignoring it is safer than loading half a value.
                with m.Case(regs.PRUNE_TAU >> 2):
                    with m.If(wstrb.all()):
                        m.d.sync += prune_tau.eq(wdata)
                with m.Case(regs.PRUNE_SEED >> 2):
                    # A zero seed would lock the LFSR at 0: ignored.
                    with m.If(wstrb.all() & (wdata[:cfg.lfsr_width] != 0)):
                        # The pruner loads the written seed itself: the register updates only
                        # at this same edge.
                        m.d.sync += prune_seed.eq(wdata)
                        m.d.comb += [core.prune_load.eq(1), core.prune_seed.eq(wdata)]
                with m.Case(regs.TOPK_THRESHOLD >> 2):
                    with m.If(wstrb.all()):     # whole words only, as the pruner's registers
                        m.d.sync += topk_threshold.eq(wdata)
                for name, offset in regs.RESPROP_SETTINGS.items():
                    with m.Case(offset >> 2):
                        with m.If(wstrb.all()):
                            m.d.sync += resprop[name].eq(wdata)
                with m.Case(regs.RESPROP_LOAD >> 2):
                    m.d.comb += core.resprop_load.eq(wstrb.all() & wdata[0])
                with m.Case(regs.RESPROP_P_INDEX >> 2):
                    with m.If(wstrb.all()):
                        m.d.sync += resprop_index.eq(wdata)
                with m.Case(regs.RESPROP_P_DATA >> 2):
                    with m.If(wstrb.all()):
                        # The core writes the code at P_INDEX at this edge, which also steps the index.
                        m.d.comb += core.resprop_p_we.eq(1)
                        m.d.sync += resprop_index.eq(resprop_index + 1)
                with m.Case(*(a >> 2 for a in regs.mapped_offsets(cfg.lanes)
                              if a not in (regs.CTRL, regs.STATUS, regs.SNAPSHOT, regs.SCRATCH, regs.PRUNE_TAU,
                                           regs.PRUNE_SEED, regs.TOPK_THRESHOLD, regs.RESPROP_LOAD,
                                           regs.RESPROP_P_INDEX, regs.RESPROP_P_DATA,
                                           *regs.RESPROP_SETTINGS.values()))):
                    pass                # read-only: ignored, OKAY
                with m.Default():
                    m.d.sync += bresp.eq(RESP_SLVERR)
        with m.Elif(bvalid & self.s_axil_bready):
            m.d.sync += bvalid.eq(0)
        # A set in the same cycle as its write-1-to-clear wins (the later statement), so no event is lost.
        with m.If(clear_done):
            m.d.sync += done.eq(0)
        with m.If(core.idle & ~was_idle):
            m.d.sync += done.eq(1)
        with m.If(clear_pad):
            m.d.sync += pad_error.eq(0)
        with m.If(bad_padding):
            m.d.sync += pad_error.eq(1)

        # ---- AXI4-Lite reads ----------------------------------------------------------------------
        rvalid = Signal()
        rdata = Signal(32)
        rresp = Signal(2)
        # A P_DATA read answers a cycle later than the others: the P memory's read port shows the
        # code at P_INDEX one cycle after the index is set, and the index may have been written in
        # the cycle before the read is taken.
        p_reading = Signal()
        m.d.sync += p_reading.eq(0)
        with m.If(p_reading):
            m.d.sync += [rvalid.eq(1), rdata.eq(core.resprop_p_rdata.as_signed())]
        m.d.comb += [
            self.s_axil_arready.eq(~rvalid & ~p_reading),
            self.s_axil_rvalid.eq(rvalid),
            self.s_axil_rdata.eq(rdata),
            self.s_axil_rresp.eq(rresp),
        ]
        cb = cfg.counter_bits
        with m.If(self.s_axil_arvalid & ~rvalid & ~p_reading):
            m.d.sync += [rvalid.eq(1), rresp.eq(RESP_OKAY), rdata.eq(0)]
            with m.Switch(self.s_axil_araddr[2:]):
                with m.Case(regs.ID >> 2):
                    m.d.sync += rdata.eq(regs.ID_VALUE)
                with m.Case(regs.VERSION >> 2):
                    m.d.sync += rdata.eq(regs.VERSION_VALUE)
                with m.Case(regs.CTRL >> 2):
                    m.d.sync += rdata.eq(irq_en)
                with m.Case(regs.STATUS >> 2):
                    m.d.sync += rdata.eq(Cat(core.idle, done, self.irq, pad_error))
                with m.Case(regs.SNAPSHOT >> 2):
                    pass                # write-only: reads 0
                with m.Case(regs.SCRATCH >> 2):
                    m.d.sync += rdata.eq(scratch)
                with m.Case(regs.CMD_COUNT >> 2):
                    m.d.sync += rdata.eq(cmd_count)
                with m.Case(regs.TILE_COUNT >> 2):
                    m.d.sync += rdata.eq(tile_count)
                with m.Case(regs.PRUNE_TAU >> 2):
                    m.d.sync += rdata.eq(prune_tau)
                with m.Case(regs.PRUNE_SEED >> 2):
                    m.d.sync += rdata.eq(prune_seed)
                with m.Case(regs.PRUNE_SUM >> 2):
                    m.d.sync += rdata.eq(core.prune_sum)
                with m.Case(regs.TOPK_THRESHOLD >> 2):
                    m.d.sync += rdata.eq(topk_threshold)
                for name, offset in regs.RESPROP_SETTINGS.items():
                    with m.Case(offset >> 2):
                        m.d.sync += rdata.eq(resprop[name])    # THR_EXP is signed: sign-extended
                with m.Case(regs.RESPROP_EXP_NEXT >> 2):
                    m.d.sync += rdata.eq(core.resprop_exp_next)
                with m.Case(regs.RESPROP_LOAD >> 2):
                    pass                # write-only: reads 0
                with m.Case(regs.RESPROP_NNZ >> 2):
                    m.d.sync += rdata.eq(core.resprop_nnz)
                with m.Case(regs.RESPROP_P_INDEX >> 2):
                    m.d.sync += rdata.eq(resprop_index)
                with m.Case(regs.RESPROP_P_DATA >> 2):
                    m.d.sync += [rvalid.eq(0), p_reading.eq(1), resprop_index.eq(resprop_index + 1)]
                for field, value in config_registers(cfg).items():
                    with m.Case(regs.config_offset(field) >> 2):
                        m.d.sync += rdata.eq(value)
                for f in range(len(regs.counter_names(cfg.lanes))):
                    value = snapshot[f * cb:(f + 1) * cb]
                    with m.Case(regs.counter_offset(f) >> 2):
                        m.d.sync += rdata.eq(value[:32])
                    with m.Case(regs.counter_offset(f, high=True) >> 2):
                        if cb > 32:
                            m.d.sync += rdata.eq(value[32:])
                with m.Default():
                    m.d.sync += rresp.eq(RESP_SLVERR)
        with m.Elif(rvalid & self.s_axil_rready):
            m.d.sync += rvalid.eq(0)
        return m


def _instantiate_core(m: Module, cfg: StagConfig, module: str):
    """Instantiate the generated core ``module`` by name; returns an interface object with the
    members of ``SparseCore(cfg)`` (streams, counters, idle) wired to the instance's ports.

    Port names follow Amaranth's Verilog naming of the core's signature: nested members joined by
    ``__`` (``i_cmd__valid``, ``i_cmd__payload``, ``counters``, ``idle``), plus ``clk`` and ``rst``.
    """
    signature = core_signature(cfg)
    core = signature.flip().create(path=("core",))
    ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
    for path, member, value in signature.flatten(core):
        name = "__".join(str(part) for part in path)
        ports[("i_" if member.flow == In else "o_") + name] = Value.cast(value)
    m.submodules.core = Instance(module, **ports)
    return core
