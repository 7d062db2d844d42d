"""The ECP5 synthesis flow on a real generated design (Yosys + nextpnr from PyPI)."""

from __future__ import annotations

from hw.config import preset
from hw.generate import generate
from stag.synth import synthesize_ecp5


def test_core_synthesizes_and_routes_on_ecp5(tmp_path):
    config = preset("tiny")
    report = synthesize_ecp5(generate(config, tmp_path / "rtl"), tmp_path / "synth")
    # Two multipliers per lane, each in a single MULT18X18D: the lane's 4x4-bit product and the
    # result-path pruner's draw x tau (8 x 7 bits) for that lane's element of a result beat.
    assert report.dsp == 2 * config.lanes
    # At least each lane's MAC pipeline registers (operands, product, accumulator) and the counters.
    assert report.ff >= config.lanes * (2 * config.operand_bits + config.product_bits + config.acc_bits) + (
        5 + config.lanes) * config.counter_bits
    assert report.lut4 > 0
    assert report.fmax_mhz is not None and report.fmax_mhz > 0


def test_module_costs_cover_the_top_and_every_unit(tmp_path):
    import dataclasses

    from stag.cost import module_costs, write_costs

    config = dataclasses.replace(preset("tiny"), name="tiny_cost", units=("pe_lane", "lfsr"))
    design = generate(config, tmp_path / "rtl")
    lines: list[str] = []
    costs = module_costs(design, tmp_path / "cost", progress=lines.append)
    assert list(costs) == ["top", "pe_lane", "lfsr"]
    assert len(lines) == 3
    # The core has two multipliers per lane (the MAC and the result-path pruner's draw x tau), the
    # lone PE lane one, the LFSR none.
    assert [costs[k].dsp for k in costs] == [2 * config.lanes, 1, 0]
    # The LFSR keeps at least its state in flip-flops.
    assert costs["lfsr"].ff >= config.lfsr_width
    assert costs["top"].lut4 > costs["pe_lane"].lut4 > 0
    write_costs(costs, tmp_path / "cost.json")
    assert (tmp_path / "cost.json").read_text().count('"lut4"') == 3


def test_place_and_route_stopped_at_its_time_limit_reports_not_routed(tmp_path):
    """A congested design can keep nextpnr's router busy for hours: with a time limit the flow
    stops it and reports the cell counts with ``routed=False`` and no Fmax instead of hanging."""
    config = preset("tiny")
    report = synthesize_ecp5(generate(config, tmp_path / "rtl"), tmp_path / "synth", pnr_timeout_s=0.5)
    assert report.routed is False and report.fmax_mhz is None
    assert report.pnr_seconds is not None and report.pnr_seconds < 30
    assert report.lut4 > 0 and report.dsp == 2 * config.lanes  # Yosys ran to the end
