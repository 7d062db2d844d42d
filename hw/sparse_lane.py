"""One lane of the sparse core: a work queue, a zero-skipping issue stage, operand fetch, a PE lane.

The dispatcher hands the lane *work items*: one output ``(m, n)`` with its A row bitmap; the lane
reads the B column bitmap of ``n`` from its own copy and forms the bitmap of the effectual
reduction indices ``k`` (their AND, or all ones in the dense core) as the item enters its queue.
The lane issues one ``k`` per cycle, lowest first, so it spends exactly ``popcount(work)`` cycles on the
output and none on zeros; a new item starts in the cycle after the previous one's last ``k``. An
accepted item spends one cycle in an input register before it enters the queue (a timing stage
after the dispatcher's compaction).

Pipeline per issued ``k`` (one new ``k`` per cycle, never stalls):

====  ======================================================================================
I0    pick the lowest set bit of the head item's work bitmap; clear it (pop the item when it
      was the last); the first ``k`` of an item reserves a result slot (tag FIFO)
I1    the operand bitmaps below ``k`` (A row and B column, each masked by the bits below ``k``)
IC    popcounts of their 16-bit chunks
I2    rank of ``k`` among the operand's stored values: the sum of the chunk counts
      (``popcount(bitmap below k)``) for a bitmap-compressed operand (packed nonzeros), ``k``
      itself for a dense one; word address to the A and B operand memories (synchronous read)
I3    the words arrive and are registered unchanged (the block RAM's output register)
I4    select the element from each word; request to the PE lane (``hw.pe_lane``, 3 stages)
====  ======================================================================================

Results leave in order through a result FIFO and an output register, with their ``(m, n, masked)``
tag. The lane starts
an item only when a result slot is free, so the PE lane's output is always accepted and nothing
upstream ever has to stall: the only backpressure is the work queue's ``ready``.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.bits import popcount
from hw.pe_lane import PELane

__all__ = ["SparseLane", "lane_result_layout", "work_item_layout"]


def work_item_layout(tile_m: int, tile_n: int, tile_k: int) -> data.StructLayout:
    """One output handed to a lane: its position, the A row bitmap, the mask flag.

    ``abits`` is the A row bitmap (sparse core; unused in the dense core); the B column bitmap
    is not carried: the lane reads it from its own copy by ``n``. ``masked``: the output is masked
    off (dense core only: the sparse core never hands out masked outputs). The row is the same for
    every lane of a group, so the dispatcher's per-lane multiplexer carries only ``n`` and ``masked``.
    """
    return data.StructLayout({
        "m": range(tile_m),
        "n": range(tile_n),
        "abits": tile_k,
        "masked": 1,
    })


def _queue_entry_layout(tile_m: int, tile_n: int, tile_k: int) -> data.StructLayout:
    """A queued item with its B column bitmap, plus its remaining work bitmap (cleared bit by bit
    as ``k`` issue). The lane's work is the AND of the bitmaps (all ones in the dense core), and it
    needs each of them to find a packed nonzero's address (its rank)."""
    return data.StructLayout({"item": work_item_layout(tile_m, tile_n, tile_k), "bbits": tile_k, "work": tile_k})


def _balanced_sum(terms: list) -> object:
    """Sum of ``terms`` as a tree of adders (depth log2 of their number)."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def lane_result_layout(tile_m: int, tile_n: int, acc_bits: int) -> data.StructLayout:
    """One finished output leaving a lane: position, mask flag and its sum (signed, wraps)."""
    return data.StructLayout({
        "m": range(tile_m),
        "n": range(tile_n),
        "masked": 1,
        "value": signed(acc_bits),
    })


class SparseLane(wiring.Component):
    """Zero-skipping MAC lane of the sparse core; see the module docstring for the pipeline.

    Parameters
    ----------
    operand_bits, acc_bits : int
        Operand and accumulator widths.
    tile_m, tile_n, tile_k : int
        Tile sizes of the core.
    bus_elems : int
        Elements per operand memory word.
    operand_words : int
        Words per operand memory (all buffer sets); sizes the address ports.
    sparse : bool
        False: the dense core (ranks are ``k``; no popcount logic).
    queue_depth, result_depth : int
        Work items the lane can hold (the input register included), and results in flight (from
        the first ``k`` until the result leaves). The default 11 covers the round trip of a
        one-``k`` item (its first ``k`` to its slot being free again), so even outputs with a
        single effectual MAC start one per cycle.

    Members
    -------
    i_work : In(stream of :func:`work_item_layout`)
        ``ready`` is registered (queue has room), so a producer may decide ``valid`` from it. An
        accepted item waits one cycle in the input register before it enters the queue, so an
        item accepted on edge *t* issues its first ``k`` on edge *t + 2* at the earliest.
    a_bitmap, b_bitmap : In(1)
        The current command's operand formats (held for the whole command).
    b_set : In(1)
        The current command's buffer set (held for the whole command; sparse core only).
    b_bitmap_wr_addr, b_bitmap_wr_data, b_bitmap_wr_en : In
        Write port of the lane's copy of the B column bitmaps (address ``Cat(column, set)``, i.e.
        ``set * 2**column_bits + column`` with ``column_bits = (tile_n - 1).bit_length()``, as the
        read by ``Cat(n, b_set)`` forms it; sparse core only). The lane reads the bitmap of item
        ``n`` on the edge that takes the item into its input register, so the dispatcher does not
        carry it; a set is rewritten only after the command that reads it has handed out its last
        item.
    a_base, b_base : In(range(operand_words))
        First word of the current buffer set in the A / B memory.
    a_addr, b_addr : Out(range(operand_words)); a_word, b_word : In(bus_elems * operand_bits)
        Synchronous read port of each operand memory: word at ``addr`` arrives one cycle later.
    o_result : Out(stream of :func:`lane_result_layout`)
    issued : Out(1)
        A multiply-accumulate was issued this cycle (one ``k`` left the queue).
    idle : Out(1)
        Nothing queued, in flight or waiting to leave.

    Latency: an item's last ``k`` issued at edge *t* gives its result on ``o_result`` after edge
    *t + 9* (I1, IC, I2, I3, I4, three PE stages, the output register after the result FIFO), so
    it can leave on edge *t + 10* at the earliest.
    """

    def __init__(self, *, operand_bits: int, acc_bits: int, tile_m: int, tile_n: int, tile_k: int,
                 bus_elems: int, operand_words: int, sparse: bool, queue_depth: int = 3,
                 result_depth: int = 11) -> None:
        self._p = dict(operand_bits=operand_bits, acc_bits=acc_bits, tile_m=tile_m, tile_n=tile_n,
                       tile_k=tile_k, bus_elems=bus_elems, operand_words=operand_words, sparse=sparse,
                       queue_depth=queue_depth, result_depth=result_depth)
        word_bits = bus_elems * operand_bits
        b_copy = {
            "b_set": In(1),
            "b_bitmap_wr_addr": In((tile_n - 1).bit_length() + 1),
            "b_bitmap_wr_data": In(tile_k),
            "b_bitmap_wr_en": In(1),
        } if sparse else {}
        super().__init__({
            "i_work": In(stream.Signature(work_item_layout(tile_m, tile_n, tile_k))),
            "a_bitmap": In(1),
            "b_bitmap": In(1),
            **b_copy,
            "a_base": In(range(operand_words)),
            "b_base": In(range(operand_words)),
            "a_addr": Out(range(operand_words)),
            "b_addr": Out(range(operand_words)),
            "a_word": In(word_bits),
            "b_word": In(word_bits),
            "o_result": Out(stream.Signature(lane_result_layout(tile_m, tile_n, acc_bits))),
            "issued": Out(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        p = self._p
        m = Module()
        k_bits = p["tile_k"]
        words_per_row = p["tile_k"] // p["bus_elems"]
        entry_layout = _queue_entry_layout(p["tile_m"], p["tile_n"], p["tile_k"])

        # ---- work queue: `queue_depth` registers used as a ring ----------------------------------
        # A ring (head and tail pointers) rather than a shift register: popping an item moves a
        # pointer, so the decision "this was the item's last k" (a carry chain and a zero test)
        # drives a few pointer bits instead of the enables of every queued bitmap.
        depth = p["queue_depth"]
        entries = [Signal(entry_layout, name=f"q{i}") for i in range(depth)]
        head_slot = Signal(range(depth))
        tail_slot = Signal(range(depth))
        started = Signal()              # the head item has issued its first k
        count = Signal(range(depth + 1))

        # ---- input register ------------------------------------------------------------------
        # The dispatcher's compaction (which pending item goes to which lane) ends here, at a
        # register, instead of at the enables of the queue entries: that path was the core's
        # critical path. The register counts as queue occupancy, so `ready` stays registered.
        in_valid = Signal()
        in_item = Signal.like(self.i_work.payload, name="in_item")
        m.d.comb += self.i_work.ready.eq(count + in_valid < depth)
        # Loaded every cycle, without an enable: only `in_valid` depends on the handshake, so the
        # compaction's select does not fan out to the enables of the whole item register.
        m.d.sync += [in_item.eq(self.i_work.payload), in_valid.eq(self.i_work.valid & self.i_work.ready)]
        # The item's B column bitmap, read from the lane's copy on the same edge (every cycle, as
        # the input register), arrives with it.
        in_bbits = Signal(k_bits)
        if p["sparse"]:
            # Addressed by Cat(n, set) on both ports: the read takes no adder (it ends the
            # dispatcher's compaction path). Each set spans 2**column_bits words, a few of them
            # unused when tile_n is not a power of two. (The write once used `set * tile_n + n`,
            # which differs from Cat(n, set) exactly then: issue 19's wrong results.)
            column_bits = (p["tile_n"] - 1).bit_length()
            m.submodules.b_bitmaps = b_copy = Memory(shape=unsigned(k_bits), depth=2 << column_bits, init=[])
            wr = b_copy.write_port()
            rd = b_copy.read_port()
            m.d.comb += [
                wr.addr.eq(self.b_bitmap_wr_addr), wr.data.eq(self.b_bitmap_wr_data), wr.en.eq(self.b_bitmap_wr_en),
                rd.addr.eq(Cat(self.i_work.payload.n, self.b_set)),
                in_bbits.eq(rd.data),
            ]

        def next_slot(slot):
            return Mux(slot == depth - 1, 0, slot + 1)

        tags = SyncFIFO(width=len(Cat(entries[0].item.m, entries[0].item.n, entries[0].item.masked)),
                        depth=p["result_depth"])
        m.submodules.tags = tags

        head = Signal(entry_layout)
        with m.Switch(head_slot):
            for i in range(depth):
                with m.Case(i):
                    m.d.comb += head.eq(entries[i])
        incoming = in_item
        incoming_work = Signal(k_bits)
        m.d.comb += incoming_work.eq(incoming.abits & in_bbits if p["sparse"] else (1 << k_bits) - 1)
        # One subtraction gives the lowest set bit, the bits below it and the bits above it.
        work_minus_one = Signal(k_bits)
        lowbit = Signal(k_bits - 1)     # the lowest set bit, one-hot, positions 1.. (0 encodes as 0)
        below = Signal(k_bits)
        rest = Signal(k_bits)
        m.d.comb += [
            work_minus_one.eq(head.work - 1),
            lowbit.eq((head.work & ~work_minus_one)[1:]),
            below.eq(~head.work & work_minus_one),
            rest.eq(head.work & work_minus_one),
        ]
        # The index of the one-hot lowest bit: bit j is the OR of the positions with bit j set (an
        # OR tree; a chain of "if bit i then i" assignments would be a priority chain k_bits long).
        k_index = Signal(range(k_bits))
        m.d.comb += k_index.eq(Cat(
            Cat(lowbit[i - 1] for i in range(1, k_bits) if (i >> j) & 1).any() for j in range(len(k_index))))

        # The first k of an item needs a result slot; later ones already own it. A slot is held
        # from the first k until the result leaves the lane (through the output register), so the
        # tag and result FIFOs never overflow and the PE lane's output is always accepted.
        in_flight = Signal(range(p["result_depth"] + 1))
        issue = Signal()
        m.d.comb += issue.eq((count != 0) & (started | (in_flight != p["result_depth"])))
        last = Signal()
        m.d.comb += last.eq(rest == 0)
        pop = issue & last
        push = in_valid        # the ring has room: `ready` counted the register in
        m.d.comb += [
            self.issued.eq(issue),
            tags.w_en.eq(issue & ~started),
            tags.w_data.eq(Cat(head.item.m, head.item.n, head.item.masked)),
        ]

        with m.If(issue):
            m.d.sync += started.eq(~last)
        m.d.sync += count.eq(count + push - pop)
        with m.If(pop):
            m.d.sync += head_slot.eq(next_slot(head_slot))
        with m.If(push):
            m.d.sync += tail_slot.eq(next_slot(tail_slot))
        # A push fills the tail slot; an issue writes the head's remaining work back (after the last
        # k that is 0, and the slot is free). They never meet: the head is the tail only when the
        # queue is empty (no issue) or full (no push).
        for i in range(depth):
            with m.If(push & (tail_slot == i)):
                m.d.sync += [entries[i].item.eq(incoming), entries[i].bbits.eq(in_bbits),
                             entries[i].work.eq(incoming_work)]
            with m.Elif(issue & (head_slot == i)):
                m.d.sync += entries[i].work.eq(rest)

        # ---- I1: rank of k among the stored values -------------------------------------------
        i1_valid = Signal()
        i1_first = Signal()
        i1_last = Signal()
        i1_k = Signal(range(k_bits))
        i1_m = Signal(range(p["tile_m"]))
        i1_n = Signal(range(p["tile_n"]))
        m.d.sync += [
            i1_valid.eq(issue),
            i1_first.eq(~started),
            i1_last.eq(last),
            i1_k.eq(k_index),
            i1_m.eq(head.item.m),
            i1_n.eq(head.item.n),
        ]
        if p["sparse"]:
            i1_a_below = Signal(k_bits)
            i1_b_below = Signal(k_bits)
            m.d.sync += [
                i1_a_below.eq(head.item.abits & below),
                i1_b_below.eq(head.bbits & below),
            ]

        # ---- IC: partial ranks: popcounts of 16-bit chunks (a 64-bit popcount and the address
        # arithmetic after it do not fit one clock period) --------------------------------------
        chunk = min(16, k_bits)
        chunks = -(-k_bits // chunk)
        ic_valid = Signal()
        ic_first = Signal()
        ic_last = Signal()
        ic_k = Signal.like(i1_k)
        ic_m = Signal.like(i1_m)
        ic_n = Signal.like(i1_n)
        m.d.sync += [
            ic_valid.eq(i1_valid),
            ic_first.eq(i1_first),
            ic_last.eq(i1_last),
            ic_k.eq(i1_k),
            ic_m.eq(i1_m),
            ic_n.eq(i1_n),
        ]
        if p["sparse"]:
            ic_a_parts, ic_b_parts = [], []
            for c in range(chunks):
                width = min(chunk, k_bits - c * chunk)
                for below_bits, parts, name in ((i1_a_below, ic_a_parts, "a"), (i1_b_below, ic_b_parts, "b")):
                    part = Signal(range(width + 1), name=f"ic_{name}_part{c}")
                    m.d.sync += part.eq(popcount(below_bits[c * chunk:c * chunk + width], width))
                    parts.append(part)

        # ---- I2: word addresses ----------------------------------------------------------------
        i2_valid = Signal()
        i2_first = Signal()
        i2_last = Signal()
        i2_a_rank = Signal(range(k_bits))
        i2_b_rank = Signal(range(k_bits))
        i2_m = Signal.like(i1_m)
        i2_n = Signal.like(i1_n)
        if p["sparse"]:
            a_rank = Mux(self.a_bitmap, _balanced_sum(ic_a_parts), ic_k)
            b_rank = Mux(self.b_bitmap, _balanced_sum(ic_b_parts), ic_k)
        else:
            a_rank = b_rank = ic_k
        m.d.sync += [
            i2_valid.eq(ic_valid),
            i2_first.eq(ic_first),
            i2_last.eq(ic_last),
            i2_a_rank.eq(a_rank),
            i2_b_rank.eq(b_rank),
            i2_m.eq(ic_m),
            i2_n.eq(ic_n),
        ]
        elem_bits = max(1, (p["bus_elems"] - 1).bit_length())
        m.d.comb += [
            self.a_addr.eq(self.a_base + i2_m * words_per_row + (i2_a_rank >> elem_bits if p["bus_elems"] > 1
                                                                  else i2_a_rank)),
            self.b_addr.eq(self.b_base + i2_n * words_per_row + (i2_b_rank >> elem_bits if p["bus_elems"] > 1
                                                                  else i2_b_rank)),
        ]

        # ---- I3: the memory words arrive; I4: registered words (the BRAM output register) -------
        i3_valid = Signal()
        i3_first = Signal()
        i3_last = Signal()
        i3_a_sel = Signal(range(max(2, p["bus_elems"])))
        i3_b_sel = Signal(range(max(2, p["bus_elems"])))
        m.d.sync += [
            i3_valid.eq(i2_valid),
            i3_first.eq(i2_first),
            i3_last.eq(i2_last),
            i3_a_sel.eq(i2_a_rank[:elem_bits] if p["bus_elems"] > 1 else 0),
            i3_b_sel.eq(i2_b_rank[:elem_bits] if p["bus_elems"] > 1 else 0),
        ]
        # Registering the whole words with no logic in between lets synthesis use the block RAM's
        # own output register; the element select then starts a clock period of its own.
        i4_valid = Signal()
        i4_first = Signal()
        i4_last = Signal()
        i4_a_sel = Signal.like(i3_a_sel)
        i4_b_sel = Signal.like(i3_b_sel)
        i4_a_word = Signal.like(self.a_word)
        i4_b_word = Signal.like(self.b_word)
        m.d.sync += [
            i4_valid.eq(i3_valid),
            i4_first.eq(i3_first),
            i4_last.eq(i3_last),
            i4_a_sel.eq(i3_a_sel),
            i4_b_sel.eq(i3_b_sel),
            i4_a_word.eq(self.a_word),
            i4_b_word.eq(self.b_word),
        ]
        ob = p["operand_bits"]
        m.submodules.pe = pe = PELane(operand_bits=ob, acc_bits=p["acc_bits"], counter_bits=8)
        m.d.comb += [
            pe.i_stream.valid.eq(i4_valid),
            pe.i_stream.payload.a.eq(i4_a_word.word_select(i4_a_sel, ob).as_signed()),
            pe.i_stream.payload.b.eq(i4_b_word.word_select(i4_b_sel, ob).as_signed()),
            pe.i_stream.payload.first.eq(i4_first),
            pe.i_stream.payload.last.eq(i4_last),
        ]

        # ---- results: in order, tagged; the tag FIFO slot guarantees room ------------------------
        results = SyncFIFO(width=p["acc_bits"], depth=p["result_depth"])
        m.submodules.results = results
        m.d.comb += [
            results.w_en.eq(pe.o_stream.valid),
            results.w_data.eq(pe.o_stream.payload.acc),
            pe.o_stream.ready.eq(results.w_rdy),
        ]
        # The output is a register: the FIFOs' read data (LUT RAM) and the banks' arbitration
        # across lanes would otherwise share one clock period.
        tag_m = tags.r_data[:len(i1_m)]
        tag_n = tags.r_data[len(i1_m):len(i1_m) + len(i1_n)]
        tag_masked = tags.r_data[-1]
        load = ~self.o_result.valid | self.o_result.ready
        m.d.comb += [
            results.r_en.eq(load),
            tags.r_en.eq(load & results.r_rdy),
        ]
        with m.If(load):
            m.d.sync += [
                self.o_result.valid.eq(results.r_rdy),
                self.o_result.payload.m.eq(tag_m),
                self.o_result.payload.n.eq(tag_n),
                self.o_result.payload.masked.eq(tag_masked),
                self.o_result.payload.value.eq(results.r_data),
            ]
        leaving = self.o_result.valid & self.o_result.ready
        m.d.sync += in_flight.eq(in_flight + (issue & ~started) - leaving)
        m.d.comb += self.idle.eq((count == 0) & ~in_valid & (in_flight == 0))
        return m
