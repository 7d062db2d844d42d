"""The ECP5 synthesis flow on a real generated design (Yosys + nextpnr from PyPI)."""

from __future__ import annotations

from hw.config import preset
from hw.generate import generate
from stag.synth import synthesize_ecp5


def test_core_synthesizes_and_routes_on_ecp5(tmp_path):
    config = preset("tiny")
    report = synthesize_ecp5(generate(config, tmp_path / "rtl"), tmp_path / "synth")
    # One multiplier per lane; a 4x4-bit product fits a single MULT18X18D.
    assert report.dsp == config.lanes
    # At least each lane's MAC pipeline registers (operands, product, accumulator) and the counters.
    assert report.ff >= config.lanes * (2 * config.operand_bits + config.product_bits + config.acc_bits) + (
        5 + config.lanes) * config.counter_bits
    assert report.lut4 > 0
    assert report.fmax_mhz is not None and report.fmax_mhz > 0
