"""Generation: deterministic files, port metadata from the signature, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hw.config import preset
from hw.generate import generate


def read_all(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_generation_is_byte_identical_across_runs(tmp_path, name):
    first = read_all(generate(preset(name), tmp_path / "a").directory)
    second = read_all(generate(preset(name), tmp_path / "b").directory)
    assert first == second
    units = ("pe_lane", "lfsr", "relu_mask", "mask_apply", "topk", "resprop", "bitmap_encode", "bitmap_decode",
             "stochastic_pruner", "axi")
    assert preset(name).units == units
    assert set(first) == {f"stag_{name}.v", f"{name}.ports.json", f"stag_{name}.f", f"{name}.config.json", f"{name}.f",
                          *(f"stag_{name}_{u}.v" for u in units), *(f"{name}.{u}.ports.json" for u in units),
                          *(f"stag_{name}_{u}.f" for u in units), f"stag_{name}.core",
                          *(f"stag_{name}_{u}.core" for u in units), f"stag_{name}.vlt", f"tb_stag_{name}_axi.v"}
    # GeneratedDesign.files() names exactly what is written (the CLI prints it).
    listed = [path for path, _ in generate(preset(name), tmp_path / "c").files()]
    assert sorted(path.name for path in listed) == sorted(first)


def test_files_describe_the_design(tmp_path):
    config = preset("default")
    design = generate(config, tmp_path)
    verilog = design.verilog.read_text()
    assert f"module {config.top_name}(" in verilog
    assert "src =" not in verilog  # no absolute source paths: emit_src=False
    ports = json.loads(design.ports.read_text())
    members = ports["interface"]["members"]
    # op, acc, accumulate, a_bitmap, b_bitmap, has_mask, shift, out_bits, rounding, relu, prune, topk,
    # resprop; rs_word, rs_row, rs_col: 7 bits each for 1024 / 8 lanes = 128 P words per bank;
    # rs_sample: 9 bits for batches up to 256
    assert members["i_cmd"]["members"]["payload"]["width"] == (1 + 1 + 1 + 1 + 1 + 1 + 6 + 6 + 2 + 1 + 1 + 1 + 1
                                                               + 3 * 7 + 9)
    assert members["i_data"]["members"]["payload"]["width"] == config.bus_elems * config.operand_bits
    # lanes values and their lanes mask bits
    assert members["o_data"]["members"]["payload"]["width"] == config.lanes * config.acc_bits + config.lanes
    # cycles, macs_issued, macs_dense, input_starved, output_stalled, one busy counter per lane
    assert members["counters"]["width"] == (5 + config.lanes) * config.counter_bits
    for port in ("i_cmd__payload", "i_data__payload", "o_data__payload", "counters", "idle", "clk", "rst",
                 "prune_tau", "prune_seed", "prune_load", "prune_sum", "topk_threshold", "resprop_load",
                 "resprop_mant", "resprop_exp", "resprop_target", "resprop_exp_next", "resprop_rows",
                 "resprop_cols", "resprop_row_words", "resprop_samples", "resprop_sample", "resprop_dense",
                 "resprop_nnz", "resprop_p_addr", "resprop_p_wdata", "resprop_p_we", "resprop_p_rdata"):
        assert port in verilog
    assert json.loads(design.resolved_config.read_text()) == config.resolved()
    assert design.filelist.read_text().split() == [design.verilog.name,
                                                   *(f"{config.top_name}_{u}.v" for u in config.units)]
    # Each module's own file list: its file, then those of the modules it instantiates (the AXI
    # top instantiates the core), nothing else.
    assert design.filelist_of(None).read_text().split() == [f"{config.top_name}.v"]
    assert design.filelist_of("axi").read_text().split() == [f"{config.top_name}_axi.v", f"{config.top_name}.v"]
    for unit in config.units:
        if unit != "axi":
            assert design.filelist_of(unit).read_text().split() == [f"{config.top_name}_{unit}.v"], unit
    pe_lane = json.loads(design.ports_of("pe_lane").read_text())["interface"]["members"]
    assert pe_lane["i_stream"]["members"]["payload"]["width"] == 2 * 8 + 2  # a, b, first, last
    assert pe_lane["o_stream"]["members"]["payload"]["width"] == config.acc_bits
    lfsr = json.loads(design.ports_of("lfsr").read_text())["interface"]["members"]
    assert lfsr["o_stream"]["members"]["payload"]["width"] == config.lfsr_width
    assert f"module {config.top_name}_lfsr(" in design.verilog_of("lfsr").read_text()


def test_units_can_be_switched_off(tmp_path):
    import dataclasses

    config = dataclasses.replace(preset("tiny"), units=())
    design = generate(config, tmp_path)
    assert sorted(p.name for p in design.directory.iterdir()) == [
        "stag_tiny.core", "stag_tiny.f", "stag_tiny.v", "stag_tiny.vlt", "tiny.config.json", "tiny.f",
        "tiny.ports.json"]


def test_regeneration_replaces_the_directory(tmp_path):
    design = generate(preset("tiny"), tmp_path)
    (design.directory / "stale.txt").write_text("left over")
    generate(preset("tiny"), tmp_path)
    assert not (design.directory / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # no staging or retired directories


def test_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []
    original = Path.write_text

    def failing_write_text(self, *args, **kwargs):
        calls.append(self.name)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing_write_text)
    with pytest.raises(OSError, match="disk full"):
        generate(preset("tiny"), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
