"""The AXI4-Lite register map of the accelerator top level (``hw.axi_top``): offsets and fields.

One place for every address and bit position: the RTL decodes them from here and the cocotb driver
(``sim.axi_driver``) accesses them from here; docs/interface.md describes them, and its register
table is checked against this module by tests/sim/test_interface_doc.py.

All registers are 32 bits wide at 4-byte-aligned byte addresses in a 4 KiB window
(``ADDR_BITS = 12``). Address bits [1:0] are ignored (a read returns the whole word, a write
changes the bytes that WSTRB selects). An access to a word that is not mapped gets ``SLVERR``
(reads return 0, writes change nothing). Writes to a read-only register are ignored and get
``OKAY``.
"""

from __future__ import annotations

from hw.config import StagConfig
from hw.layouts import core_command_layout_for

__all__ = [
    "ADDR_BITS",
    "CMD_COUNT",
    "CONFIG_BASE",
    "CONFIG_FIELDS",
    "COUNTER_BASE",
    "CTRL",
    "CTRL_IRQ_EN",
    "ID",
    "ID_VALUE",
    "MAPPED",
    "PRUNE_SEED",
    "PRUNE_SUM",
    "PRUNE_TAU",
    "RESPROP_COLS",
    "RESPROP_CTRL",
    "RESPROP_CTRL_DENSE",
    "RESPROP_EXP_NEXT",
    "RESPROP_LOAD",
    "RESPROP_LOAD_GO",
    "RESPROP_NNZ",
    "RESPROP_P_DATA",
    "RESPROP_P_INDEX",
    "RESPROP_ROWS",
    "RESPROP_ROW_WORDS",
    "RESPROP_SAMPLE",
    "RESPROP_SAMPLES",
    "RESPROP_SETTINGS",
    "RESPROP_TARGET",
    "RESPROP_THR_EXP",
    "RESPROP_THR_MANT",
    "SCRATCH",
    "SNAPSHOT",
    "SNAPSHOT_TAKE",
    "STATUS",
    "STATUS_DONE",
    "STATUS_IDLE",
    "STATUS_IRQ",
    "STATUS_PAD_ERROR",
    "TILE_COUNT",
    "TOPK_THRESHOLD",
    "VERSION",
    "VERSION_VALUE",
    "StreamWidths",
    "config_offset",
    "counter_names",
    "counter_offset",
    "mapped_offsets",
    "stream_widths",
]

#: Width of ``s_axil_awaddr`` / ``s_axil_araddr`` (byte addresses; a 4 KiB window).
ADDR_BITS = 12

# ---- control and status (offsets in bytes) ------------------------------------------------------
ID = 0x000          #: RO, the constant ID_VALUE
VERSION = 0x004     #: RO, interface version: major in [31:16], minor in [15:0]
CTRL = 0x008        #: RW, bit 0 IRQ_EN
STATUS = 0x00C      #: bit 0 IDLE (RO), bit 1 DONE (W1C), bit 2 IRQ (RO), bit 3 PAD_ERROR (W1C)
SNAPSHOT = 0x010    #: WO, write bit 0 = 1 to copy every performance counter into the snapshot
SCRATCH = 0x014     #: RW, 32 bits with no effect (bus check); honours WSTRB
CMD_COUNT = 0x018   #: RO, commands accepted on s_axis_cmd since reset (32 bits, wraps)
TILE_COUNT = 0x01C  #: RO, result tiles completed on m_axis_result (TLAST beats taken) since reset (wraps)
PRUNE_TAU = 0x020   #: RW, the result-path pruner's tau (prune_tau_bits; 0 bypasses), taken by a PRUNE_SEED write
PRUNE_SEED = 0x024  #: RW, write a nonzero seed: load tau and the seed into the pruner and clear PRUNE_SUM
PRUNE_SUM = 0x028   #: RO, sum of |g| over the pruning drains' codes since the last PRUNE_SEED write, bits [31:0]
TOPK_THRESHOLD = 0x02C  #: RW, SWAT's stored top-K threshold (operand_bits) that the ``topk`` drains compare with

# ---- ReSprop on the result path (hw.drain_resprop; whole-word writes, between programs) ----------
RESPROP_THR_MANT = 0x0C0   #: RW, the threshold's mantissa (operand_bits): threshold = THR_MANT * 2**THR_EXP
RESPROP_THR_EXP = 0x0C4    #: RW, the threshold's exponent, signed 8 bits (reads sign-extended)
RESPROP_TARGET = 0x0C8     #: RW, the x2 / /2 controller's nonzero target in hundredths of a percent (14 bits)
RESPROP_ROWS = 0x0CC       #: RW, R: output rows per sample (>= 1)
RESPROP_COLS = 0x0D0       #: RW, C: output columns (>= 1)
RESPROP_ROW_WORDS = 0x0D4  #: RW, P words per output row: ceil(C / tile_n) * tile_n / lanes
RESPROP_SAMPLES = 0x0D8    #: RW, N: the batch (the output has N * R rows)
RESPROP_SAMPLE = 0x0DC     #: RW, j: the sample stored as the next P (>= N: none)
RESPROP_CTRL = 0x0E0       #: RW, bit 0 DENSE: S = g (a dense iteration)
RESPROP_LOAD = 0x0E4       #: WO, write bit 0 = 1: begin a pass (take the registers above, swap P if stored, clear NNZ)
RESPROP_NNZ = 0x0E8        #: RO, nonzero S of the resprop drains since the last RESPROP_LOAD, bits [31:0]
RESPROP_EXP_NEXT = 0x0EC   #: RO, the exponent after this pass's x2 / /2 step (sign-extended): the next THR_EXP
RESPROP_P_INDEX = 0x0F0    #: RW, element address r * ROW_WORDS * lanes + c of P[r, c]
RESPROP_P_DATA = 0x0F4     #: RW, the P code at P_INDEX (read sign-extended); each access then steps P_INDEX by 1

#: ASCII "STAG".
ID_VALUE = 0x5354_4147
#: Interface version 1.3 (1.1: ReLU mask bits above the values in each result beat; the result-path
#: pruner: the command's ``prune`` bit and PRUNE_TAU, PRUNE_SEED, PRUNE_SUM. 1.2: the result-path
#: top-K comparator: the command's ``topk`` bit and TOPK_THRESHOLD. 1.3: ReSprop's difference on the
#: result path: the command's ``resprop`` and ``rs_*`` fields and the RESPROP_* registers).
VERSION_VALUE = 0x0001_0003

CTRL_IRQ_EN = 1 << 0
STATUS_IDLE = 1 << 0
STATUS_DONE = 1 << 1
STATUS_IRQ = 1 << 2
STATUS_PAD_ERROR = 1 << 3
SNAPSHOT_TAKE = 1 << 0
RESPROP_CTRL_DENSE = 1 << 0
RESPROP_LOAD_GO = 1 << 0

#: The ReSprop pass settings: core input ``resprop_<name>`` (``sim.core_program.resprop_inputs``
#: names) <- the register at this offset. ``dense`` is RESPROP_CTRL's bit 0.
RESPROP_SETTINGS: dict[str, int] = {
    "mant": RESPROP_THR_MANT, "exp": RESPROP_THR_EXP, "target": RESPROP_TARGET, "rows": RESPROP_ROWS,
    "cols": RESPROP_COLS, "row_words": RESPROP_ROW_WORDS, "samples": RESPROP_SAMPLES, "sample": RESPROP_SAMPLE,
    "dense": RESPROP_CTRL,
}

# ---- configuration readback (RO constants) ------------------------------------------------------
CONFIG_BASE = 0x040
#: One 32-bit register each, at ``CONFIG_BASE + 4 * index``.
CONFIG_FIELDS: tuple[str, ...] = (
    "operand_bits", "acc_bits", "max_reduction", "lanes", "tile_m", "tile_n", "tile_k", "bus_elems",
    "accumulators", "sparse", "counter_bits", "acc_index_bits", "cmd_bits", "cmd_tdata_bits", "data_bits",
    "data_tdata_bits", "result_bits", "result_tdata_bits", "drain_beats", "counters",
)

# ---- performance counters (RO, from the snapshot) -----------------------------------------------
#: Counter ``f`` has its low word at ``COUNTER_BASE + 8 * f`` and its high word 4 bytes above.
COUNTER_BASE = 0x100

CMD_COUNT_BITS = 32
TILE_COUNT_BITS = 32


def _bytes(bits: int) -> int:
    return 8 * -(-bits // 8)


class StreamWidths:
    """The core's payload widths and the AXI4-Stream ``tdata`` widths (whole bytes) around them."""

    def __init__(self, config: StagConfig) -> None:
        self.cmd_bits = core_command_layout_for(config).size
        self.data_bits = config.bus_bits
        self.result_bits = config.result_bits
        self.cmd_tdata_bits = _bytes(self.cmd_bits)
        self.data_tdata_bits = _bytes(self.data_bits)
        self.result_tdata_bits = _bytes(self.result_bits)


def stream_widths(config: StagConfig) -> StreamWidths:
    return StreamWidths(config)


def counter_names(lanes: int) -> tuple[str, ...]:
    """Counters in ``hw.core.counters_layout`` order: five totals, then ``lane_busy[j]``."""
    return ("cycles", "macs_issued", "macs_dense", "input_starved", "output_stalled",
            *(f"lane_busy{j}" for j in range(lanes)))


def counter_offset(index: int, high: bool = False) -> int:
    """Byte offset of counter ``index``'s low (or high) 32-bit word."""
    return COUNTER_BASE + 8 * index + (4 if high else 0)


def config_offset(field: str) -> int:
    """Byte offset of the configuration register ``field`` (one of :data:`CONFIG_FIELDS`)."""
    return CONFIG_BASE + 4 * CONFIG_FIELDS.index(field)


#: Control and status registers (every address below CONFIG_BASE that is mapped).
MAPPED: tuple[int, ...] = (ID, VERSION, CTRL, STATUS, SNAPSHOT, SCRATCH, CMD_COUNT, TILE_COUNT, PRUNE_TAU, PRUNE_SEED,
                           PRUNE_SUM, TOPK_THRESHOLD, RESPROP_THR_MANT, RESPROP_THR_EXP, RESPROP_TARGET,
                           RESPROP_ROWS, RESPROP_COLS, RESPROP_ROW_WORDS, RESPROP_SAMPLES, RESPROP_SAMPLE,
                           RESPROP_CTRL, RESPROP_LOAD, RESPROP_NNZ, RESPROP_EXP_NEXT, RESPROP_P_INDEX,
                           RESPROP_P_DATA)


def mapped_offsets(lanes: int) -> tuple[int, ...]:
    """Every mapped byte offset for a core with ``lanes`` lanes (all others answer SLVERR)."""
    n = len(counter_names(lanes))
    return (*MAPPED, *(config_offset(f) for f in CONFIG_FIELDS),
            *(counter_offset(i, high) for i in range(n) for high in (False, True)))
