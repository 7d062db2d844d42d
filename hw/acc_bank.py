"""One accumulator bank: read-modify-write of finished outputs, live bits, drain read port.

The core's accumulator tiles are split over ``lanes`` banks by output column (``n mod lanes``), so
one row group of a drain reads every bank at once and lanes finishing outputs of different columns
write in parallel. Each bank holds, for every accumulator tile, the outputs of its columns in a
``amaranth.lib.memory`` array plus one *live* bit per output. An output whose live bit is clear
reads as 0: clearing a whole accumulator tile at the start of a non-accumulating GEMM (and a
masked output under ``accumulate``) is a register write, not a memory sweep.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["AccBank", "writeback_layout"]


def writeback_layout(depth: int, acc_bits: int) -> data.StructLayout:
    """A finished output for this bank: local address, its sum, and whether it is masked off."""
    return data.StructLayout({"addr": range(depth), "value": signed(acc_bits), "masked": 1})


class AccBank(wiring.Component):
    """Accumulator bank with ``accumulators * per_acc`` entries of ``acc_bits``.

    Members
    -------
    i_wb : In(stream of :func:`writeback_layout`)
        Always ready; one output per cycle. Three stages: the input register, read the old value,
        then write ``(old if accumulate and live else 0) + value`` and set the live bit (a masked
        output clears the live bit instead). The same address must not be written twice within
        three cycles (the core writes each output once per command).
    accumulate : In(1)
        Held for the whole command.
    clear_all, clear_acc : In
        Clear every live bit of accumulator tile ``clear_acc``.
    clear_one, clear_addr : In
        Clear one live bit.
    rd_en, rd_addr : In; rd_value : Out(signed(acc_bits))
        Drain read: the value (0 unless live) of ``rd_addr`` one cycle after ``rd_en``; held while
        ``rd_en`` is low. Only used while no write-back is in flight.
    busy : Out(1)
        A write is in flight.
    """

    def __init__(self, *, acc_bits: int, accumulators: int, per_acc: int) -> None:
        self._acc_bits, self._accs, self._per = acc_bits, accumulators, per_acc
        depth = accumulators * per_acc
        super().__init__({
            "i_wb": In(stream.Signature(writeback_layout(depth, acc_bits))),
            "accumulate": In(1),
            "clear_all": In(1),
            "clear_acc": In(range(max(2, accumulators))),
            "clear_one": In(1),
            "clear_addr": In(range(depth)),
            "rd_en": In(1),
            "rd_addr": In(range(depth)),
            "rd_value": Out(signed(acc_bits)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self._accs * self._per
        m.submodules.mem = mem = Memory(shape=unsigned(self._acc_bits), depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()
        live = Signal(depth)

        # Stage 0 of a write-back: the input register. The core's arbitration across lanes ends
        # here; the memory address and the live-bit lookup start a clock period of their own.
        s0_valid = Signal()
        s0 = Signal(writeback_layout(depth, self._acc_bits))
        m.d.comb += self.i_wb.ready.eq(1)
        m.d.sync += [s0_valid.eq(self.i_wb.valid), s0.eq(self.i_wb.payload)]
        m.d.comb += [
            rd.addr.eq(Mux(s0_valid, s0.addr, self.rd_addr)),
            rd.en.eq(s0_valid | self.rd_en),
        ]

        # Stage 1: the old value is on the read port now.
        s1_valid = Signal()
        s1_addr = Signal(range(depth))
        s1_value = Signal(signed(self._acc_bits))
        s1_masked = Signal()
        s1_live = Signal()
        m.d.sync += [
            s1_valid.eq(s0_valid),
            s1_addr.eq(s0.addr),
            s1_value.eq(s0.value),
            s1_masked.eq(s0.masked),
            s1_live.eq(live.bit_select(s0.addr, 1)),
        ]
        old = Mux(s1_live & self.accumulate, rd.data.as_signed(), 0)
        m.d.comb += [
            wr.addr.eq(s1_addr),
            wr.data.eq(old + s1_value),
            wr.en.eq(s1_valid & ~s1_masked),
            self.busy.eq(s0_valid | s1_valid),
        ]

        # Live bits. A write-back and a clear never meet on one bit: the core clears a whole tile
        # only at the start of a command, and masked outputs (cleared one by one) get no write-back.
        # Written bit by bit with decoded enables: a write through a variable bit index would
        # make a shifter over the whole vector for each writer.
        for i in range(depth):
            acc = i // self._per
            with m.If(s1_valid & (s1_addr == i)):
                m.d.sync += live[i].eq(~s1_masked)
            with m.Elif((self.clear_one & (self.clear_addr == i)) | (self.clear_all & (self.clear_acc == acc))):
                m.d.sync += live[i].eq(0)

        # Drain read: the live bit travels with the read, like the data.
        rd_live = Signal()
        with m.If(self.rd_en & ~s0_valid):
            m.d.sync += rd_live.eq(live.bit_select(self.rd_addr, 1))
        m.d.comb += self.rd_value.eq(Mux(rd_live, rd.data.as_signed(), 0))
        return m
