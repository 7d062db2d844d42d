"""Payload layouts shared by the RTL, the Amaranth testbenches and the cocotb drivers.

Each layout is made by one function of its parameters, so every user of a payload (RTL stream
signatures, ``ctx.set`` dicts in Amaranth tests, ``Layout.const``/``from_bits`` in cocotb) packs
and unpacks the same bits. Fields are packed LSB-first in declaration order (Amaranth
``data.StructLayout``); nobody writes bit offsets by hand.
"""

from __future__ import annotations

from amaranth import signed
from amaranth.lib import data

__all__ = ["mac_request_layout", "mac_result_layout"]


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
