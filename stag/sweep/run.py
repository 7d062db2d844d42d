"""Running a sweep: every point's cycle model (and synthesis) as a task, results streamed to
``results.jsonl``, finished points skipped on a rerun, the Pareto fronts at the end.

``results.jsonl`` is the cache: one JSON line per evaluated point (``status`` "ok" or "invalid";
"error" lines record a failure and are retried by the next run; the last line of a key wins). A
configuration is synthesized once for all its workloads, and a rerun takes its figures from any
finished line of the same configuration.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw.config import ConfigError
from ref.traces import Trace
from stag.cluster import Executor
from stag.sweep import cores
from stag.sweep.pareto import Fronts, fronts, plot_fronts, render_table
from stag.sweep.spec import Point, SweepSpec
from stag.workload import dense_equivalent_gmacs, iteration_trace

__all__ = ["SweepOutcome", "evaluate_cycles", "read_results", "run_sweep", "synthesize_point"]

#: Lines of these statuses are finished: a rerun skips their points.
FINISHED = ("ok", "invalid")
#: Figures a synthesis adds to a point's line.
SYNTH_FIELDS = ("lut4", "carry", "ff", "dsp", "bram", "lutram", "fmax_mhz", "routed", "flow", "pnr_note")


@dataclass(frozen=True)
class SweepOutcome:
    """What a run did: the points, how many were skipped / evaluated, every current line, the fronts."""

    points: int
    skipped: int
    evaluated: int
    invalid: int
    errors: int
    lines: list[dict[str, Any]]
    fronts: Fronts
    results: Path
    table: Path
    plot: Path
    seconds: float


# ---- tasks (run in Ray workers, or in this process with --serial) ------------------------------------
def evaluate_cycles(point: Point, trace: Trace) -> dict[str, Any]:
    """The point's cycles on its workload's iteration (``status`` "ok"), or why the cycle model
    cannot take its configuration (``status`` "invalid")."""
    import torch

    torch.set_num_threads(1)  # one CPU per task
    started = time.perf_counter()
    config = cores.build(point.core, point.fields)
    try:
        found = cores.iteration_cycles(point.core, config, trace)
    except ValueError as exc:  # the lowering or the model rejects the configuration
        return {"status": "invalid", "error": f"cycle model: {exc}"}
    return {"status": "ok", "cycles": found.cycles, "dense_macs": found.dense_macs, "passes": found.passes,
            "macs_per_cycle": round(found.macs_per_cycle, 4), "multipliers": cores.multipliers(point.core, config),
            "seconds": round(time.perf_counter() - started, 2)}


def synthesize_point(point: Point, work_dir: str) -> dict[str, Any]:
    """Synthesis (and with ``synth = true`` place and route) of the point's configuration."""
    started = time.perf_counter()
    config = cores.build(point.core, point.fields)
    report = cores.synthesize(point.core, config, Path(work_dir), place_and_route=point.synth == "route",
                              pnr_timeout_s=60 * point.pnr_timeout_min)
    figures = {k: v for k, v in report.to_json().items() if k in SYNTH_FIELDS}
    return {**figures, "synth_seconds": round(time.perf_counter() - started, 1)}


# ---- the results file --------------------------------------------------------------------------------
def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """The last line of every key in a results file ({} when there is none; a torn last line, as a
    killed run may leave, is ignored)."""
    found: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return found
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and isinstance(line.get("key"), str):
            found[line["key"]] = line
    return found


def _line(point: Point, status: str, **values: Any) -> dict[str, Any]:
    return {"key": point.key, "status": status, "label": point.label, "core": point.core, "base": point.base,
            "workload": point.workload, "synth": point.synth, "overrides": dict(point.overrides),
            "fields": point.fields, **values}


def _describe(line: dict[str, Any]) -> str:
    if line["status"] == "invalid":
        return f"invalid: {line['error']}"
    if line["status"] == "error":
        return f"error: {line['error']}"
    text = f"{line['cycles']:,} cycles, {line['macs_per_cycle']:.2f} MAC/cycle"
    if line.get("lut4") is not None:
        text += f", {line['lut4']:,} LUT4"
    if line.get("fmax_mhz") is not None:
        text += f", {line['fmax_mhz']:.1f} MHz, {line['gmacs']:.3f} GMAC/s"
    elif line.get("routed") is False:
        text += ", not routed"
    return text


# ---- the run -----------------------------------------------------------------------------------------
def run_sweep(spec: SweepSpec, executor: Executor, *, fresh: bool = False,
              progress: Callable[[str], None] = print) -> SweepOutcome:
    """Evaluate every unfinished point of ``spec`` with ``executor``'s tasks (see the module docstring)."""
    started = time.perf_counter()
    run_dir = spec.run_dir
    results = run_dir / "results.jsonl"
    points = spec.points()
    total = len(points)
    cached = {} if fresh else {k: v for k, v in read_results(results).items() if v.get("status") in FINISHED}
    todo = [p for p in points if p.key not in cached]
    synths = {line["synth_key"]: line for line in cached.values() if line.get("synth_key") and line["status"] == "ok"}
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        results.unlink(missing_ok=True)
    skipped = total - len(todo)
    progress(f"sweep {spec.name}: {total} points, {skipped} skipped (cached), {len(todo)} to evaluate "
             f"{executor.where}; results in {results}")
    done = skipped
    counts = {"ok": 0, "invalid": 0, "error": 0}

    with results.open("a", encoding="utf-8") as out:
        def emit(line: dict[str, Any]) -> None:
            nonlocal done
            out.write(json.dumps(line) + "\n")
            out.flush()
            done += 1
            counts[line["status"]] += 1
            progress(f"[{done}/{total}] {line['label']} | {line['workload']}: {_describe(line)}")

        valid = []
        for point in todo:
            try:
                cores.build(point.core, point.fields)
            except (ConfigError, ValueError) as exc:
                emit(_line(point, "invalid", error=str(exc)))
            else:
                valid.append(point)
        if valid:
            _evaluate(spec, valid, synths, executor, emit, progress)

    current = read_results(results)
    lines = [current[p.key] for p in points if p.key in current]
    found = fronts(lines, spec.synth, spec.workloads)
    title = f"sweep {spec.name} ({spec.source}): {len(lines)} points"
    invalid = [line for line in lines if line["status"] == "invalid"]
    table = run_dir / "pareto.md"
    table.write_text(render_table(found, title=title, invalid=invalid), encoding="utf-8")
    plot = plot_fronts(found, run_dir / "pareto.png", title=title)
    return SweepOutcome(points=total, skipped=skipped, evaluated=counts["ok"], invalid=counts["invalid"],
                        errors=counts["error"], lines=lines, fronts=found, results=results, table=table, plot=plot,
                        seconds=time.perf_counter() - started)


def _evaluate(spec: SweepSpec, points: list[Point], synths: dict[str, dict[str, Any]], executor: Executor,
              emit: Callable[[dict[str, Any]], None], progress: Callable[[str], None]) -> None:
    """Run the cycle-model tasks (and the synthesis tasks their configurations still need) and emit
    each point's line once everything it needs has finished."""
    synth_results: dict[str, dict[str, Any]] = {k: {f: v.get(f) for f in SYNTH_FIELDS} for k, v in synths.items()}
    synth_errors: dict[str, str] = {}
    waiting: dict[str, list[tuple[Point, dict[str, Any], str]]] = {}
    labels: dict[str, str] = {}
    with executor:
        with tempfile.TemporaryDirectory(prefix="stag_sweep_traces_") as scratch:
            traces = {w: executor.put(iteration_trace(w, scratch)) for w in spec.workloads
                      if any(p.workload == w for p in points)}
        if spec.synth != "off":
            for point in points:
                key = point.synth_key
                if key not in synth_results and key not in waiting:
                    waiting[key] = []
                    labels[key] = point.label
                    executor.submit(("synth", key), synthesize_point, point,
                                    str((spec.run_dir / "build" / key).resolve()))
        for point in points:
            executor.submit(("cycles", point), evaluate_cycles, point, traces[point.workload])

        def finish(point: Point, result: dict[str, Any], node: str) -> None:
            if result["status"] != "ok" or point.synth == "off":
                emit(_line(point, result["status"], **{k: v for k, v in result.items() if k != "status"}, node=node))
                return
            key = point.synth_key
            if key in synth_errors:
                emit(_line(point, "error", error=f"synthesis: {synth_errors[key]}", node=node))
                return
            synth = synth_results[key]
            gmacs = (round(dense_equivalent_gmacs(result["dense_macs"], result["cycles"], synth["fmax_mhz"]), 4)
                     if synth.get("fmax_mhz") else None)
            emit(_line(point, "ok", **{k: v for k, v in result.items() if k != "status"}, **synth, gmacs=gmacs,
                       synth_key=key, node=node))

        for done in executor.completed():
            kind, what = done.tag
            if kind == "synth":
                if done.error:
                    synth_errors[what] = done.error
                    progress(f"      synthesis of {labels[what]} failed: {done.error}")
                else:
                    synth_results[what] = done.result
                    r = done.result
                    clock = (f"{r['fmax_mhz']:.1f} MHz" if r.get("fmax_mhz") else
                             "not routed" if r.get("routed") is False else "no place and route")
                    progress(f"      synthesized {labels[what]}: {r['lut4']:,} LUT4, {r['ff']:,} FF, {r['dsp']} DSP, "
                             f"{r['bram']} BRAM, {clock} ({r['synth_seconds']:.0f} s)")
                for point, result, node in waiting.pop(what, []):
                    finish(point, result, node)
                continue
            point = what
            if done.error:
                emit(_line(point, "error", error=done.error, node=done.node))
            elif point.synth != "off" and done.result["status"] == "ok" and point.synth_key in waiting:
                waiting[point.synth_key].append((point, done.result, done.node))
            else:
                finish(point, done.result, done.node)
