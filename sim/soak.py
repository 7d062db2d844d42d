"""Soak: random programs through the AXI top on Icarus and Verilator, until a number of result tiles.

    python -m sim.soak [--preset NAME | --config FILE] [--tiles N] [--shards P] [--sims icarus,verilator]
                       [--programs P] [--out DIR] [--fresh] [--address HOST:PORT | local]

(``make soak TILES=N``.) Work comes in batches, one per seed (1, 2, 3, ...): a batch is
``sim.axi_cases.axi_cases(config, seed, count=P)``: P random programs cycling through every
command mode (dense, A-sparse, B-sparse, both, masked, ...) at densities 0 to 100 %, plus a
pruning, a top-K and a ReSprop program, every accumulator buffer, random input gaps, result
backpressure and AXI-Lite pauses on every channel but the first program's. Each batch runs
``sim.tb_axi``'s ``test_programs`` on every simulator: every result beat (padding included), TLAST,
the counters, PRUNE_SUM, ReSprop's registers and read-back P against ``ref.contract.evaluate``;
then the simulators' records (values, cycle of every tile end, counters) must be identical.

**Sharded and resumable.** Batches run in ``P`` worker processes, each with its own builds of the
design (built once per worker and simulator, in ``DIR/build/``). A finished batch writes
``DIR/batches/seed_<n>.json`` (atomically); a rerun skips every finished seed, and stops once the
finished batches hold ``N`` tiles. ``--fresh`` starts over.

**On Ray** (``--address HOST:PORT``, or ``local`` for a Ray instance of this machine's CPUs): the
batches run as Ray tasks, ``P`` at a time, one CPU each, each Ray worker keeping its own builds as
a worker process does; the coordinator writes each finished batch's file itself, so the nodes of a
cluster need no shared file system for the results (``DIR`` must be a path every node can write;
it is made absolute). The batches' results are the same as with local worker processes.

**Summary** (``DIR/summary.json``, rewritten after every batch): ``programs``, ``tiles`` (result
tiles, i.e. drains), ``mismatches`` (programs found wrong: a batch stops at its first failing
program, so a failing batch counts one; a difference between the simulators' records counts one),
``simulators``, ``seeds``, ``configs``, ``config_failures`` (configurations that failed to generate
or build), ``first_failing_seed`` (None when all passed), the cycles simulated and the wall-clock
time per simulator (``cycles_per_second``: simulated clock cycles of the programs per second of
that simulator's runs, cocotb included). A failing batch keeps its run directory
(``DIR/work/seed_<n>/``, logs and records) and names it in its batch file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from hw.config import StagConfig, load_config, preset
from hw.generate import GeneratedDesign, generate
from sim.axi_cases import axi_cases
from sim.core_vectors import VectorCase, write_vectors
from sim.crosscheck import record_differences
from sim.runner import SIMULATORS, CosimFailure, build, run_cocotb

__all__ = ["SoakSettings", "batch_cases", "main", "run_soak", "summarize"]


@dataclass(frozen=True)
class SoakSettings:
    """What one soak runs: the design, the simulators, the batch size and where its files go."""

    config: StagConfig
    out: Path
    simulators: tuple[str, ...] = SIMULATORS
    programs: int = 6                # random programs per batch (the pruning, top-K and ReSprop ones come on top)


def batch_cases(config: StagConfig, seed: int, programs: int) -> list[VectorCase]:
    """The programs of batch ``seed`` (with ``ref``'s expected results)."""
    return axi_cases(config, seed, count=programs)


def case_tiles(case: VectorCase) -> int:
    """Result tiles (drains) of one program."""
    return len(case.expected) // case.drain_beats


# ---- worker side -------------------------------------------------------------------------------------
_BUILT: dict[str, object] = {}
_DESIGN: GeneratedDesign | None = None


def _worker_runner(settings: SoakSettings, sim: str):
    """This worker's build of the AXI top for ``sim`` (built on first use)."""
    global _DESIGN
    if _DESIGN is None:
        _DESIGN = generate(settings.config, settings.out / "build" / f"worker{os.getpid()}" / "rtl")
    if sim not in _BUILT:
        _BUILT[sim] = build(_DESIGN, sim, settings.out / "build" / f"worker{os.getpid()}" / sim, unit="axi")
    return _BUILT[sim]


def run_batch(settings: SoakSettings, seed: int) -> dict:
    """Run batch ``seed`` on every simulator; its result (also written to ``batches/seed_<n>.json``)."""
    cases = batch_cases(settings.config, seed, settings.programs)
    work = settings.out / "work" / f"seed_{seed}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    vectors = write_vectors(work / "vectors.json", cases)
    result = {"seed": seed, "programs": len(cases), "tiles": sum(case_tiles(c) for c in cases),
              "names": [c.name for c in cases], "simulators": {}, "differences": [], "work": None}
    records = {}
    for sim in settings.simulators:
        started = time.perf_counter()
        entry = {"ok": True, "failure": "", "cycles": 0, "seconds": 0.0}
        try:
            runner = _worker_runner(settings, sim)
            run = run_cocotb(runner, _DESIGN, test_module="sim.tb_axi", testcase="test_programs", seed=seed,
                             unit="axi", test_dir=work / sim, extra_env={"STAG_VECTORS": str(vectors.resolve())})
            records[sim] = run.record_dir
            entry["cycles"] = sum(json.loads(p.read_text(encoding="utf-8"))["cycles"]
                                  for p in run.record_dir.glob("*.json"))
        except CosimFailure as failure:
            entry.update(ok=False, failure=str(failure))
        entry["seconds"] = round(time.perf_counter() - started, 2)
        result["simulators"][sim] = entry
    if len(records) == len(settings.simulators) == 2:
        result["differences"] = record_differences(*records.values())
    result["ok"] = all(e["ok"] for e in result["simulators"].values()) and not result["differences"]
    if result["ok"]:
        shutil.rmtree(work, ignore_errors=True)
    else:
        result["work"] = str(work)
    _write_json(settings.out / "batches" / f"seed_{seed}.json", result)
    return result


# ---- coordinator side --------------------------------------------------------------------------------
class _RayPool:
    """``submit(fn, *args)`` as a Ray task (one CPU) on the cluster at ``address`` (``"local"``: a new
    local instance), returning a ``concurrent.futures.Future``; the interface of ``ProcessPoolExecutor``
    that :func:`run_soak` uses."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._temp_dir: str | None = None
        self._remote: dict = {}

    def __enter__(self) -> _RayPool:
        import logging
        import tempfile

        import ray

        options = {"log_to_driver": False, "logging_level": logging.ERROR}
        if self._address == "local":
            self._temp_dir = tempfile.mkdtemp(prefix="stag_ray_", dir="/tmp" if os.path.isdir("/tmp") else None)
            options.update(include_dashboard=False, _temp_dir=self._temp_dir)
        ray.init(address=self._address, **options)
        return self

    def submit(self, fn, *args):
        import ray

        if fn not in self._remote:
            self._remote[fn] = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(fn)
        return self._remote[fn].remote(*args).future()

    def __exit__(self, *exc_info) -> None:
        import ray

        ray.shutdown()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    partial.replace(path)


def finished_batches(out: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((out / "batches").glob("seed_*.json"))]


def summarize(settings: SoakSettings, batches: list[dict], config_failures: list[str]) -> dict:
    """The soak's summary over ``batches`` (the batch files' contents)."""
    per_sim = {}
    for sim in settings.simulators:
        cycles = sum(b["simulators"].get(sim, {}).get("cycles", 0) for b in batches)
        seconds = sum(b["simulators"].get(sim, {}).get("seconds", 0.0) for b in batches)
        per_sim[sim] = {"cycles": cycles, "seconds": round(seconds, 1),
                        "cycles_per_second": round(cycles / seconds) if seconds else None}
    failing = sorted(b["seed"] for b in batches if not b["ok"])
    mismatches = sum((not all(e["ok"] for e in b["simulators"].values())) + bool(b["differences"])
                     for b in batches)
    return {
        "programs": sum(b["programs"] for b in batches),
        "tiles": sum(b["tiles"] for b in batches),
        "mismatches": mismatches,
        "simulators": list(settings.simulators),
        "seeds": sorted(b["seed"] for b in batches),
        "batches": len(batches),
        "configs": [settings.config.name],
        "config": settings.config.resolved(),
        "config_failures": config_failures,
        "first_failing_seed": failing[0] if failing else None,
        "failing_seeds": failing,
        "per_simulator": per_sim,
    }


def run_soak(settings: SoakSettings, tiles: int, shards: int, *, fresh: bool = False, log=print,
             address: str | None = None) -> dict:
    """Run batches until the finished ones hold ``tiles`` result tiles; the summary. ``address``: run
    the batches as Ray tasks on that cluster (``"local"``: a local Ray instance), ``shards`` at a time."""
    if address is not None:
        settings = dataclasses.replace(settings, out=Path(settings.out).resolve())
    if fresh:
        for sub in ("batches", "work", "build"):
            shutil.rmtree(settings.out / sub, ignore_errors=True)
    done = {b["seed"]: b for b in finished_batches(settings.out)}
    have = sum(b["tiles"] for b in done.values())
    log(f"soak of {settings.config.name} on {', '.join(settings.simulators)}: {have:,} of {tiles:,} tiles "
        f"already done in {len(done)} batches; {shards} worker(s)"
        f"{'' if address is None else f' as Ray tasks ({address})'}")
    config_failures: list[str] = []
    started = time.perf_counter()
    next_seed = 1
    with ProcessPoolExecutor(max_workers=shards) if address is None else _RayPool(address) as pool:
        pending = {}
        planned = have
        stopped = False
        while True:
            while not stopped and len(pending) < shards and planned < tiles:
                while next_seed in done:
                    next_seed += 1
                # Each batch's tiles are known before it runs (the programs are drawn here).
                planned += sum(case_tiles(c) for c in batch_cases(settings.config, next_seed, settings.programs))
                pending[pool.submit(run_batch, settings, next_seed)] = next_seed
                next_seed += 1
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                seed = pending.pop(future)
                try:
                    batch = future.result()
                except Exception as exc:   # a build or generation error: the configuration failed
                    config_failures.append(f"seed {seed}: {type(exc).__name__}: {exc}")
                    log(f"   seed {seed}: could not run: {exc}")
                    stopped = True     # the batches in flight finish; no new one starts
                    continue
                done[seed] = batch
                # The worker wrote it too; on a cluster without a shared file system, only this copy is here.
                _write_json(settings.out / "batches" / f"seed_{seed}.json", batch)
                have += batch["tiles"]
                elapsed = time.perf_counter() - started
                sims = "  ".join(f"{sim} {'ok' if e['ok'] else 'FAIL'} {e['seconds']:.0f} s"
                                 for sim, e in batch["simulators"].items())
                log(f"   seed {seed:>5}: {batch['programs']} programs, {batch['tiles']} tiles  {sims}"
                    f"{'  DIFFERENT RECORDS' if batch['differences'] else ''}   "
                    f"[{have:,}/{tiles:,} tiles, {elapsed / 60:.1f} min]", flush=True)
                if not batch["ok"]:
                    log(f"      kept {batch['work']}: "
                        f"{'; '.join(e['failure'] for e in batch['simulators'].values() if e['failure'])[:600]}"
                        f"{'; '.join(batch['differences'])[:600]}")
                _write_json(settings.out / "summary.json",
                            summarize(settings, list(done.values()), config_failures))
    summary = summarize(settings, list(done.values()), config_failures)
    _write_json(settings.out / "summary.json", summary)
    shutil.rmtree(settings.out / "build", ignore_errors=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", default=None, help="a named configuration (default: default)")
    group.add_argument("--config", default=None, metavar="FILE", help="a TOML configuration file")
    parser.add_argument("--tiles", type=int, default=100_000, help="result tiles to reach (default 100000)")
    parser.add_argument("--shards", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)")
    parser.add_argument("--sims", default=",".join(SIMULATORS), help="simulators, comma-separated (default: both)")
    parser.add_argument("--programs", type=int, default=6, help="random programs per batch (default 6)")
    parser.add_argument("--out", default="runs/soak", metavar="DIR", help="run directory (default runs/soak)")
    parser.add_argument("--fresh", action="store_true", help="forget finished batches and start over")
    parser.add_argument("--address", default=None, metavar="HOST:PORT",
                        help="run the batches as Ray tasks on this cluster, --shards at a time ('local': a local "
                             "Ray instance); default: local worker processes")
    args = parser.parse_args(argv)
    sims = tuple(s for s in args.sims.split(",") if s)
    for name, value in (("--tiles", args.tiles), ("--shards", args.shards), ("--programs", args.programs)):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if not sims or any(s not in SIMULATORS for s in sims) or len(set(sims)) != len(sims):
        parser.error(f"--sims must list distinct simulators of {', '.join(SIMULATORS)}, got {args.sims!r}")
    config = load_config(args.config) if args.config else preset(args.preset or "default")
    settings = SoakSettings(config=config, out=Path(args.out), simulators=sims, programs=args.programs)
    summary = run_soak(settings, args.tiles, args.shards, fresh=args.fresh, address=args.address)
    rates = "; ".join(f"{sim}: {s['cycles']:,} cycles in {s['seconds']:,.0f} s ({s['cycles_per_second'] or 0:,}/s)"
                      for sim, s in summary["per_simulator"].items())
    print(f"soak: {summary['programs']:,} programs, {summary['tiles']:,} tiles, {summary['mismatches']} mismatches, "
          f"{len(summary['config_failures'])} configuration failures; {rates}")
    print(f"summary: {Path(args.out) / 'summary.json'}")
    return 0 if summary["mismatches"] == 0 and not summary["config_failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
