"""The PPA and throughput tables: a run's ECP5 figures against the baselines stored in
``benchmarks/results/``.

Baselines (by the file formats ``make bench`` and ``benchmarks/route_vector_core.py`` write):

- ``skip_efficiency_summary.json``: ``ppa.sparse`` is the default preset's core (Verilog module
  ``stag_default``), ``ppa.dense`` its dense baseline (``configs/default_dense.toml``,
  ``stag_default_dense``);
- every other ``*.json`` directly in the directory that is a ``stag.synth.SynthReport`` (a
  ``design`` and its ``lut4``, ``ff``, ``dsp``, ``bram``, ``fmax_mhz``), e.g.
  ``vector_core_sparse.json``, under its ``design``;
- ``throughput.json``: GMAC/s rows per ``core`` and ``algo`` (``sparse`` is ``stag_default``,
  ``dense_same`` its dense baseline).

A run's rows: every ``stag synth`` report, and the ``ppa`` of a ``skip_efficiency_summary.json``
in the run directory. Throughput rows: a ``throughput.json`` in the run directory, and, for every
replayed iteration whose design has a ``stag synth`` report with an Fmax, the iteration's real
MACs (``real_macs``, M x K x N per pass) / (cycles / Fmax), the way ``benchmarks/throughput.py``
computes them, for the sparse design and (with a report of ``stag_<name>_dense``) for its dense
baseline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stag.report.inputs import RunInputs
from stag.workload import dense_equivalent_gmacs

__all__ = [
    "DEFAULT_BASELINES",
    "METRICS",
    "Baselines",
    "Cell",
    "PpaRow",
    "ThroughputRow",
    "ppa_rows",
    "read_baselines",
    "throughput_rows",
]

#: The stored baselines of this checkout.
DEFAULT_BASELINES = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
#: The PPA table's columns: (key, heading, True when more is better).
METRICS = (("lut4", "LUT4", False), ("carry", "CCU2C", False), ("ff", "FF", False), ("dsp", "DSP", False),
           ("bram", "BRAM", False), ("fmax_mhz", "Fmax MHz", True))
#: ``skip_efficiency_summary.json``'s ``ppa`` entries and ``throughput.json``'s present cores, by design.
_SUMMARY_DESIGNS = {"sparse": "stag_default", "dense": "stag_default_dense"}
_THROUGHPUT_CORES = {"stag_default": "sparse", "stag_default_dense": "dense_same"}


@dataclass(frozen=True)
class Baselines:
    """``ppa``: design -> (figures, file name); ``throughput``: (core, algo) -> (row, file name);
    ``problems``: baseline files that could not be read."""

    directory: Path
    ppa: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    throughput: dict[tuple[str, str], tuple[dict[str, Any], str]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def _load(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"{path.name}: unreadable ({exc})")
        return None


def read_baselines(directory: Path) -> Baselines:
    """The baselines stored in ``directory`` (empty when it does not exist)."""
    directory = Path(directory)
    if not directory.is_dir():
        return Baselines(directory=directory, problems=(f"no baseline directory {directory}",))
    problems: list[str] = []
    ppa: dict[str, tuple[dict[str, Any], str]] = {}
    throughput: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
    for path in sorted(directory.glob("*.json")):
        data = _load(path, problems)
        if path.name == "skip_efficiency_summary.json" and isinstance(data, dict):
            for key, design in _SUMMARY_DESIGNS.items():
                if isinstance(data.get("ppa", {}).get(key), dict):
                    ppa[design] = (data["ppa"][key], path.name)
        elif path.name == "throughput.json" and isinstance(data, list):
            for row in data:
                if isinstance(row, dict) and {"core", "algo", "gmacs"} <= set(row):
                    throughput[row["core"], row["algo"]] = (row, path.name)
        elif isinstance(data, dict) and {"design", "lut4", "ff", "dsp", "bram", "fmax_mhz"} <= set(data):
            ppa.setdefault(str(data["design"]), (data, path.name))
    return Baselines(directory=directory, ppa=ppa, throughput=throughput, problems=tuple(problems))


@dataclass(frozen=True)
class Cell:
    """One figure against its baseline; ``better``: the change is an improvement (None: no change
    or nothing to compare)."""

    value: float | None
    baseline: float | None
    higher_is_better: bool

    @property
    def delta(self) -> float | None:
        return None if self.value is None or self.baseline is None else self.value - self.baseline

    @property
    def delta_pct(self) -> float | None:
        return None if self.delta is None or not self.baseline else 100.0 * self.delta / self.baseline

    @property
    def better(self) -> bool | None:
        if not self.delta:
            return None
        return (self.delta > 0) == self.higher_is_better


@dataclass(frozen=True)
class PpaRow:
    design: str
    source: str                 # the run's file, relative to the run directory
    cells: dict[str, Cell]
    baseline_source: str | None
    routed: bool | None


def _row(design: str, source: str, figures: dict[str, Any], baselines: Baselines) -> PpaRow:
    base, base_source = baselines.ppa.get(design, ({}, None))
    cells = {key: Cell(figures.get(key), base.get(key), better) for key, _, better in METRICS}
    return PpaRow(design=design, source=source, cells=cells, baseline_source=base_source, routed=figures.get("routed"))


def ppa_rows(inputs: RunInputs, baselines: Baselines) -> list[PpaRow]:
    rows = [_row(s.design, inputs.relative(s.path), s.figures, baselines)
            for s in sorted(inputs.synths, key=lambda s: (s.design, str(s.path)))]
    summary = inputs.bench.get("skip_efficiency_summary.json")
    if summary is not None:
        for key, design in _SUMMARY_DESIGNS.items():
            figures = summary.data.get("ppa", {}).get(key)
            if isinstance(figures, dict):
                rows.append(_row(design, f"{inputs.relative(summary.path)} (ppa.{key})", figures, baselines))
    return rows


@dataclass(frozen=True)
class ThroughputRow:
    core: str
    algo: str
    real_macs: int | None       # the iteration's M x K x N (throughput.json calls it dense_macs)
    cycles: int
    fmax_mhz: float | None
    source: str
    gmacs: Cell
    note: str = ""


def _gmacs(real_macs: int, cycles: int, fmax_mhz: float | None) -> float | None:
    return round(dense_equivalent_gmacs(real_macs, cycles, fmax_mhz), 3) if fmax_mhz and cycles else None


def _baseline_gmacs(baselines: Baselines, core: str, algo: str, real_macs: int | None) -> tuple[float | None, str]:
    """The stored GMAC/s of (core, algo), with a note when there is none or it is of another iteration."""
    stored = baselines.throughput.get((core, algo))
    if stored is None:
        return None, "no stored baseline"
    row, _ = stored
    if row.get("dense_macs") != real_macs:
        return None, f"the baseline is another iteration ({row.get('dense_macs')} MACs)"
    return row["gmacs"], ""


def throughput_rows(inputs: RunInputs, baselines: Baselines) -> tuple[list[ThroughputRow], list[str]]:
    """The throughput rows and, for replayed iterations that could not be turned into one, why."""
    rows: list[ThroughputRow] = []
    notes: list[str] = []
    fmax = {s.design: s.figures.get("fmax_mhz") for s in inputs.synths}
    unmatched: dict[str, list[str]] = {}     # design without an Fmax -> the runs that needed it
    for run in inputs.compares:
        if run.design is None:
            notes.append(f"{inputs.relative(run.path)}: its rows name no design (demo output from before "
                         "`stag report`), so no synthesis report can be matched to it: rerun `stag demo`")
            continue
        if any(r.get("real_macs") is None for r in run.rows):
            notes.append(f"{inputs.relative(run.path)}: its rows carry no real_macs (written before `stag report`), "
                         "so no throughput: rerun `stag demo` / `stag compare`")
            continue
        if any(r.get("tiles") != r.get("full_tiles") for r in run.rows):
            notes.append(f"{inputs.relative(run.path)}: replays only the first tiles of some passes (--max-tiles), "
                         "so no throughput of the whole iteration")
            continue
        total = run.total()
        real_macs = sum(r["real_macs"] for r in run.rows)
        dense_from = "cycle model" if any(r.get("dense_cycles_source") == "model" for r in run.rows) else "RTL"
        for design, cycles, cycles_from in ((f"stag_{run.design}", total["sparse_cycles"], "RTL"),
                                            (f"stag_{run.design}_dense", total["dense_cycles"], dense_from)):
            if not fmax.get(design):
                unmatched.setdefault(design, []).append(run.label)
                continue
            core = _THROUGHPUT_CORES.get(design, design)
            base, note = _baseline_gmacs(baselines, core, run.label, real_macs)
            rows.append(ThroughputRow(
                core=core, algo=run.label, real_macs=real_macs, cycles=cycles, fmax_mhz=fmax[design],
                source=f"{inputs.relative(run.path)} ({cycles_from} cycles) + Fmax of {design}",
                gmacs=Cell(_gmacs(real_macs, cycles, fmax[design]), base, True), note=note))
    for design, labels in unmatched.items():
        notes.append(f"no `stag synth` report with an Fmax for {design} in RUN_DIR, so no throughput for "
                     f"{', '.join(labels)}: run `stag synth` on that design with `--work RUN_DIR`")
    bench = inputs.bench.get("throughput.json")
    if bench is not None:
        for row in bench.data:
            base, note = _baseline_gmacs(baselines, row["core"], row["algo"], row.get("dense_macs"))
            rows.append(ThroughputRow(
                core=row["core"], algo=row["algo"], real_macs=row.get("dense_macs"), cycles=row["cycles"],
                fmax_mhz=row.get("fmax_mhz"),
                source=f"{inputs.relative(bench.path)} ({row.get('cycles_source', 'make bench')} cycles)",
                gmacs=Cell(row["gmacs"], base, True), note=note))
    return rows, notes
