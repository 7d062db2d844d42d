"""Replay the layers of a training iteration on the generated RTL and compare with ``ref``: the
engine behind ``stag compare``.

1. :func:`make_jobs`: each (layer, pass) of a trace, lowered by ``ref.contract.trace_programs``,
   becomes a :class:`CompareJob`: the program encoded for the design, ``ref``'s expected result
   beats (``ref.contract.evaluate``), and the cycle model's prediction. Before any simulation the
   evaluator's tiles are checked against the trace pass's independent reference (torch's conv /
   linear pass on the integer codes), so ``ref`` itself is consistent.
2. :func:`replay`: build the design's AXI top (unit ``axi``) and run every job through
   cocotbext-axi (``sim.tb_compare``), from a fresh reset each, with no stalls; progress is shown
   per finished job while the simulator runs.
3. :func:`compare_rows`: one row per job with the keys of ``compare.json`` (``layer``, ``pass``,
   ``match``, ``dense_macs``, ``effectual_macs``, ``dense_cycles``, ``sparse_cycles``,
   ``speedup``, ``fraction_of_ideal``, ``model_cycles``, ...), and a :class:`Mismatch` that locates
   the first wrong element of every mismatching job (:func:`locate_mismatch`).
4. :func:`write_mismatch_wave`: rerun the failing job alone on Icarus and dump an FST window around
   the mismatch (:mod:`sim.wave_window`), not the whole run.

Cycle numbers: ``sparse_cycles`` counts from the cycle of the first command's handshake to the
cycle of the last result beat, both included: the span the cycle model predicts (the AXI top adds
no latency to the streams). ``dense_cycles`` is measured on the dense baseline design generated
from the same configuration (``sparse = false``), or predicted by the cycle model when asked.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hw.config import StagConfig
from hw.generate import GeneratedDesign, generate
from ref.contract import Drain, Program, TileGemm, evaluate
from ref.contract.trace_programs import TracePass
from ref.cycle_model import DRAIN_FIRST_BEAT, CycleEstimate, ItemPlacement, gemm_placements, predict_cycles
from sim.core_vectors import VectorCase, make_case, write_vectors
from sim.runner import CosimFailure, build, run_cocotb

__all__ = [
    "CompareJob",
    "Mismatch",
    "RefInconsistency",
    "compare_rows",
    "dense_config",
    "locate_mismatch",
    "make_jobs",
    "model_params",
    "replay",
    "replay_and_compare",
    "total_row",
    "write_mismatch_wave",
]

TESTBENCH = "sim.tb_compare"
UNIT = "axi"


class RefInconsistency(AssertionError):
    """``ref.contract.evaluate`` disagrees with the trace pass's torch reference (a bug in ``ref``)."""


def model_params(config: StagConfig) -> dict[str, int]:
    """The configuration fields ``ref.cycle_model.predict_cycles`` takes (``sparse`` aside)."""
    return dict(lanes=config.lanes, tile_m=config.tile_m, tile_n=config.tile_n, tile_k=config.tile_k,
                bus_elems=config.bus_elems, operand_bits=config.operand_bits)


def dense_config(config: StagConfig) -> StagConfig:
    """The dense baseline of ``config``: the same design with the sparsity logic off, named
    ``<name>_dense``, generating only the core and the AXI top."""
    if not config.sparse:
        return config
    return dataclasses.replace(config, name=f"{config.name}_dense", sparse=False, units=(UNIT,))


@dataclass(frozen=True, eq=False)
class CompareJob:
    """One layer pass to replay: the lowered trace pass, its encoding with ``ref``'s expected beats
    for the design (``case``) and for its dense baseline (``dense_case``, the same program with every
    operand sent dense), and the cycle model's predictions for both cores."""

    trace_pass: TracePass
    case: VectorCase
    dense_case: VectorCase
    estimate: CycleEstimate
    dense_estimate: CycleEstimate

    @property
    def name(self) -> str:
        return self.case.name

    @property
    def program(self) -> Program:
        return self.trace_pass.program


def job_name(p: TracePass) -> str:
    return f"{p.layer}.{p.pass_}"


def make_jobs(passes: Sequence[TracePass], config: StagConfig) -> list[CompareJob]:
    """Encode every trace pass for ``config``'s design, after checking ``ref``'s evaluator against
    the pass's torch reference tile by tile (raises :class:`RefInconsistency` on a difference)."""
    jobs = []
    params = model_params(config)
    for p in passes:
        result = evaluate(p.program)
        for index, (got, want) in enumerate(zip(result.tiles, p.expected_tiles, strict=True)):
            if not torch.equal(got, want):
                raise RefInconsistency(f"{job_name(p)}: ref.contract.evaluate and the torch reference differ in "
                                       f"output tile {index}")
        case = make_case(job_name(p), p.program, config, result=result)
        estimate = predict_cycles(p.program, **params, sparse=config.sparse)
        if config.sparse:
            dense_case = make_case(job_name(p), p.program, dense_config(config), result=result)
            dense = predict_cycles(p.program, **params, sparse=False)
        else:
            dense_case, dense = case, estimate
        jobs.append(CompareJob(trace_pass=p, case=case, dense_case=dense_case, estimate=estimate,
                               dense_estimate=dense))
    return jobs


# ---- running ---------------------------------------------------------------------------------------

def replay(design: GeneratedDesign, sim: str, cases: Sequence[VectorCase], work_dir: Path, *,
           progress: Callable[[str], None] = print, label: str = "", runner: Any = None,
           runners: dict[tuple[str, str], Any] | None = None) -> dict[str, dict[str, Any]]:
    """Run every case (``CompareJob.case``, or ``dense_case`` on the dense baseline) on ``design``'s
    AXI top in ``sim``; returns each case's record by name (see ``sim.tb_compare``). Prints a
    progress line per finished case while the simulator runs. ``runner``: the AXI top already built
    for ``sim`` (``sim.runner.build(design, sim, ..., unit="axi")``); None builds it here, or takes
    it from ``runners`` (keyed by design name and simulator), where a new build is also kept."""
    work_dir = Path(work_dir)
    key = (design.config.name, sim)
    if runner is None and runners is not None:
        runner = runners.get(key)
    if runner is None:
        started = time.perf_counter()
        progress(f"{label}building {design.config.module_name(UNIT)} for {sim} ...")
        runner = build(design, sim, work_dir / "build" / f"{design.config.name}_{sim}", unit=UNIT)
        progress(f"{label}built in {time.perf_counter() - started:.1f} s")
        if runners is not None:
            runners[key] = runner
    progress(f"{label}replaying {len(cases)} layer passes on {sim}")
    test_dir = work_dir / "run" / f"{design.config.name}_{sim}"
    test_dir.mkdir(parents=True, exist_ok=True)
    vectors = write_vectors(test_dir / "vectors.json", list(cases))
    progress_file = test_dir / "progress.jsonl"
    progress_file.unlink(missing_ok=True)
    env = {"STAG_VECTORS": str(vectors.resolve()), "STAG_PROGRESS_FILE": str(progress_file.resolve())}

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["run"] = run_cocotb(runner, design, test_module=TESTBENCH, seed=1, unit=UNIT,
                                        test_dir=test_dir, extra_env=env)
        except BaseException as exc:  # re-raised in the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"cocotb-{sim}", daemon=True)
    thread.start()
    seen = 0
    while True:
        alive = thread.is_alive()
        lines = progress_file.read_text(encoding="utf-8").splitlines() if progress_file.exists() else []
        for line in lines[seen:]:
            entry = json.loads(line)
            seen += 1
            rate = entry["cycles"] / entry["seconds"] if entry["seconds"] > 0 else float("inf")
            progress(f"{label}[{seen}/{len(cases)}] {entry['name']}: {entry['cycles']} cycles, "
                     f"{entry['seconds']:.1f} s ({rate:,.0f} cycles/s)")
        if not alive:
            break
        thread.join(0.5)
    if "error" in outcome:
        raise outcome["error"]
    cosim = outcome["run"]
    records = {}
    for case in cases:
        path = cosim.record_dir / f"{case.name}.json"
        if not path.exists():
            raise CosimFailure(f"{TESTBENCH} on {sim} left no record for {case.name} (see {test_dir / 'sim.log'})")
        records[case.name] = json.loads(path.read_text(encoding="utf-8"))
    return records


# ---- comparing ---------------------------------------------------------------------------------

def measured_cycles(record: dict[str, Any]) -> int:
    """Cycles from the first command's handshake to the last result beat, both included."""
    return record["tile_end_cycles"][-1] - record["first_command_cycle"] + 1


@dataclass(frozen=True)
class Mismatch:
    """The first RTL value that differs from ``ref`` in one layer pass, located.

    ``command``: index of the DRAIN in the program that read it out; ``tile``: which drained tile
    (0-based, program order); ``row``/``col``: the element in the tile; ``matrix_row``/
    ``matrix_col``: the element in the pass's GEMM output matrix (None in a ragged tile's padding);
    ``bank``: the accumulator bank (``col mod lanes``, also the element of the result beat);
    ``lanes``: the PE lane that computed the element in each GEMM that summed into it, as the cycle
    model schedules it, with the cycles of its first and last MAC, aligned to the run's cycles;
    ``gemms``: every GEMM that summed into the element (command, its start and end cycle as the
    model schedules them, aligned like ``lanes``, and ``ref``'s partial sum A[row]·B[:, col] of
    that GEMM, wrapped to the accumulator, None where the output mask is 0);
    ``cycle``: the cycle (since the job's reset) the result beat left the accelerator;
    ``got``/``want``: the element as the RTL drained it and as ``ref`` expects it (signed).
    """

    layer: str
    pass_: str
    command: int
    tile: int
    beat: int
    row: int
    col: int
    matrix_row: int | None
    matrix_col: int | None
    bank: int
    lanes: tuple[tuple[int, int, int, int], ...]   # (gemm command, lane, first MAC cycle, last MAC cycle)
    gemms: tuple[tuple[int, int, int, int | None], ...]  # (gemm command, start cycle, end cycle, ref's partial sum)
    cycle: int
    got: int
    want: int
    mismatching_elements: int

    def describe(self) -> str:
        where = (f"output ({self.matrix_row}, {self.matrix_col})" if self.matrix_row is not None
                 else "padding of a ragged tile")
        lanes = ", ".join(f"lane {lane} in command {cmd} (MACs in cycles {a}..{b})"
                          for cmd, lane, a, b in self.lanes) or "no lane (no effectual MAC or masked)"
        return (f"{self.layer} {self.pass_}: first mismatch at command {self.command} (DRAIN of tile {self.tile}), "
                f"tile element ({self.row}, {self.col}) = {where}, bank {self.bank}; the cycle model schedules it on "
                f"{lanes}; "
                f"result beat {self.beat} left at cycle {self.cycle}: RTL {self.got}, ref {self.want}"
                f"{' (the values agree; its ReLU mask bit differs)' if self.got == self.want else ''} "
                f"({self.mismatching_elements} elements differ in this pass)")


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _elements(beat: int, config: StagConfig) -> list[int]:
    """Each element of a result beat as its ``acc_bits`` value with its ReLU mask bit above it."""
    mask = (1 << config.acc_bits) - 1
    base = config.lanes * config.acc_bits
    return [(beat >> (e * config.acc_bits)) & mask | (beat >> (base + e) & 1) << config.acc_bits
            for e in range(config.lanes)]


def locate_mismatch(job: CompareJob, record: dict[str, Any], config: StagConfig) -> Mismatch | None:
    """The first element where the RTL's result beats differ from ``ref``'s, located in the
    program, the tile, the lanes and time; None when every beat matches."""
    got, want = record["values"], job.case.expected
    if len(got) != len(want):
        raise CosimFailure(f"{job.name}: the RTL sent {len(got)} result beats, ref expects {len(want)}")
    wrong = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    if not wrong:
        return None
    index = wrong[0]
    count = sum(g != w for i in wrong for g, w in zip(_elements(got[i], config), _elements(want[i], config),
                                                     strict=True))
    drain_beats = job.case.drain_beats
    tile, beat = divmod(index, drain_beats)
    groups = config.tile_n // config.lanes
    got_e, want_e = _elements(got[index], config), _elements(want[index], config)
    bank = next(e for e in range(config.lanes) if got_e[e] != want_e[e])
    row, col = beat // groups, (beat % groups) * config.lanes + bank
    program = job.program
    drains = [i for i, c in enumerate(program.commands) if isinstance(c, Drain)]
    command = drains[tile]
    region = program.drain_regions[tile] if program.drain_regions else None
    inside = region is not None and row < region.rows and col < region.cols
    cycle = record["tile_first_cycles"][tile] + beat
    # The model's cycle numbers count from the first command; align them on the measured first
    # beat of this tile (equal when the model is exact, as the tests check).
    offset = record["tile_first_cycles"][tile] - (job.estimate.commands[command].start + DRAIN_FIRST_BEAT)
    lanes, gemms = [], []
    acc = program.commands[command].acc
    for i in range(command - 1, -1, -1):
        cmd = program.commands[i]
        if not isinstance(cmd, TileGemm) or cmd.acc != acc:
            continue
        placement: ItemPlacement | None = gemm_placements(
            program, job.estimate, i, lanes=config.lanes, tile_k=config.tile_k, sparse=config.sparse).get((row, col))
        if placement is not None:
            lanes.append((i, placement.lane, placement.first_k + offset, placement.last_k + offset))
        timing = job.estimate.commands[i]
        masked = cmd.out_mask is not None and not bool(cmd.out_mask[row, col])
        partial = None if masked else _signed(int(cmd.a.to_dense()[row] @ cmd.b.to_dense()[:, col]), config.acc_bits)
        gemms.append((i, timing.start + offset, timing.end + offset, partial))
        if not cmd.accumulate:
            break
    lanes.reverse()
    gemms.reverse()
    return Mismatch(
        layer=job.trace_pass.layer, pass_=job.trace_pass.pass_, command=command, tile=tile, beat=beat, row=row,
        col=col, matrix_row=region.row0 + row if inside else None, matrix_col=region.col0 + col if inside else None,
        bank=bank, lanes=tuple(lanes), gemms=tuple(gemms), cycle=cycle, got=_signed(got_e[bank], config.acc_bits),
        want=_signed(want_e[bank], config.acc_bits), mismatching_elements=count)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def compare_rows(jobs: Sequence[CompareJob], records: dict[str, dict[str, Any]], config: StagConfig, *,
                 dense_records: dict[str, dict[str, Any]] | None) -> tuple[list[dict[str, Any]], list[Mismatch]]:
    """One ``compare.json`` row per job and the located first mismatch of each failing job.

    ``dense_records``: the same jobs replayed on the dense baseline design; None takes the dense
    cycles from the cycle model (``dense_cycles_source`` says which)."""
    rows, mismatches = [], []
    for job in jobs:
        record = records[job.name]
        mismatch = locate_mismatch(job, record, config)
        if mismatch is not None:
            mismatches.append(mismatch)
        sparse_cycles = measured_cycles(record)
        if not config.sparse:
            dense_cycles, source = sparse_cycles, "rtl"
        elif dense_records is not None:
            dense_cycles, source = measured_cycles(dense_records[job.name]), "rtl"
        else:
            dense_cycles, source = job.dense_estimate.total, "model"
        dense_macs, effectual = job.case.dense_macs, job.case.effectual_macs
        speedup = _ratio(dense_cycles, sparse_cycles)
        ideal = _ratio(dense_macs, effectual)
        counters = record["counters"]
        issued_want = effectual if config.sparse else dense_macs
        wrap = (1 << config.counter_bits) - 1
        rows.append({
            "layer": job.trace_pass.layer, "pass": job.trace_pass.pass_, "match": mismatch is None,
            "counters_match": counters["macs_issued"] == issued_want & wrap
            and counters["macs_dense"] == dense_macs & wrap,
            "policy": job.trace_pass.policy, "a_format": job.trace_pass.a_format,
            "b_format": job.trace_pass.b_format, "out_mask": job.trace_pass.out_mask is not None,
            "tiles": job.trace_pass.n_tiles, "full_tiles": job.trace_pass.full_tiles,
            "dense_macs": dense_macs, "effectual_macs": effectual,
            "dense_cycles": dense_cycles, "dense_cycles_source": source, "sparse_cycles": sparse_cycles,
            "speedup": speedup, "ideal_speedup": ideal,
            "fraction_of_ideal": speedup / ideal if speedup is not None and ideal else None,
            "model_cycles": job.estimate.total,
            "model_error": abs(job.estimate.total - sparse_cycles) / sparse_cycles if sparse_cycles else None,
            "mismatching_elements": mismatch.mismatching_elements if mismatch else 0,
        })
    return rows, mismatches


def replay_and_compare(jobs: Sequence[CompareJob], config: StagConfig, design: GeneratedDesign,
                       dense: GeneratedDesign | None, sims: Sequence[str], work_dir: Path, *,
                       progress: Callable[[str], None] = print,
                       runners: dict[tuple[str, str], Any] | None = None,
                       ) -> tuple[list[dict[str, Any]], list[Mismatch]]:
    """Replay ``jobs`` on ``design`` in every simulator of ``sims`` (their records must agree:
    values and cycle numbers), and on the ``dense`` baseline design (if given) in the last one;
    returns :func:`compare_rows` of the last simulator's records."""
    from sim.crosscheck import record_differences

    work_dir = Path(work_dir)
    records = {}
    for sim in sims:
        progress(f"replay on {sim}: {design.config.module_name(UNIT)}")
        records[sim] = replay(design, sim, [job.case for job in jobs], work_dir, progress=progress, runners=runners)
    for other in sims[1:]:
        problems = record_differences(*(work_dir / "run" / f"{config.name}_{sim}" / "records"
                                        for sim in (sims[0], other)))
        if problems:
            raise CosimFailure(f"{sims[0]} and {other} disagree: " + "; ".join(problems[:5]))
        progress(f"{sims[0]} and {other} agree value for value, cycle for cycle")
    dense_records = None
    if dense is not None:
        progress(f"dense baseline on {sims[-1]}: {dense.config.module_name(UNIT)}")
        dense_records = replay(dense, sims[-1], [job.dense_case for job in jobs], work_dir, progress=progress,
                               runners=runners)
    return compare_rows(jobs, records[sims[-1]], config, dense_records=dense_records)


def total_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The :func:`compare_rows` rows of a whole iteration added up: MACs and cycles summed, the
    speedups and the model error recomputed from the sums, ``match`` only if every pass matched
    (values and counters)."""
    dense, sparse, model = (sum(r[k] for r in rows) for k in ("dense_cycles", "sparse_cycles", "model_cycles"))
    dense_macs, effectual = sum(r["dense_macs"] for r in rows), sum(r["effectual_macs"] for r in rows)
    speedup, ideal = _ratio(dense, sparse), _ratio(dense_macs, effectual)
    return {"passes": len(rows), "match": all(r["match"] and r["counters_match"] for r in rows),
            "dense_macs": dense_macs, "effectual_macs": effectual, "dense_cycles": dense, "sparse_cycles": sparse,
            "speedup": speedup, "ideal_speedup": ideal,
            "fraction_of_ideal": speedup / ideal if speedup is not None and ideal else None,
            "model_cycles": model, "model_error": abs(model - sparse) / sparse if sparse else None}


# ---- the waveform of a mismatch ------------------------------------------------------------------

@dataclass(frozen=True)
class WaveWindow:
    """What :func:`write_mismatch_wave` wrote: the FST file, its cycle window, whether the Icarus
    rerun reproduced the mismatch, and the results the RTL's lanes produced for the wrong element
    (``lane_results``: (gemm command, cycle, lane, partial sum) per result of that element in the
    GEMMs that summed into it, as observed on the lanes' ``o_result`` streams)."""

    path: Path
    first: int
    last: int
    reproduced: bool
    lane_results: tuple[tuple[int, int, int, int], ...] = ()

    def describe(self, mismatch: Mismatch) -> str:
        """The RTL's lane results next to ``ref``'s partial sums, one line per GEMM."""
        lines = []
        for gemm, _, _, partial in mismatch.gemms:
            seen = [f"lane {lane} sent {value} at cycle {cycle}" for g, cycle, lane, value in self.lane_results
                    if g == gemm]
            want = "masked, no result" if partial is None else f"ref's partial sum {partial}"
            lines.append(f"command {gemm} (GEMM): {'; '.join(seen) or 'no lane result'} ({want})")
        return "\n".join(lines)


def write_mismatch_wave(design: GeneratedDesign, job: CompareJob, mismatch: Mismatch, work_dir: Path,
                        fst: Path, *, margin: int = 16, max_cycles: int = 2000) -> WaveWindow:
    """Rerun ``job`` alone on Icarus and dump an FST of the cycles around ``mismatch`` to ``fst``:
    from ``margin`` cycles before the first MAC of the wrong element (or before its result beat)
    to ``margin`` after the beat, at most ``max_cycles`` long (the end is kept)."""
    from sim.wave_window import WAVE_MODULE, wave_plusargs, wave_window_source

    work_dir = Path(work_dir)
    last = mismatch.cycle + margin
    start = min([a for _, _, a, _ in mismatch.lanes] + [mismatch.cycle])
    first = max(0, start - margin, last - max_cycles + 1)
    source = wave_window_source(design.config.module_name(UNIT), work_dir / "wave_src", lanes=design.config.lanes)
    runner = build(design, "icarus", work_dir / "wave_build", unit=UNIT, extra_sources=[source],
                   extra_roots=[WAVE_MODULE])
    test_dir = work_dir / "wave_run"
    test_dir.mkdir(parents=True, exist_ok=True)
    vectors = write_vectors(test_dir / "vectors.json", [job.case])
    fst = Path(fst)
    fst.parent.mkdir(parents=True, exist_ok=True)
    fst.unlink(missing_ok=True)
    lane_log = test_dir / "lane_results.txt"
    lane_log.unlink(missing_ok=True)
    # The testbench resets once in start() and once before the job: count from the second reset.
    run = run_cocotb(runner, design, test_module=TESTBENCH, seed=1, unit=UNIT, test_dir=test_dir,
                     extra_env={"STAG_VECTORS": str(vectors.resolve())},
                     plusargs=wave_plusargs(fst, reset=2, first=first, last=last, lane_log=lane_log),
                     # waves at test time only makes the runner pass -fst to vvp (not -none); the
                     # build has no whole-run dump module, so only the window is dumped.
                     waves=True)
    record = json.loads((run.record_dir / f"{job.name}.json").read_text(encoding="utf-8"))
    if not fst.exists():
        raise CosimFailure(f"Icarus wrote no waveform to {fst} (see {test_dir / 'sim.log'})")
    return WaveWindow(path=fst, first=first, last=last, reproduced=record["values"] != job.case.expected,
                      lane_results=_element_lane_results(lane_log, mismatch, design.config))


def _element_lane_results(lane_log: Path, mismatch: Mismatch,
                          config: StagConfig) -> tuple[tuple[int, int, int, int], ...]:
    """The lane results of ``mismatch``'s element in the GEMMs that summed into it, from the lane
    log of the rerun: (gemm command, cycle, lane, value). A result belongs to the GEMM whose
    (aligned, modelled) run it falls in; GEMMs run one after another, with the pipeline drained
    between them, so the few cycles the model may be off do not move a result across GEMMs."""
    from hw.sparse_lane import lane_result_layout

    layout = lane_result_layout(config.tile_m, config.tile_n, config.acc_bits)
    found = []
    for line in lane_log.read_text(encoding="utf-8").splitlines():
        cycle, lane, payload = (int(field) for field in line.split())
        view = layout.from_bits(payload)
        if (int(view.m), int(view.n)) != (mismatch.row, mismatch.col):
            continue
        for gemm, start, end, _ in mismatch.gemms:
            if start <= cycle < end:
                found.append((gemm, cycle, lane, _signed(int(view.value), config.acc_bits)))
    return tuple(found)


def generate_pair(config: StagConfig, rtl_dir: Path, *, dense_rtl: bool) -> tuple[GeneratedDesign,
                                                                                 GeneratedDesign | None]:
    """Generate ``config``'s design and, when ``dense_rtl`` and the design is sparse, its dense baseline."""
    design = generate(config, rtl_dir)
    dense = generate(dense_config(config), rtl_dir) if dense_rtl and config.sparse else None
    return design, dense
