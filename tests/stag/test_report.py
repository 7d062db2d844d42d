"""``stag report``: the HTML page of a run, built from small but real outputs of the commands it reads.

The run directory is made the way the commands make it:

- ``stag demo``'s ``<algo>.metrics.json`` and ``<algo>.compare.json``: the real short training run
  (``make_digits_trace``, as the demo calls it) and the real lowering, encoding and cycle model
  (``trace_programs``, ``sim.compare.make_jobs``) of its iteration on the default design; only the
  simulator's records are written here instead of being measured (cosimulation takes minutes): in
  the format ``sim.tb_compare`` writes them (``values``, ``first_command_cycle``,
  ``tile_first_cycles``, ``tile_end_cycles``, ``counters``), with ref's own values (so every pass
  matches) and the model's cycles plus a small offset on some passes (the model is cycle-exact
  against the RTL; the offsets give the report a model error to show). The rows then come from the
  real ``sim.compare.compare_rows`` and ``stag.commands.compare.add_report_fields``, and are written
  as ``stag.commands.demo`` writes them.
- ``stag train``: the real command, 3 short epochs on 1024 samples.
- ``stag synth``: place and route takes tens of minutes, so its ``report.json`` is the real
  ``stag.synth.SynthReport`` dataclass filled with chosen figures, written as ``stag synth`` writes it.
- ``make bench``: its stored outputs in ``benchmarks/results/`` copied in, as ``--out`` would write them.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from hw.config import preset
from stag.cli import main
from stag.report.page import SECTIONS
from stag.report.ppa import DEFAULT_BASELINES
from stag.synth import SynthReport

ALGOS = ("dense", "swat")
BATCH = 4
#: Figures of the fixture's `stag synth` reports and of its baselines: design -> (run, baseline).
PPA = {
    "stag_default": ({"lut4": 31000, "carry": 3300, "ff": 22500, "dsp": 16, "bram": 74, "fmax_mhz": 55.5},
                     {"lut4": 32000, "carry": 3259, "ff": 22073, "dsp": 16, "bram": 72, "fmax_mhz": 50.0}),
    "stag_default_dense": ({"lut4": 23000, "carry": 3000, "ff": 12000, "dsp": 16, "bram": 74, "fmax_mhz": 53.0},
                           {"lut4": 23359, "carry": 3010, "ff": 12067, "dsp": 16, "bram": 74, "fmax_mhz": 53.52}),
}
#: Stored GMAC/s baselines of the fixture's throughput rows (core, algo).
BASE_GMACS = {("sparse", "dense"): 1.5, ("sparse", "swat"): 5.0, ("dense_same", "dense"): 0.3,
              ("dense_same", "swat"): 0.3}


def _fake_record(case, cycles: int, *, first: int = 7) -> dict:
    """A ``sim.tb_compare`` record of a run that returned ``case``'s expected beats in ``cycles``."""
    return {"values": list(case.expected), "first_command_cycle": first, "tile_first_cycles": [first + 10],
            "tile_end_cycles": [first + cycles - 1],
            "counters": {"macs_issued": case.effectual_macs, "macs_dense": case.dense_macs}}


def _write_demo(results: Path, scratch: Path) -> dict[str, dict]:
    """``stag demo --results results`` for ALGOS on the default design, simulator records aside; returns
    the summary rows."""
    from ref.contract.trace_programs import make_digits_trace, trace_programs
    from ref.traces import load_trace
    from sim.compare import compare_rows, make_jobs, total_row
    from sim.core_program import acc_buffers
    from stag.commands.compare import add_report_fields

    config = preset("default")
    results.mkdir(parents=True)
    summary = {}
    for algo in ALGOS:
        trace = load_trace(make_digits_trace(scratch / algo, algo=algo, batch_size=BATCH, train_subset=3 * BATCH))
        shutil.copyfile(scratch / algo / "metrics.json", results / f"{algo}.metrics.json")
        passes = trace_programs(trace, tile_m=config.tile_m, tile_n=config.tile_n, tile_k=config.tile_k,
                                operand_bits=config.operand_bits, acc_bits=config.acc_bits,
                                acc_buffers=acc_buffers(config))
        jobs = make_jobs(passes, config)
        records = {j.name: _fake_record(j.case, j.estimate.total + (3 if i % 4 == 1 else 0))
                   for i, j in enumerate(jobs)}
        dense_records = {j.name: _fake_record(j.dense_case, j.dense_estimate.total) for j in jobs}
        rows, mismatches = compare_rows(jobs, records, config, dense_records=dense_records)
        assert not mismatches
        add_report_fields(rows, jobs)
        for row in rows:
            row.update(algo=algo, iteration=trace.records[0].iteration, design=config.name, sims=["verilator"])
        (results / f"{algo}.compare.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        summary[algo] = {"algo": algo, **total_row(rows)}
    (results / "summary.json").write_text(json.dumps(list(summary.values()), indent=1) + "\n", encoding="utf-8")
    return summary


def _write_synth(work: Path, name: str, design: str) -> None:
    """``stag synth --work work`` of configuration ``name``: ``work/<name>/synth/report.json``."""
    figures = PPA[design][0]
    report = SynthReport(design=design, device="LFE5U-85F-CABGA381", cells={"LUT4": figures["lut4"]},
                         synth_seconds=60.0, pnr_seconds=400.0, routed=True, **figures)
    path = work / name / "synth" / "report.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")


def _write_baselines(directory: Path, dense_macs: int) -> None:
    """``benchmarks/results/`` as ``make bench`` writes it, with the fixture's baseline figures."""
    directory.mkdir()
    ppa = {"sparse": {**PPA["stag_default"][1], "routed": True, "pnr_note": ""},
           "dense": {**PPA["stag_default_dense"][1], "routed": True, "pnr_note": ""}}
    (directory / "skip_efficiency_summary.json").write_text(json.dumps({"ppa": ppa}, indent=1), encoding="utf-8")
    rows = [{"core": core, "algo": algo, "dense_macs": dense_macs, "cycles": 1, "gmacs": gmacs}
            for (core, algo), gmacs in BASE_GMACS.items()]
    (directory / "throughput.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    run = root / "run"
    summary = _write_demo(run / "demo", root / "scratch")
    assert main(["train", "--algo", "dense", "--epochs", "3", "--train-subset", "1024", "--no-progress",
                 "--out", str(run / "train" / "dense")]) == 0
    _write_synth(run, "default", "stag_default")
    _write_synth(run, "default_dense", "stag_default_dense")
    for name in ("skip_efficiency.json", "skip_efficiency_summary.json", "throughput.json"):
        (run / "bench").mkdir(exist_ok=True)
        shutil.copyfile(DEFAULT_BASELINES / name, run / "bench" / name)
    real_macs = {algo: sum(r["real_macs"] for r in json.loads((run / "demo" / f"{algo}.compare.json").read_text()))
                 for algo in summary}
    # The same iteration as benchmarks/throughput.py's, counted the same way (M x K x N per pass).
    stored = {r["algo"]: r["dense_macs"] for r in json.loads((DEFAULT_BASELINES / "throughput.json").read_text())}
    assert real_macs == {algo: stored[algo] for algo in summary}
    _write_baselines(root / "baselines", real_macs["dense"])
    return run


@pytest.fixture(scope="module")
def page(run_dir) -> str:
    out = run_dir / "report.html"
    assert main(["report", str(run_dir), "--baselines", str(run_dir.parent / "baselines")]) == 0
    return out.read_text(encoding="utf-8")


def _section(page: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert match, f"section {sid} missing"
    return match.group(1)


def _pngs(html: str) -> list[Image.Image]:
    images = []
    for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        images.append(image)
    return images


def _cells(table_row: str) -> list[str]:
    """The text of each cell, its lines (``<br>``) joined by ``|``."""
    return [re.sub(r"<[^>]+>", "", c.replace("<br>", "|")) for c in re.findall(r"<td[^>]*>(.*?)</td>", table_row)]


def _row_of(section: str, first: str, second: str | None = None) -> list[str]:
    for row in re.findall(r"<tr>(.*?)</tr>", section):
        cells = _cells(row)
        if cells and cells[0] == first and (second is None or cells[1].startswith(second)):
            return cells
    raise AssertionError(f"no row {first} {second or ''}")


def test_every_section_is_there_with_decodable_plots(page):
    for sid, title in SECTIONS:
        body = _section(page, sid)
        assert title in page
        assert 'class="missing"' not in body, (sid, body[:500])
    expected_plots = {"speedup": 2, "waterfall": 1, "model": 1, "accuracy": 1, "ppa": 0}
    for sid, count in expected_plots.items():
        images = _pngs(_section(page, sid))
        assert len(images) == count, sid
        for image in images:
            assert image.format == "PNG" and image.width > 400 and image.height > 200
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
            assert colours is None or len(colours) > 2, f"{sid}: a blank plot"
    # Self-contained: nothing is fetched from elsewhere.
    assert not re.search(r'(src|href)="(?!data:|#)', page)


def test_speedup_and_waterfall_numbers_follow_the_rows(run_dir, page):
    from stag.report.inputs import read_run

    for algo in ALGOS:
        rows = json.loads((run_dir / "demo" / f"{algo}.compare.json").read_text())
        total = next(s for s in json.loads((run_dir / "demo" / "summary.json").read_text()) if s["algo"] == algo)
        cells = _row_of(_section(page, "speedup"), algo)
        assert cells[4] == f"{total['dense_cycles']:,}" and cells[5] == f"{total['sparse_cycles']:,}"
        assert cells[6] == f"{total['speedup']:.2f}" and cells[7] == f"{total['ideal_speedup']:.2f}"
        # The waterfall's steps add up to the measured cycles, and the model's categories to the model's.
        (run,) = [r for r in read_run(run_dir).compares if r.label == algo]
        from stag.report.cycles import waterfall

        fall = waterfall(run)
        assert fall.broken_down and sum(c for _, c in fall.steps) == pytest.approx(total["sparse_cycles"])
        assert fall.model == sum(sum(r["model_breakdown"].values()) for r in rows)
        cells = _row_of(_section(page, "waterfall"), algo)
        assert cells[2] == f"{total['sparse_cycles']:,}"


def test_ppa_table_and_deltas_against_the_baseline(page):
    section = _section(page, "ppa")
    keys = ("lut4", "carry", "ff", "dsp", "bram", "fmax_mhz")
    for design, (value, base) in PPA.items():
        cells = _row_of(section, design, "default")
        assert cells[2] == "skip_efficiency_summary.json"
        for key, cell in zip(keys, cells[3:], strict=True):
            shown, shown_base, shown_delta = cell.split("|")
            number = "{:,}" if isinstance(value[key], int) else "{:.2f}"
            assert shown == number.format(value[key]) and shown_base == "base " + number.format(base[key])
            delta = value[key] - base[key]
            if delta == 0:
                assert shown_delta == "+0 (+0.0%)", (key, cell)
            else:
                text = f"{delta:+,.2f}" if isinstance(delta, float) else f"{delta:+,}"
                assert shown_delta == f"{text} ({100 * delta / base[key]:+.1f}%)", (key, cell)
    assert 'class="better">-1,000 (-3.1%)' in section        # fewer LUT4 is better
    assert 'class="worse">+2 (+2.8%)' in section            # more BRAM is worse
    assert 'class="better">+5.50 (+11.0%)' in section       # a faster clock is better


def test_throughput_rows_and_deltas(run_dir, page):
    section = _section(page, "ppa")
    summary = {s["algo"]: s for s in json.loads((run_dir / "demo" / "summary.json").read_text())}
    for (core, algo), base in BASE_GMACS.items():
        total = summary[algo]
        real_macs = sum(r["real_macs"] for r in json.loads((run_dir / "demo" / f"{algo}.compare.json").read_text()))
        cycles = total["sparse_cycles"] if core == "sparse" else total["dense_cycles"]
        fmax = PPA["stag_default" if core == "sparse" else "stag_default_dense"][0]["fmax_mhz"]
        gmacs = round(real_macs / cycles * fmax / 1e3, 3)
        cells = _row_of(section, core, algo)
        assert cells[3] == f"{cycles:,}" and cells[5] == f"{gmacs:.2f}" and cells[6] == f"{base:.2f}"
        assert cells[7].startswith(f"{gmacs - base:+,.2f}")
    # The copied make-bench throughput.json is a row source of its own, against the fixture baseline.
    assert "bench/throughput.json" in section


def test_accuracy_curves_from_demo_and_train(page):
    section = _section(page, "accuracy")
    # The demo's and stag train's dense runs, told apart by their files.
    assert _row_of(section, "dense (train/dense/metrics.json)")[2] == "3"
    assert _row_of(section, "dense (demo/dense.metrics.json)")[2] == "1"
    assert _row_of(section, "swat")[2] == "1"


def test_sections_without_inputs_name_their_command(tmp_path, capsys):
    run = tmp_path / "only_synth"
    _write_synth(run, "default", "stag_default")
    out = tmp_path / "page.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    page = out.read_text(encoding="utf-8")
    for sid in ("speedup", "waterfall", "model"):
        assert "no <code>stag compare</code> or <code>stag demo</code> output found in RUN_DIR" in _section(page, sid)
    assert "run <code>stag demo --results RUN_DIR</code>" in _section(page, "accuracy")
    # Against the stored baselines of this checkout: the default core's row has its deltas.
    cells = _row_of(_section(page, "ppa"), "stag_default")
    assert cells[2] == "skip_efficiency_summary.json" and cells[3].split("|")[2] != "-"
    assert not list(run.rglob("*.html")) and not list(tmp_path.glob(".page.html.*"))


def test_rows_from_before_the_report_and_a_broken_file(run_dir, tmp_path, capsys):
    """A demo's compare.json as written before `stag report` (no algo, design, model breakdown or real
    MACs) still gets its speedup, a waterfall of ideal / model / measured, and notes saying what to
    rerun; a corrupt input file is listed as skipped."""
    run = tmp_path / "old"
    run.mkdir()
    added = {"algo", "iteration", "design", "sims", "model_breakdown", "model_lane_imbalance", "real_macs"}
    rows = [{k: v for k, v in r.items() if k not in added}
            for r in json.loads((run_dir / "demo" / "swat.compare.json").read_text())]
    (run / "swat.compare.json").write_text(json.dumps(rows, indent=1) + "\n")
    (run / "dense.compare.json").write_text("[{")
    assert main(["report", str(run)]) == 0
    capsys.readouterr()
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "skipped dense.compare.json: unreadable JSON" in _section(page, "inputs")
    assert _row_of(_section(page, "speedup"), "swat")[6] == f"{_total_speedup(rows):.2f}"
    waterfall = _section(page, "waterfall")
    assert "rows without the cycle model's breakdown" in waterfall and len(_pngs(waterfall)) == 1
    assert "its rows name no design" in _section(page, "ppa")


def _total_speedup(rows: list[dict]) -> float:
    return sum(r["dense_cycles"] for r in rows) / sum(r["sparse_cycles"] for r in rows)


def test_write_atomically_leaves_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    import os

    from stag.commands.report import write_atomically

    target = tmp_path / "report.html"
    write_atomically(target, "old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, "new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


@pytest.mark.parametrize("make", ["missing", "empty", "unrelated"])
def test_bad_run_dir_is_one_error_line_exit_2_and_no_file(make, tmp_path, capsys):
    run = tmp_path / "run"
    if make != "missing":
        run.mkdir()
    if make == "unrelated":
        (run / "notes.txt").write_text("nothing to report\n")
        (run / "compare.json").write_text("{not json")
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(run), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("stag report: error: RUN_DIR ") and str(run) in captured.err
    assert not out.exists() and not (run / "report.html").exists()


def test_headless_chromium_renders_the_page(run_dir, page, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: run `make system-packages` (Debian package chromium)"
    shot = tmp_path / "page.png"
    result = subprocess.run([chromium, "--headless", "--disable-gpu", "--no-sandbox", f"--screenshot={shot}",
                             "--window-size=1280,4000", "--hide-scrollbars", "--user-data-dir=" + str(tmp_path / "p"),
                             (run_dir / "report.html").resolve().as_uri()],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    image = Image.open(shot)
    assert image.format == "PNG" and image.size == (1280, 4000)
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, "the screenshot is blank"
