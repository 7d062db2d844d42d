"""``stag compare`` and its engine (``sim.compare``): real training layers through the RTL.

- One full training iteration of the digits CNN (every conv and linear layer, FWD, BWI and BWW)
  through the tiny design's AXI top on Verilator, for dense and each of the five algorithms: every
  result beat equal to ``ref`` (itself checked against torch's pass on the integer codes), the MAC
  counters equal to ``ref``'s counts, and the cycle model within 5 % of the measured cycles.
- The same iteration of one algorithm on Icarus gives the same records (values and cycles).
- The mismatch locator, on a result that was deliberately made wrong on the ``ref`` side: it must
  name exactly the element that was changed, and the FST it writes must cover only its window.
- The command line: a small run on both simulators, and clear errors that leave no output behind.

The iteration is captured with batch 2 so that the six replays fit the ``make test`` budget; the
default preset replays batch 8 in ``make regress``.
"""

from __future__ import annotations

import dataclasses
import json
import struct

import pytest

from hw.config import preset
from ref.contract.trace_programs import make_digits_trace, trace_programs
from ref.policies.registry import ALGOS
from ref.traces import load_trace
from sim.compare import compare_rows, locate_mismatch, make_jobs, replay, write_mismatch_wave
from sim.crosscheck import record_differences
from stag.cli import main

BATCH = 2
TRAIN_SEED = 0


def _passes(tmp_path, config, algo, **kwargs):
    print(f"digits trace: algo={algo} seed={TRAIN_SEED} batch={BATCH}")
    trace = load_trace(make_digits_trace(tmp_path / "trace", algo=algo, seed=TRAIN_SEED, batch_size=BATCH,
                                         train_subset=3 * BATCH))
    return trace, trace_programs(trace, tile_m=config.tile_m, tile_n=config.tile_n, tile_k=config.tile_k,
                                 operand_bits=config.operand_bits, acc_bits=config.acc_bits, **kwargs)


@pytest.mark.parametrize("algo", ALGOS)
def test_training_iteration_bit_exact(algo, tmp_path, built_designs):
    config = preset("tiny")
    design, runner = built_designs("tiny", "verilator", "axi")
    trace, passes = _passes(tmp_path, config, algo)
    layers = [lay["name"] for lay in trace.manifest["layers"]]
    # Every layer with all three passes, except the first layer's BWI, which training never runs.
    assert [(p.layer, p.pass_) for p in passes] == [
        (name, pass_) for name in layers for pass_ in ("fwd", "bwi", "bww") if (name, pass_) != (layers[0], "bwi")]
    assert all(not p.truncated for p in passes)
    jobs = make_jobs(passes, config)      # raises if ref's evaluator and torch's pass differ
    records = replay(design, "verilator", [job.case for job in jobs], tmp_path / "work", progress=print,
                     runner=runner)
    rows, mismatches = compare_rows(jobs, records, config, dense_records=None)
    assert not mismatches, "\n".join(m.describe() for m in mismatches)
    for row, job in zip(rows, jobs, strict=True):
        assert row["match"] and row["counters_match"], row
        record = records[job.name]
        # No backpressure in these runs: a tile's beats leave on consecutive cycles (the locator
        # derives a beat's cycle from its tile's first beat).
        spans = [end - first for first, end in zip(record["tile_first_cycles"], record["tile_end_cycles"],
                                                   strict=True)]
        assert spans == [job.case.drain_beats - 1] * len(spans)
        assert row["model_error"] <= 0.05, row
        print(f"{algo} {row['layer']}.{row['pass']}: {row['sparse_cycles']} cycles, model {row['model_cycles']}, "
              f"{row['effectual_macs']}/{row['dense_macs']} MACs")
    # The policies' sparsity reached the RTL: fewer MACs issued than dense in every algorithm.
    assert sum(r["effectual_macs"] for r in rows) < sum(r["dense_macs"] for r in rows)


@pytest.mark.long
def test_icarus_and_verilator_agree_on_an_iteration(tmp_path, built_designs):
    """A whole relu_mask iteration through the AXI top on both simulators, record for record (make
    test runs the same comparison on two layers of SWAT: test_cli_compare_both_simulators)."""
    config = preset("tiny")
    _, passes = _passes(tmp_path, config, "relu_mask")
    jobs = make_jobs(passes, config)
    record_dirs = []
    for sim in ("icarus", "verilator"):
        design, runner = built_designs("tiny", sim, "axi")
        records = replay(design, sim, [job.case for job in jobs], tmp_path / sim, progress=print, runner=runner)
        _, mismatches = compare_rows(jobs, records, config, dense_records=None)
        assert not mismatches, "\n".join(m.describe() for m in mismatches)
        record_dirs.append(tmp_path / sim / "run" / f"{config.name}_{sim}" / "records")
    assert record_differences(*record_dirs) == []


def _fst_time_span_ps(path) -> tuple[int, int]:
    """Start and end time of an FST file, from its header block (type 0, length 329, then the
    big-endian start and end times)."""
    head = path.read_bytes()[:25]
    assert head[0] == 0 and struct.unpack(">Q", head[1:9])[0] == 329, "not an FST header block"
    return struct.unpack(">Q", head[9:17])[0], struct.unpack(">Q", head[17:25])[0]


def test_mismatch_is_located_and_its_window_dumped(tmp_path, built_designs):
    config = preset("tiny")
    design, runner = built_designs("tiny", "verilator", "axi")
    _, passes = _passes(tmp_path, config, "zero_skip", layers=["conv2"], passes=["fwd"], max_gemms=3)
    (job,) = make_jobs(passes, config)
    records = replay(design, "verilator", [job.case], tmp_path / "work", progress=print, runner=runner)
    assert locate_mismatch(job, records[job.name], config) is None

    # Make ref's expectation wrong in one element that some lane computes: tile 1, row 2, column 3.
    tile, row, col = 1, 2, 3
    groups = config.tile_n // config.lanes
    beat = row * groups + col // config.lanes
    bank = col % config.lanes
    index = tile * job.case.drain_beats + beat
    expected = list(job.case.expected)
    expected[index] ^= 1 << (bank * config.acc_bits)       # flip the element's lowest bit
    bad = dataclasses.replace(job, case=dataclasses.replace(job.case, expected=expected))
    mismatch = locate_mismatch(bad, records[job.name], config)

    assert mismatch is not None and mismatch.mismatching_elements == 1
    drains = [i for i, c in enumerate(job.program.commands) if type(c).__name__ == "Drain"]
    assert (mismatch.layer, mismatch.pass_, mismatch.command, mismatch.tile) == ("conv2", "fwd", drains[tile], tile)
    assert (mismatch.row, mismatch.col, mismatch.bank, mismatch.beat) == (row, col, bank, beat)
    region = job.program.drain_regions[tile]
    assert (mismatch.matrix_row, mismatch.matrix_col) == (region.row0 + row, region.col0 + col)
    got = records[job.name]["values"][index] >> (bank * config.acc_bits) & ((1 << config.acc_bits) - 1)
    assert mismatch.got - mismatch.want in (1, -1) and (mismatch.got - got) % (1 << config.acc_bits) == 0
    assert mismatch.cycle == records[job.name]["tile_first_cycles"][tile] + beat
    # The element's work: one item per GEMM of the tile that has an effectual MAC for it.
    assert mismatch.lanes, "the chosen element should have effectual MACs"
    for gemm, lane, first_mac, last_mac in mismatch.lanes:
        assert drains[tile - 1] < gemm < drains[tile] and 0 <= lane < config.lanes
        assert first_mac <= last_mac < mismatch.cycle
    print(mismatch.describe())

    wave = write_mismatch_wave(design, bad, mismatch, tmp_path / "wave", tmp_path / "mismatch.fst", margin=8)
    assert wave.reproduced and wave.last == mismatch.cycle + 8
    assert wave.first == min(first for _, _, first, _ in mismatch.lanes) - 8
    start, end = _fst_time_span_ps(wave.path)
    assert end - start == (wave.last + 1 - wave.first) * 10_000, (start, end, wave)   # 10 ns cycles, in ps
    # The lanes' own results for the element, seen on their o_result streams in the rerun: one per
    # GEMM that has an item for it, each equal to ref's partial sum of that GEMM (the RTL is right;
    # only the expectation was changed).
    print(wave.describe(mismatch))
    with_items = {gemm for gemm, _, _, _ in mismatch.lanes}
    assert sorted(g for g, _, _, _ in wave.lane_results) == sorted(with_items)
    partials = {gemm: partial for gemm, _, _, partial in mismatch.gemms}
    for gemm, cycle, lane, value in wave.lane_results:
        assert value == partials[gemm] and 0 <= lane < config.lanes and cycle < mismatch.cycle


@pytest.mark.long
def test_cli_compare_both_simulators(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compare", "--algo", "swat", "--train", "--batch", "1", "--preset", "tiny", "--layers", "conv2,fc",
            "--max-tiles", "2", "--sim", "both", "--rtl", str(tmp_path / "rtl"), "--work", str(tmp_path / "work"),
            "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "icarus and verilator agree" in text and "[1/6] conv2.fwd" in text
    rows = json.loads((out / "compare.json").read_text())
    assert [(r["layer"], r["pass"]) for r in rows] == [(layer, p) for layer in ("conv2", "fc")
                                                       for p in ("fwd", "bwi", "bww")]
    keys = {"layer", "pass", "match", "dense_macs", "effectual_macs", "dense_cycles", "sparse_cycles", "speedup",
            "fraction_of_ideal", "model_cycles"}
    for r in rows:
        assert keys <= set(r) and r["match"] and r["dense_cycles_source"] == "rtl"
        assert r["speedup"] == pytest.approx(r["dense_cycles"] / r["sparse_cycles"])
        if r["effectual_macs"]:
            assert r["fraction_of_ideal"] == pytest.approx(r["speedup"] * r["effectual_macs"] / r["dense_macs"])
        else:   # nothing effectual (e.g. an all-zero gradient): no ideal speedup to compare with
            assert r["ideal_speedup"] is None and r["fraction_of_ideal"] is None


@pytest.mark.parametrize(("args", "message"), [
    (["--train"], "--algo is required with --train"),
    (["--algo", "swat", "--passes", "fwd,sideways"], "--passes must name passes from fwd, bwi, bww"),
    (["--algo", "swat", "--layers", "conv9"], "layers must be names from the trace"),
    (["--algo", "swat", "--iteration", "3"], "--iteration must be in [0, 1)"),
])
def test_cli_compare_rejects_bad_input(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", "--preset", "tiny", "--batch", "1", "--out", str(out), "--rtl", str(tmp_path / "rtl"),
                 "--work", str(tmp_path / "work"), *args]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_demo_replays_training_layers(tmp_path, capsys):
    """`stag demo` end to end on the tiny preset, one algorithm, batch 1."""
    results = tmp_path / "results"
    argv = ["demo", "--preset", "tiny", "--algos", "relu_mask", "--batch", "1", "--out", str(tmp_path / "rtl"),
            "--work", str(tmp_path / "work"), "--results", str(results)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "== summary" in text and "lint       clean" in text
    (summary,) = json.loads((results / "summary.json").read_text())
    rows = json.loads((results / "relu_mask.compare.json").read_text())
    assert summary["algo"] == "relu_mask" and summary["match"] and summary["passes"] == len(rows) == 11
    assert summary["sparse_cycles"] == sum(r["sparse_cycles"] for r in rows)
    assert all(r["dense_cycles_source"] == "rtl" for r in rows)


@pytest.mark.long
def test_cli_compare_reports_a_mismatch(tmp_path, capsys, monkeypatch):
    """The command's mismatch path: one expected element of the first pass is changed on the ref
    side; the command must exit 1, name the element, write the FST and show the lanes' results."""
    import sim.compare

    real_make_jobs = sim.compare.make_jobs

    def make_jobs_with_a_wrong_expectation(passes, config):
        jobs = real_make_jobs(passes, config)
        expected = list(jobs[0].case.expected)
        expected[0] ^= 1                       # tile 0, row 0, column 0: bank 0's lowest bit
        jobs[0] = dataclasses.replace(jobs[0], case=dataclasses.replace(jobs[0].case, expected=expected))
        return jobs

    monkeypatch.setattr(sim.compare, "make_jobs", make_jobs_with_a_wrong_expectation)
    out = tmp_path / "out"
    argv = ["compare", "--algo", "zero_skip", "--train", "--batch", "1", "--preset", "tiny", "--layers", "conv2",
            "--passes", "fwd", "--max-tiles", "1", "--dense-cycles", "model", "--rtl", str(tmp_path / "rtl"),
            "--work", str(tmp_path / "work"), "--out", str(out)]
    assert main(argv) == 1
    text = capsys.readouterr().out
    assert "MISMATCH conv2 fwd: first mismatch at command" in text and "(DRAIN of tile 0), tile element (0, 0)" in text
    assert "what the RTL's lanes computed for that element:" in text
    assert (out / "mismatch_conv2_fwd.fst").stat().st_size > 0
    (row,) = json.loads((out / "compare.json").read_text())
    assert row["match"] is False and row["mismatching_elements"] == 1 and row["dense_cycles_source"] == "model"
