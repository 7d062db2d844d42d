"""The configuration type: presets, TOML files, derived values and every kind of invalid input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hw.config import MAX_ACC_BITS, PRESETS, ConfigError, StagConfig, load_config, preset
from ref.lfsr import is_maximal

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_presets_include_tiny_and_default():
    assert {"tiny", "default"} <= set(PRESETS)
    for name, config in PRESETS.items():
        assert config.name == name


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_shipped_toml_files_equal_their_presets(name):
    assert load_config(CONFIGS / f"{name}.toml") == preset(name)


def test_dense_baseline_file_is_the_default_with_sparsity_off():
    assert load_config(CONFIGS / "default_dense.toml") == dataclasses.replace(
        preset("default"), name="default_dense", sparse=False)


def test_accumulator_width_is_derived_from_operands_and_reduction():
    config = StagConfig(name="x", operand_bits=8, max_reduction=1024)
    # 2 * 8 product bits + log2(1024) = 10 guard bits.
    assert config.acc_bits == 26
    assert StagConfig(name="x", operand_bits=4, max_reduction=1, tile_k=1, bus_elems=1).acc_bits == 8


def test_accumulator_width_holds_the_worst_case_sum():
    for bits in (2, 4, 8):
        for reduction in (1, 2, 64):
            config = StagConfig(name="x", operand_bits=bits, max_reduction=reduction, tile_k=1, bus_elems=1)
            worst = reduction * (1 << (bits - 1)) ** 2  # every product is (-2**(b-1))**2
            assert worst <= (1 << (config.acc_bits - 1)) - 1


def test_accumulator_wider_than_64_bits_is_rejected_naming_operand_bits():
    """Issue 19: ``operand_bits = 32`` generated a core with ``acc_bits = 88`` whose regression then
    failed ("acc_bits must be in [2, 64]"): the golden model's accumulators are int64. The widest
    operands for a max_reduction are accepted (acc_bits = 64 exactly), one bit more is not."""
    with pytest.raises(ConfigError, match=(
            r"^config field 'operand_bits': expected at most 24 with max_reduction = 65536 \(the accumulator, "
            r"2 \* operand_bits \+ log2\(max_reduction\) = 80 bits, must fit the golden model's 64-bit "
            r"integers\), got 32$")):
        dataclasses.replace(preset("default"), operand_bits=32)
    with pytest.raises(ConfigError, match=r"config field 'operand_bits': expected at most 24 .* got 25$"):
        dataclasses.replace(preset("default"), operand_bits=25)
    assert dataclasses.replace(preset("default"), operand_bits=24).acc_bits == MAX_ACC_BITS == 64
    widest = StagConfig(name="x", operand_bits=32, max_reduction=1, tile_k=1, bus_elems=1)
    assert widest.acc_bits == 64
    with pytest.raises(ConfigError, match="config field 'operand_bits': expected at most 31 with max_reduction = 4"):
        StagConfig(name="x", operand_bits=32, max_reduction=4, tile_k=4, bus_elems=4)


def test_accumulator_limit_is_the_golden_models():
    from ref.contract.commands import MAX_ACC_BITS as REF_MAX_ACC_BITS

    assert MAX_ACC_BITS == REF_MAX_ACC_BITS


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_preset_lfsr_taps_are_maximal_length(name):
    config = preset(name)
    assert is_maximal(config.lfsr_width, config.lfsr_taps)


def test_toml_unit_list_becomes_a_tuple(tmp_path):
    path = tmp_path / "u.toml"
    path.write_text('name = "u"\nunits = []\n')
    assert load_config(path).units == ()
    path.write_text('name = "u"\nunits = ["lfsr"]\n')
    assert load_config(path).units == ("lfsr",)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        preset("tiny").operand_bits = 5


@pytest.mark.parametrize("field,value,message", [
    ("name", "Default", "config field 'name'.*got 'Default'"),
    ("name", "9lives", "config field 'name'"),
    ("name", 7, "config field 'name'"),
    ("operand_bits", 1, "config field 'operand_bits': expected an integer in 2..32, got 1"),
    ("operand_bits", 33, "config field 'operand_bits': expected an integer in 2..32, got 33"),
    ("operand_bits", "8", r"config field 'operand_bits': expected an integer in 2..32, got '8' \(str\)"),
    ("operand_bits", True, r"config field 'operand_bits'.*got True \(bool\)"),
    ("operand_bits", 8.0, r"config field 'operand_bits'.*\(float\)"),
    ("max_reduction", 0, "config field 'max_reduction': expected an integer in 1..16777216, got 0"),
    ("max_reduction", 100, "config field 'max_reduction': expected a power of two, got 100"),
    ("counter_bits", 4, "config field 'counter_bits': expected an integer in 8..64, got 4"),
    ("units", ["lfsr", "fft"],
     (r"config field 'units': expected distinct names from pe_lane, lfsr, relu_mask, mask_apply, topk, resprop, "
      r"bitmap_encode, bitmap_decode, stochastic_pruner, axi, got \['lfsr', 'fft'\]")),
    ("lanes", 0, r"config field 'lanes': expected an integer in 1\.\.64, got 0"),
    ("lanes", 6, r"config field 'lanes': expected a power of two, got 6"),
    ("tile_n", 12, r"config field 'tile_n': expected a multiple of lanes = 8"),
    ("tile_k", 60, r"config field 'tile_k': expected a multiple of bus_elems = 8"),
    ("bus_elems", 3, r"config field 'bus_elems': expected a power of two, got 3"),
    ("max_reduction", 32, r"config field 'max_reduction': expected at least tile_k = 64"),
    ("accumulators", 0, r"config field 'accumulators': expected an integer in 1\.\.16, got 0"),
    ("sparse", 1, r"config field 'sparse': expected true or false, got 1"),
    ("tile_m", 0, r"config field 'tile_m': expected an integer in 1\.\.256, got 0"),
    ("units", ["lfsr", "lfsr"], "config field 'units': expected distinct names"),
    ("units", "lfsr", "config field 'units': expected a list of unit names"),
    ("lfsr_width", 40, "config field 'lfsr_width': expected an integer in 2..32, got 40"),
    ("lfsr_taps", 0x1008, "config field 'lfsr_taps': expected a 16-bit feedback mask with bit 15 set, got 0x1008"),
    ("lfsr_seed", 0, "config field 'lfsr_seed': expected an integer in 1..65535, got 0"),
])
def test_invalid_field_names_field_value_and_allowed(field, value, message):
    fields = {"name": "x", field: value}
    with pytest.raises(ConfigError, match=message):
        StagConfig(**fields)


def test_unknown_key_is_named_with_the_allowed_fields(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\noperand_bitz = 8\n')
    with pytest.raises(ConfigError, match=r"unknown field\(s\) 'operand_bitz'; allowed fields are name, "):
        load_config(path)


def test_missing_name_is_an_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("operand_bits = 8\n")
    with pytest.raises(ConfigError, match="missing required field 'name'"):
        load_config(path)


def test_toml_type_error_names_the_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\ncounter_bits = "wide"\n')
    with pytest.raises(ConfigError, match=r"config field 'counter_bits'.*'wide'"):
        load_config(path)


def test_malformed_toml_and_missing_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "absent.toml")


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="preset 'huge' does not exist; available presets are default, tiny"):
        preset("huge")


def test_resolved_holds_fields_and_derived_values():
    resolved = preset("default").resolved()
    assert resolved["fields"] == {"name": "default", "operand_bits": 8, "max_reduction": 65536,
                                  "counter_bits": 32,
                                  "units": ["pe_lane", "lfsr", "relu_mask", "mask_apply", "topk", "resprop",
                                            "bitmap_encode", "bitmap_decode", "stochastic_pruner", "axi"],
                                  "lfsr_width": 16, "lfsr_taps": 0xD008, "lfsr_seed": 1, "lanes": 8, "tile_m": 16,
                                  "tile_n": 16, "tile_k": 64, "bus_elems": 16, "accumulators": 2, "sparse": True,
                                  "topk_max_elems": 16384, "resprop_max_elems": 1024, "resprop_max_batch": 256,
                                  "prune_frac_bits": 16, "prune_count_bits": 24}
    assert resolved["derived"]["acc_bits"] == 32
    assert StagConfig.from_dict(resolved["fields"]) == preset("default")
