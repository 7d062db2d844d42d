"""Payload layouts shared by the RTL, the Amaranth testbenches and the cocotb drivers.

Each layout is made by one function of its parameters, so every user of a payload (RTL stream
signatures, ``ctx.set`` dicts in Amaranth tests, ``Layout.const``/``from_bits`` in cocotb) packs
and unpacks the same bits. Fields are packed LSB-first in declaration order (Amaranth
``data.StructLayout``); nobody writes bit offsets by hand.
"""

from __future__ import annotations

from amaranth import signed
from amaranth.lib import data

__all__ = ["OP_DRAIN", "OP_GEMM", "ROUNDING_CODES", "core_command_layout", "core_command_layout_for",
           "mac_request_layout", "mac_result_layout", "vector_command_layout"]


def mac_request_layout(operand_bits: int) -> data.StructLayout:
    """One multiply-accumulate request to a PE lane.

    Fields
    ------
    a, b : signed(operand_bits)
        The operands; the lane multiplies them only when both are nonzero.
    first : 1 bit
        Start a new accumulation: the accumulator is cleared before this product is added.
    last : 1 bit
        End of the accumulation: the accumulator value after this product is emitted.
    """
    return data.StructLayout({
        "a": signed(operand_bits),
        "b": signed(operand_bits),
        "first": 1,
        "last": 1,
    })


def mac_result_layout(acc_bits: int) -> data.StructLayout:
    """One finished accumulation leaving a PE lane: ``acc`` is signed(acc_bits), two's complement."""
    return data.StructLayout({"acc": signed(acc_bits)})


#: ``core_command_layout`` opcodes.
OP_GEMM = 0
OP_DRAIN = 1

#: Drain rounding codes, in the order of ``ref.contract.commands.ROUNDINGS``.
ROUNDING_CODES: dict[str, int] = {"half_away": 0, "half_even": 1, "floor": 2}


def core_command_layout(acc_index_bits: int, resprop_word_bits: int = 1,
                        resprop_sample_bits: int = 1) -> data.StructLayout:
    """One command to the sparse core (``hw.core.SparseCore.i_cmd``); see docs/core.md.

    ``resprop_word_bits`` and ``resprop_sample_bits`` size the ``rs_*`` fields
    (``StagConfig.resprop_word_bits`` / ``resprop_sample_bits``); use :func:`core_command_layout_for`.

    Fields
    ------
    op : 1 bit
        :data:`OP_GEMM` (a ``TileGemm``; its operands follow on the data stream) or
        :data:`OP_DRAIN` (a ``Drain``; no data, one output tile leaves on ``o_data``).
    acc : acc_index_bits
        Accumulator tile the command writes (GEMM) or reads (DRAIN).
    accumulate : 1 bit
        GEMM: add to the accumulator's previous value instead of clearing it.
    a_bitmap, b_bitmap : 1 bit each
        GEMM: operand A / B arrives bitmap-compressed (bitmap + packed nonzeros) instead of dense.
    has_mask : 1 bit
        GEMM: an output mask follows the operands; without it every output is computed.
    shift : 6 bits
        DRAIN: arithmetic right shift 0..62 before rounding.
    out_bits : 6 bits
        DRAIN: saturate to ``out_bits`` signed bits (2..32); 0 is a raw read-out.
    rounding : 2 bits
        DRAIN: one of :data:`ROUNDING_CODES`.
    relu : 1 bit
        DRAIN: clamp negative results to 0.
    prune : 1 bit
        DRAIN: stochastically prune the requantized codes on the result path (``out_bits`` must be
        ``operand_bits``; threshold and LFSR from the core's ``prune_*`` inputs).
    topk : 1 bit
        DRAIN: the mask bit of each element is the top-K keep bit ``|code| >= topk_threshold``
        (the core's input) instead of ``code > 0``; requantized drains only, not with ``prune``.
    resprop : 1 bit
        DRAIN: emit ReSprop's sparse difference ``S`` against the stored sample P (the core's
        ``resprop_*`` inputs) and ``S != 0`` as the mask bit; requantized, ``out_bits <=
        operand_bits``, without ``relu``, ``prune`` or ``topk``.
    rs_word, rs_row, rs_col : resprop_word_bits each; rs_sample : resprop_sample_bits
        DRAIN with ``resprop``: where the tile's first element sits in P. Its output row ``row0``
        is row ``rs_row = row0 mod R`` of sample ``rs_sample = row0 div R``; its column tile is
        ``rs_col = col0 / tile_n``; ``rs_word = rs_row * row_words + rs_col * tile_n / lanes`` is
        the P word of that element (``row_words``: P words per row, the ``resprop_row_words`` input).
    """
    return data.StructLayout({
        "op": 1,
        "acc": acc_index_bits,
        "accumulate": 1,
        "a_bitmap": 1,
        "b_bitmap": 1,
        "has_mask": 1,
        "shift": 6,
        "out_bits": 6,
        "rounding": 2,
        "relu": 1,
        "prune": 1,
        "topk": 1,
        "resprop": 1,
        "rs_word": resprop_word_bits,
        "rs_row": resprop_word_bits,
        "rs_col": resprop_word_bits,
        "rs_sample": resprop_sample_bits,
    })


def vector_command_layout(acc_index_bits: int, tile_m: int, tile_k: int, resprop_word_bits: int = 1,
                          resprop_sample_bits: int = 1) -> data.StructLayout:
    """One command to the vector core (``hw.vector_core.VectorCore.i_cmd``).

    The fields of :func:`core_command_layout` that the vector core uses (``op``, ``acc``,
    ``accumulate``, ``a_bitmap``, ``has_mask``, ``shift``, ``out_bits``, ``rounding``, ``relu``,
    ``prune``, ``topk``, ``resprop`` and the ``rs_*`` place of a ReSprop drain in P, whose words
    are the ``vector`` codes of one result beat), and for a GEMM the part of the tile that is sent
    (``ref.vector_extent``):

    rows : range(tile_m + 1)
        A's rows (and mask rows) on the data stream; later rows are not visited.
    k_len : range(tile_k + 1)
        B's rows on the data stream and the length of a dense A row; A is zero beyond it.
    """
    return data.StructLayout({
        "op": 1,
        "acc": acc_index_bits,
        "accumulate": 1,
        "a_bitmap": 1,
        "has_mask": 1,
        "rows": range(tile_m + 1),
        "k_len": range(tile_k + 1),
        "shift": 6,
        "out_bits": 6,
        "rounding": 2,
        "relu": 1,
        "prune": 1,
        "topk": 1,
        "resprop": 1,
        "rs_word": resprop_word_bits,
        "rs_row": resprop_word_bits,
        "rs_col": resprop_word_bits,
        "rs_sample": resprop_sample_bits,
    })


def core_command_layout_for(config) -> data.StructLayout:
    """:func:`core_command_layout` for a ``hw.config.StagConfig``."""
    return core_command_layout(config.acc_index_bits, config.resprop_word_bits, config.resprop_sample_bits)
