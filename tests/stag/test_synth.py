"""The ECP5 synthesis flow on a real generated design (Yosys + nextpnr from PyPI)."""

from __future__ import annotations

from hw.config import preset
from hw.generate import generate
from stag.synth import synthesize_ecp5


def test_pe_lane_synthesizes_and_routes_on_ecp5(tmp_path):
    config = preset("tiny")
    report = synthesize_ecp5(generate(config, tmp_path / "rtl"), tmp_path / "synth")
    # One lane holds one multiplier; a 4x4-bit product fits a single MULT18X18D.
    assert report.dsp == 1
    # At least the pipeline registers: operands, product, accumulator, output, two counters.
    assert report.ff >= 2 * config.operand_bits + config.product_bits + 2 * config.acc_bits + 2 * config.counter_bits
    assert report.lut4 > 0
    assert report.fmax_mhz is not None and report.fmax_mhz > 0
