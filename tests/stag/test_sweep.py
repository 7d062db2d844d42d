"""``stag sweep``: the spec, its errors, the Pareto front, the cache, invalid points and synthesis."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hw.config import preset
from stag.cli import main
from stag.cluster import Executor
from stag.sweep import SpecError, load_spec, pareto_front, parse_spec, read_results, run_sweep
from stag.sweep import run as sweep_run
from stag.synth import SynthReport

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sweep_small.toml"


def spec_file(directory: Path, text: str, name: str = "spec.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- the spec ------------------------------------------------------------------------------------------
def test_points_are_the_grids_products_on_every_workload():
    spec = parse_spec({"name": "s", "workloads": ["dense", "swat"],
                       "grid": [{"lanes": [4, 8], "sparse": [True, False]},
                                {"core": "vector", "base": "default", "lanes": 4, "vector": [8, 16]},
                                {"lanes": 8, "sparse": True}]})  # a repeat of the first grid's point
    points = spec.points()
    assert len(points) == (4 + 2) * 2
    # The last field varies fastest; each configuration on every workload in the spec's order.
    assert [(p.label, p.workload) for p in points[:4]] == [
        ("sparse/default lanes=4 sparse=true", "dense"), ("sparse/default lanes=4 sparse=true", "swat"),
        ("sparse/default lanes=4 sparse=false", "dense"), ("sparse/default lanes=4 sparse=false", "swat")]
    assert points[8].label == "vector/default lanes=4 vector=8"
    # A point's fields are its base's with the grid's fields set.
    assert points[0].fields == {**{k: v for k, v in preset("default").to_dict().items() if k != "name"},
                                "lanes": 4, "sparse": True}
    assert points[8].fields["target"] == "ecp5" and points[8].fields["vector"] == 8
    # Keys: distinct per point, stable, and shared synthesis per configuration.
    assert len({p.key for p in points}) == len(points)
    assert [p.key for p in points] == [p.key for p in spec.points()]
    assert points[0].config_key == points[1].config_key and points[0].key != points[1].key


def test_keys_depend_on_what_is_evaluated():
    base = {"name": "s", "workloads": ["dense"], "grid": {"lanes": 4}}
    off, cells, route = (parse_spec({**base, "synth": s}).points()[0] for s in (False, "cells", True))
    assert len({off.key, cells.key, route.key}) == 3
    longer = parse_spec({**base, "synth": True, "pnr_timeout_min": 60}).points()[0]
    assert longer.key != route.key and longer.config_key == route.config_key
    # Setting a field to its base value is the same point.
    same = [parse_spec({**base, "grid": grid}).points()[0].key for grid in ({"lanes": 8}, {})]
    assert same[0] == same[1]


def test_units_take_lists_as_values():
    spec = parse_spec({"name": "s", "workloads": ["dense"], "grid": {"units": [["lfsr"], []]}})
    assert [p.fields["units"] for p in spec.points()] == [["lfsr"], []]
    one = parse_spec({"name": "s", "workloads": ["dense"], "grid": {"units": ["lfsr", "axi"]}})
    assert [p.fields["units"] for p in one.points()] == [["lfsr", "axi"]]


def test_example_specs_parse():
    spec = load_spec(EXAMPLE)
    assert spec.synth == "off" and len(spec.points()) >= 20
    assert len(load_spec(EXAMPLE.with_name("sweep_cycle_model.toml")).points()) >= 50
    synth = load_spec(EXAMPLE.with_name("sweep_synth_small.toml"))
    assert synth.synth == "route" and len({p.config_key for p in synth.points()}) == 4


BAD_SPECS = [
    ('workloads = ["dense"]\n[grid]\nlanes = [4]\n', "'name'", "missing"),
    ('name = "Bad Name"\nworkloads = ["dense"]\n[grid]\nlanes = [4]\n', "'name'", "lower-case"),
    ('name = "s"\n[grid]\nlanes = [4]\n', "'workloads'", "dense, relu_mask"),
    ('name = "s"\nworkloads = ["dense", "nope"]\n[grid]\nlanes = [4]\n', "'workloads'", "swat"),
    ('name = "s"\nworkloads = ["dense"]\nsynth = "yes"\n[grid]\nlanes = [4]\n', "'synth'", '"cells"'),
    ('name = "s"\nworkloads = ["dense"]\n', "'grid'", "missing"),
    ('name = "s"\nworkloads = ["dense"]\ngrids = 1\n[grid]\nlanes = [4]\n', "'grids'", "allowed keys are"),
    ('name = "s"\nworkloads = ["dense"]\n[grid]\nlanez = [4]\n', "'grid.lanez'", "operand_bits"),
    ('name = "s"\nworkloads = ["dense"]\n[[grid]]\ncore = "gpu"\n', "'grid[0].core'", "'sparse', 'vector'"),
    ('name = "s"\nworkloads = ["dense"]\n[[grid]]\nlanes = [4]\n[[grid]]\ncore = "vector"\nbase = "tiny"\n',
     "'grid[1].base'", "'default'"),
    ('name = "s"\nworkloads = ["dense"]\n[grid]\nlanes = []\n', "'grid.lanes'", "non-empty"),
    ('name = "s"\nworkloads = ["dense"]\npnr_timeout_min = 0\n[grid]\nlanes = [4]\n', "'pnr_timeout_min'",
     "positive"),
    ('name = "s"\nworkloads = ["dense"\n', "spec.toml", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "key", "allowed"), BAD_SPECS)
def test_bad_spec_is_one_error_line_exit_2_nothing_written(tmp_path, capsys, text, key, allowed):
    out = tmp_path / "out"
    status = main(["sweep", str(spec_file(tmp_path, text)), "--serial", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("stag sweep: error: ") and err.count("\n") == 1
    assert key in err and allowed in err
    assert not out.exists()


def test_missing_spec_file_and_conflicting_options(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.toml"), "--serial"]) == 2
    assert "cannot read sweep spec" in capsys.readouterr().err
    spec = spec_file(tmp_path, 'name = "s"\nworkloads = ["dense"]\n[grid]\nlanes = [4]\n')
    assert main(["sweep", str(spec), "--serial", "--num-cpus", "2", "--out", str(tmp_path / "o")]) == 2
    assert "--num-cpus" in capsys.readouterr().err and not (tmp_path / "o").exists()


# ---- the Pareto front -----------------------------------------------------------------------------------
def test_pareto_front_on_hand_made_points():
    # (throughput up, cost down): B beats A in both; C and D tie exactly; E is best in throughput.
    points = {"A": (1.0, 10.0), "B": (2.0, 8.0), "C": (3.0, 20.0), "D": (3.0, 20.0), "E": (5.0, 40.0),
              "F": (4.0, 40.0), "G": (0.5, 5.0), "H": (2.0, 9.0)}
    names = list(points)
    front = pareto_front([points[n] for n in names], ("max", "min"))
    assert sorted(names[i] for i in front) == ["B", "C", "D", "E", "G"]
    # Both maximized (throughput up, Fmax up).
    front = pareto_front([(1, 5), (2, 4), (2, 5), (0, 9)], ("max", "max"))
    assert front == [2, 3]
    with pytest.raises(ValueError, match="'max' or 'min'"):
        pareto_front([(1, 2)], ("up", "down"))


def test_pareto_front_matches_brute_force_on_random_points():
    rng = random.Random(7)
    for _ in range(20):
        values = [(rng.randint(0, 6), rng.randint(0, 6)) for _ in range(rng.randint(1, 12))]
        # Independent formulation: a point is kept when no other has >= throughput and <= cost with a
        # strict improvement; written out over every pair.
        expected = []
        for i, (t, c) in enumerate(values):
            beaten = False
            for j, (t2, c2) in enumerate(values):
                if j != i and t2 >= t and c2 <= c and (t2 > t or c2 < c):
                    beaten = True
            if not beaten:
                expected.append(i)
        assert pareto_front(values, ("max", "min")) == expected


# ---- running -------------------------------------------------------------------------------------------
def test_local_ray_sweep_then_rerun_skips_every_point(tmp_path, capsys):
    spec = spec_file(tmp_path, 'name = "tiny_sweep"\nworkloads = ["dense"]\n'
                               '[grid]\nbase = "default"\nlanes = [4, 8, 32]\n')
    out = tmp_path / "runs"
    assert main(["sweep", str(spec), "--num-cpus", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = out / "tiny_sweep" / "results.jsonl"
    lines = [json.loads(text) for text in results.read_text().splitlines()]
    assert len(lines) == 3
    by_lanes = {line["overrides"]["lanes"]: line for line in lines}
    # lanes = 32 does not divide tile_n = 16: reported with the configuration's error, not a crash.
    assert by_lanes[32]["status"] == "invalid"
    assert "tile_n" in by_lanes[32]["error"] and "multiple of lanes = 32" in by_lanes[32]["error"]
    assert "[1/3] sparse/default lanes=32 | dense: invalid: config field 'tile_n'" in printed
    for lanes in (4, 8):
        assert by_lanes[lanes]["status"] == "ok" and by_lanes[lanes]["multipliers"] == lanes
        assert by_lanes[lanes]["macs_per_cycle"] == pytest.approx(
            by_lanes[lanes]["dense_macs"] / by_lanes[lanes]["cycles"], abs=1e-4)
    assert by_lanes[4]["cycles"] > by_lanes[8]["cycles"]
    assert "3 points: 0 skipped (cached), 2 evaluated, 1 invalid" in printed
    assert (out / "tiny_sweep" / "pareto.png").stat().st_size > 0
    table = (out / "tiny_sweep" / "pareto.md").read_text()
    assert "multipliers (no synthesis" in table and "lanes=8" in table and "1 invalid points" in table

    assert main(["sweep", str(spec), "--num-cpus", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 points, 3 skipped (cached), 0 to evaluate" in printed
    assert "3 points: 3 skipped (cached), 0 evaluated" in printed
    assert len(results.read_text().splitlines()) == 3


def fake_report(design: str, lut4: int, fmax: float | None) -> SynthReport:
    return SynthReport(design=design, device="LFE5U-85F-CABGA381", cells={}, lut4=lut4, carry=10, ff=100, dsp=2,
                       bram=1, fmax_mhz=fmax, synth_seconds=1.0, pnr_seconds=1.0, routed=fmax is not None)


def test_synthesis_once_per_configuration_and_reused_on_rerun(tmp_path, monkeypatch):
    calls = []

    def synthesize(core, config, work_dir, *, place_and_route, pnr_timeout_s):
        calls.append((config.lanes, place_and_route, pnr_timeout_s))
        # 4 lanes does not route (as a congested design); 8 lanes at 50 MHz.
        return fake_report("sweep", 1000 * config.lanes, None if config.lanes == 4 else 50.0)

    monkeypatch.setattr(sweep_run.cores, "synthesize", synthesize)
    spec = parse_spec({"name": "syn", "out": str(tmp_path), "workloads": ["dense", "swat"], "synth": True,
                       "pnr_timeout_min": 2, "grid": {"lanes": [4, 8]}})
    outcome = run_sweep(spec, Executor(serial=True), progress=lambda line: None)
    assert sorted(calls) == [(4, True, 120.0), (8, True, 120.0)]
    assert outcome.evaluated == 4
    for line in outcome.lines:
        assert line["lut4"] == 1000 * line["overrides"]["lanes"]
        if line["overrides"]["lanes"] == 8:
            assert line["gmacs"] == pytest.approx(line["dense_macs"] / line["cycles"] * 50.0 / 1e3, rel=1e-4)
        else:
            assert line["routed"] is False and line["gmacs"] is None
    # Only routed points are on the fronts; the others are named beside them.
    assert [len(rows) for rows in outcome.fronts.lines.values()] == [1, 1]
    assert "not routed" in outcome.table.read_text()
    # A new workload on the same configurations: cycle model only, the synthesis comes from the cache.
    calls.clear()
    more = parse_spec({"name": "syn", "out": str(tmp_path), "workloads": ["dense", "swat", "relu_mask"],
                       "synth": True, "pnr_timeout_min": 2, "grid": {"lanes": [4, 8]}})
    outcome = run_sweep(more, Executor(serial=True), progress=lambda line: None)
    assert calls == [] and outcome.skipped == 4 and outcome.evaluated == 2
    assert {line["lut4"] for line in outcome.lines if line["workload"] == "relu_mask"} == {4000, 8000}


def test_failed_synthesis_is_an_error_line_retried_next_run(tmp_path, monkeypatch):
    def broken(core, config, work_dir, *, place_and_route, pnr_timeout_s):
        raise RuntimeError("yosys failed on stag_sweep")

    monkeypatch.setattr(sweep_run.cores, "synthesize", broken)
    spec = parse_spec({"name": "broken", "out": str(tmp_path), "workloads": ["dense"], "synth": "cells",
                       "grid": {"lanes": [8]}})
    outcome = run_sweep(spec, Executor(serial=True), progress=lambda line: None)
    assert outcome.errors == 1 and "synthesis: RuntimeError: yosys failed" in outcome.lines[0]["error"]
    monkeypatch.setattr(sweep_run.cores, "synthesize",
                        lambda core, config, work_dir, **kw: fake_report("sweep", 900, None))
    outcome = run_sweep(spec, Executor(serial=True), progress=lambda line: None)
    assert outcome.skipped == 0 and outcome.evaluated == 1 and outcome.lines[0]["lut4"] == 900
    assert len(read_results(outcome.results)) == 1


def test_cycle_model_rejecting_a_configuration_is_an_invalid_point(tmp_path):
    # Valid for hw.config, but wider than the traces' codes (16 bits): the lowering says so.
    spec = parse_spec({"name": "wide", "out": str(tmp_path), "workloads": ["dense"],
                       "grid": {"operand_bits": [24], "max_reduction": [256]}})
    outcome = run_sweep(spec, Executor(serial=True), progress=lambda line: None)
    assert outcome.invalid == 1
    assert outcome.lines[0]["error"].startswith("cycle model: operand_bits must be an int in [2, 16]")


def test_spec_error_is_a_value_error():
    with pytest.raises(SpecError, match="key 'workloads'"):
        parse_spec({"name": "s", "workloads": [], "grid": {}})
