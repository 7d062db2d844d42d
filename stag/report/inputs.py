"""Find and read, in a run directory, the outputs of the commands the report shows.

What each command writes, and where (the readers below take exactly these formats):

- ``stag demo --results DIR`` (default ``runs/demo``): ``DIR/<algo>.compare.json``, a list of
  ``sim.compare.compare_rows`` rows, one per layer pass (``layer``, ``pass``, ``match``,
  ``dense_macs``, ``effectual_macs``, ``dense_cycles``, ``sparse_cycles``, ``speedup``,
  ``ideal_speedup``, ``model_cycles``, ...; since the report exists also ``algo``, ``design``,
  ``model_breakdown`` and ``model_lane_imbalance``); ``DIR/<algo>.metrics.json``, the metrics of its
  short training run (``ref.training.train``: ``history`` per epoch); ``DIR/summary.json``, the
  rows' ``sim.compare.total_row`` per algorithm (recomputed here from the rows, so not read).
- ``stag compare --out DIR``: ``DIR/compare.json``, the same rows with ``algo``, ``iteration``,
  ``design`` and ``sims``; ``make regress`` writes ``runs/regress/<algo>/compare.json``.
- ``stag train --out DIR``: ``DIR/metrics.json``; ``--compare-all``: ``DIR/<algo>/metrics.json``.
- ``stag synth --work DIR``: ``DIR/<name>/synth/report.json`` (``stag.synth.SynthReport``: ``design``
  is the synthesized Verilog module, ``lut4``, ``carry``, ``ff``, ``dsp``, ``bram``, ``fmax_mhz``,
  ``routed``, ...).
- ``make bench`` writes into ``benchmarks/results/`` (the report's baselines); its scripts take
  ``--out``, so a run directory may hold ``skip_efficiency.json`` (rows per program, with the
  model's loss ``waterfall``), ``skip_efficiency_summary.json`` (``ppa`` of the default core and
  its dense baseline, ``mean_waterfall``) and ``throughput.json`` (GMAC/s per core and algorithm).

Files are searched up to :data:`MAX_DEPTH` directories deep. A file that has one of these names
but cannot be read as that format is listed in :attr:`RunInputs.skipped` with the reason, and the
rest of the report is still made.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ref.policies.registry import ALGOS

__all__ = [
    "BENCH_FILES",
    "MAX_DEPTH",
    "BenchFile",
    "CompareRun",
    "RunDirError",
    "RunInputs",
    "SynthResult",
    "TrainingRun",
    "read_run",
]

#: How many directory levels below the run directory are searched (``<work>/<name>/synth/report.json``
#: and ``<out>/train/<algo>/metrics.json`` are three).
MAX_DEPTH = 4
#: Directories never searched: simulator builds (thousands of files, no report input).
_SKIP_DIRS = frozenset({"obj_dir", "__pycache__", "sim_build_cache"})
#: The ``make bench`` outputs the report reads, by file name.
BENCH_FILES = ("skip_efficiency.json", "skip_efficiency_summary.json", "throughput.json")

_COMPARE_KEYS = frozenset({"layer", "pass", "dense_macs", "effectual_macs", "dense_cycles", "sparse_cycles",
                           "model_cycles", "match", "counters_match"})
_SYNTH_KEYS = frozenset({"design", "lut4", "ff", "dsp", "bram", "fmax_mhz"})


class RunDirError(Exception):
    """The run directory does not exist, is no directory, or holds none of the report's inputs."""


@dataclass(frozen=True)
class CompareRun:
    """One algorithm's iteration replayed on the RTL: the rows of one ``compare.json``.

    ``label``: the algorithm (from the rows, else from the file name); ``design``: the configuration
    name the rows were replayed on (None when the rows do not say: demo output from before the
    report existed)."""

    label: str
    path: Path
    rows: tuple[dict[str, Any], ...]
    design: str | None

    @property
    def has_breakdown(self) -> bool:
        """Every row carries the cycle model's breakdown (``model_breakdown``)."""
        return all("model_breakdown" in r and "model_lane_imbalance" in r for r in self.rows)

    def total(self, pass_: str | None = None) -> dict[str, Any]:
        """``sim.compare.total_row`` of every row, or of the rows of one pass (``fwd``, ``bwi``, ``bww``)."""
        from sim.compare import total_row

        return total_row([r for r in self.rows if pass_ is None or r["pass"] == pass_])


@dataclass(frozen=True)
class TrainingRun:
    """One training run's ``metrics.json`` (``ref.training.train``)."""

    label: str
    path: Path
    metrics: dict[str, Any]

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.metrics["history"]


@dataclass(frozen=True)
class SynthResult:
    """The ECP5 figures of one ``stag synth`` report.json."""

    design: str
    path: Path
    figures: dict[str, Any]     # lut4, carry, ff, dsp, bram, fmax_mhz, routed, pnr_note


@dataclass(frozen=True)
class BenchFile:
    """One ``make bench`` output found in the run directory."""

    path: Path
    data: Any


@dataclass
class RunInputs:
    """Everything the report found in ``run_dir``; ``skipped``: files that have an input's name
    but not its format, each with the reason."""

    run_dir: Path
    compares: list[CompareRun] = field(default_factory=list)
    trainings: list[TrainingRun] = field(default_factory=list)
    synths: list[SynthResult] = field(default_factory=list)
    bench: dict[str, BenchFile] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.compares or self.trainings or self.synths or self.bench)

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.run_dir))

    def files(self) -> list[tuple[str, str]]:
        """(path relative to the run directory, what produced it) of every file read."""
        out = [(self.relative(c.path), "stag compare / stag demo: RTL replay of one iteration") for c in self.compares]
        out += [(self.relative(t.path), "stag train / stag demo: training metrics") for t in self.trainings]
        out += [(self.relative(s.path), f"stag synth: ECP5 report of {s.design}") for s in self.synths]
        out += [(self.relative(b.path), "make bench (benchmarks/*.py --out)") for b in self.bench.values()]
        return sorted(out)


def _candidates(run_dir: Path) -> Iterator[Path]:
    """Every ``*.json`` file at most :data:`MAX_DEPTH` levels below ``run_dir``, in a stable order."""
    base = len(run_dir.parts)
    for root, dirs, files in os.walk(run_dir):
        depth = len(Path(root).parts) - base
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS and depth < MAX_DEPTH)
        for name in sorted(files):
            if name.endswith(".json"):
                yield Path(root) / name


def _algo_order(label: str) -> tuple[int, str]:
    name = label.split(" ")[0]
    return (ALGOS.index(name) if name in ALGOS else len(ALGOS), label)


def _compare_run(path: Path, data: Any, run_dir: Path) -> CompareRun | str:
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        return "not a list of layer-pass rows"
    missing = sorted(set().union(*(_COMPARE_KEYS - set(r) for r in data)))
    if missing:
        return f"rows lack {', '.join(missing)}"
    label = data[0].get("algo") or (path.name.removesuffix(".compare.json") if path.name != "compare.json"
                                    else path.parent.name if path.parent != run_dir else "compare")
    return CompareRun(label=str(label), path=path, rows=tuple(data), design=data[0].get("design"))


def _training_run(path: Path, data: Any, run_dir: Path) -> TrainingRun | str:
    if not isinstance(data, dict) or not isinstance(data.get("history"), list) or "algo" not in data:
        return "not the metrics of `stag train` (no algo and history)"
    for entry in data["history"]:
        if not isinstance(entry, dict) or not {"epoch", "train_accuracy", "test_accuracy"} <= set(entry):
            return "a history entry lacks epoch, train_accuracy or test_accuracy"
    return TrainingRun(label=str(data["algo"]), path=path, metrics=data)


def _synth_result(path: Path, data: Any, run_dir: Path) -> SynthResult | str:
    if not isinstance(data, dict) or not _SYNTH_KEYS <= set(data):
        return f"not a `stag synth` report (needs {', '.join(sorted(_SYNTH_KEYS))})"
    figures = {k: data.get(k) for k in ("lut4", "carry", "ff", "dsp", "bram", "fmax_mhz", "routed", "pnr_note")}
    return SynthResult(design=str(data["design"]), path=path, figures=figures)


def _bench_file(path: Path, data: Any, run_dir: Path) -> BenchFile | str:
    if path.name == "skip_efficiency_summary.json":
        ok = isinstance(data, dict) and isinstance(data.get("ppa", {}), dict)
    elif path.name == "skip_efficiency.json":
        ok = isinstance(data, list) and all(isinstance(r, dict) and {"sparse_cycles", "model_cycles"} <= set(r)
                                            for r in data)
    else:
        ok = isinstance(data, list) and all(isinstance(r, dict) and {"core", "algo", "cycles", "gmacs"} <= set(r)
                                            for r in data)
    return BenchFile(path=path, data=data) if ok else f"not the format `make bench` writes as {path.name}"


#: The reader of each kind of input (:func:`_kind`): the input, or why the file is not one.
_READERS = {"compare": _compare_run, "training": _training_run, "synth": _synth_result, "bench": _bench_file}


def _unique_labels(items: list, run_dir: Path) -> list:
    """Labels that occur more than once get the file's directory (relative to the run) appended."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.label] = counts.get(item.label, 0) + 1
    out = []
    for item in items:
        if counts[item.label] > 1:
            where = str(item.path.parent.relative_to(run_dir)) if item.path.parent != run_dir else "."
            item = replace(item, label=f"{item.label} ({where}/{item.path.name})")
        out.append(item)
    return sorted(out, key=lambda i: _algo_order(i.label))


def _kind(name: str) -> str | None:
    """Which input a file of this name is (None: none)."""
    if name == "compare.json" or name.endswith(".compare.json"):
        return "compare"
    if name == "metrics.json" or name.endswith(".metrics.json"):
        return "training"
    if name == "report.json":
        return "synth"
    return "bench" if name in BENCH_FILES else None


def read_run(run_dir: Path) -> RunInputs:
    """Every report input found in ``run_dir``; raises :class:`RunDirError` when ``run_dir`` does not
    exist, is not a directory, or holds none of them."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunDirError(f"RUN_DIR {run_dir} does not exist")
    if not run_dir.is_dir():
        raise RunDirError(f"RUN_DIR {run_dir} is not a directory")
    inputs = RunInputs(run_dir=run_dir)
    compares, trainings = [], []
    for path in _candidates(run_dir):
        kind = _kind(path.name)
        if kind is None:
            continue
        if kind == "bench" and path.name in inputs.bench:
            inputs.skipped.append(f"{inputs.relative(path)}: another {path.name} was read first "
                                  f"({inputs.relative(inputs.bench[path.name].path)})")
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            inputs.skipped.append(f"{inputs.relative(path)}: unreadable JSON ({exc})")
            continue
        result = _READERS[kind](path, data, run_dir)
        if isinstance(result, str):
            inputs.skipped.append(f"{inputs.relative(path)}: {result}")
        elif isinstance(result, CompareRun):
            compares.append(result)
        elif isinstance(result, TrainingRun):
            trainings.append(result)
        elif isinstance(result, SynthResult):
            inputs.synths.append(result)
        else:
            inputs.bench[path.name] = result
    inputs.compares = _unique_labels(compares, run_dir)
    inputs.trainings = _unique_labels(trainings, run_dir)
    if not inputs.found:
        why = f"; skipped: {'; '.join(inputs.skipped)}" if inputs.skipped else ""
        raise RunDirError(f"RUN_DIR {run_dir} holds none of the report's inputs (compare.json or <algo>.compare.json "
                          f"from stag compare / stag demo, metrics.json from stag train / stag demo, "
                          f"<name>/synth/report.json from stag synth, {', '.join(BENCH_FILES)} from make bench)"
                          f"{why}")
    return inputs
