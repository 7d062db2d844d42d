"""Sharded cosimulation regressions: the verification flow of ``stag sim`` (``stag.verify``) cut into
one job per (simulator, suite, seed), run as Ray tasks or serially, with a JUnit XML and a summary.

A job generates the design, builds its suite's module for its simulator and runs the suite's
cocotb module for its seed, all in a directory of its own (nothing is shared between jobs, so
they can run on any node); it returns every test's outcome and the records the tests wrote. The
driver then requires, as ``stag sim`` does, that the simulators' records agree for every suite
and seed, and writes ``junit.xml`` (one test suite per job, plus the cross-simulator checks) and
``summary.json``. Outcomes and records do not depend on where or in which order jobs ran, so a
sharded run and a serial one give identical results per test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw.config import StagConfig
from sim.suites import Suite, suites
from stag.cluster import Executor

__all__ = ["Job", "RegressOutcome", "plan_jobs", "run_job", "run_regression", "suite_name"]


def suite_name(suite: Suite) -> str:
    """A suite's short name: ``core`` for the top's, else its unit."""
    return "core" if suite.unit is None else suite.unit


@dataclass(frozen=True, order=True)
class Job:
    """One cocotb module of one design module, on one simulator, for one seed."""

    suite: str
    seed: int
    sim: str
    test_module: str
    unit: str | None

    @property
    def name(self) -> str:
        return f"{self.sim}.{self.suite}.seed{self.seed}"


def plan_jobs(config: StagConfig, sims: Sequence[str], seeds: Sequence[int],
              only: Sequence[str] | None = None) -> list[Job]:
    """The jobs of ``config``'s regression (every suite, or those named in ``only``), in a fixed
    order; raises ``ValueError`` naming an unknown suite."""
    available = {suite_name(s): s for s in suites(config)}
    if only is not None:
        unknown = [name for name in only if name not in available]
        if unknown or not only:
            raise ValueError(f"--suites must name suites of {config.name}: {', '.join(available)}; "
                             f"got {', '.join(unknown) or 'none'}")
        chosen = [available[name] for name in dict.fromkeys(only)]
    else:
        chosen = list(available.values())
    return sorted(Job(suite_name(s), seed, sim, s.test_module, s.unit)
                  for s in chosen for seed in dict.fromkeys(seeds) for sim in dict.fromkeys(sims))


def _testcases(results_xml: Path) -> list[dict[str, Any]]:
    """Every test of a cocotb results file: name, outcome (passed / failed / skipped), time, message."""
    try:
        root = ET.parse(results_xml).getroot()
    except (OSError, ET.ParseError):
        return []
    tests = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                message = (child.get("message") or child.text or "").strip()
            elif child.tag == "skipped" and outcome == "passed":
                outcome = "skipped"
        tests.append({"name": case.get("name", ""), "outcome": outcome, "time": float(case.get("time") or 0.0),
                      "message": message})
    return tests


def run_job(fields: dict[str, Any], job: Job, job_dir: str) -> dict[str, Any]:
    """Run one job in ``job_dir`` (emptied first); its status ("passed", "failed" or "error"), a
    message, its tests and its records (``{file name: record}``). A Ray task, or called serially."""
    from hw.generate import generate
    from sim import toolchain
    from sim.core_vectors import write_vectors
    from sim.runner import CosimFailure, build, run_cocotb

    started = time.perf_counter()
    toolchain.activate()  # a worker on another node has its own environment
    config = StagConfig.from_dict(fields)
    suite = next(s for s in suites(config) if suite_name(s) == job.suite)
    work = Path(job_dir)
    shutil.rmtree(work, ignore_errors=True)
    test_dir = work / "run"
    status, message = "passed", ""
    try:
        design = generate(config, work / "rtl")
        runner = build(design, job.sim, work / "build", unit=job.unit)
        extra_env = {}
        if suite.vectors is not None:
            test_dir.mkdir(parents=True, exist_ok=True)
            vectors = write_vectors(test_dir / "vectors.json", suite.vectors(config, job.seed))
            extra_env["STAG_VECTORS"] = str(vectors.resolve())
        run_cocotb(runner, design, test_module=job.test_module, seed=job.seed, unit=job.unit, test_dir=test_dir,
                   extra_env=extra_env)
    except CosimFailure as exc:
        status, message = "failed", str(exc)
    except Exception as exc:  # generation or build failed: the job's result, not the driver's crash
        status, message = "error", f"{type(exc).__name__}: {exc}"
    records = {p.name: json.loads(p.read_text(encoding="utf-8"))
               for p in sorted((test_dir / "records").glob("*.json"))}
    return {"status": status, "message": message, "tests": _testcases(test_dir / "results.xml"),
            "records": records, "seconds": round(time.perf_counter() - started, 2)}


@dataclass(frozen=True)
class RegressOutcome:
    """A finished regression: the summary written to ``summary.json`` and where the files are."""

    summary: dict[str, Any]
    junit: Path
    summary_path: Path

    @property
    def passed(self) -> bool:
        return self.summary["passed"]


def _digest(records: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()


def run_regression(config: StagConfig, jobs: Sequence[Job], executor: Executor, out_dir: Path, *,
                   progress: Callable[[str], None] = print) -> RegressOutcome:
    """Run ``jobs`` with ``executor``, cross-check the simulators, write ``out_dir/junit.xml`` and
    ``out_dir/summary.json``."""
    from sim.crosscheck import record_differences

    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    results: dict[Job, dict[str, Any]] = {}
    with executor:
        for job in jobs:
            executor.submit(job, run_job, config.to_dict(), job, str(out_dir / "jobs" / job.name))
        for done in executor.completed():
            job = done.tag
            result = done.result if not done.error else {
                "status": "error", "message": f"task failed: {done.error}", "tests": [], "records": {}, "seconds": 0.0}
            results[job] = {**result, "node": done.node}
            failed = sum(t["outcome"] == "failed" for t in result["tests"])
            what = (f"{len(result['tests'])} tests passed" if result["status"] == "passed"
                    else f"{result['status'].upper()} ({failed} of {len(result['tests'])} tests failed): "
                         f"{result['message'].splitlines()[0] if result['message'] else ''}")
            progress(f"[{len(results)}/{len(jobs)}] {job.sim} {job.suite} seed {job.seed}: {what} "
                     f"({result['seconds']:.1f} s{', node ' + done.node[:8] if done.node else ''})")

    # The records come back with the results (a job may have run on another machine): compare them here.
    records_root = out_dir / "records"
    shutil.rmtree(records_root, ignore_errors=True)
    for job, result in results.items():
        where = records_root / job.name
        where.mkdir(parents=True)
        for name, record in result["records"].items():
            (where / name).write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
    crosschecks = []
    groups: dict[tuple[str, int], list[Job]] = {}
    for job in sorted(jobs):
        groups.setdefault((job.suite, job.seed), []).append(job)
    for (suite, seed), group in groups.items():
        if len(group) < 2:
            continue
        first, problems = group[0], []
        for other in group[1:]:
            if results[first]["status"] != "passed" or results[other]["status"] != "passed":
                problems.append(f"not compared: {first.sim} {results[first]['status']}, "
                                f"{other.sim} {results[other]['status']}")
                continue
            found = record_differences(records_root / first.name, records_root / other.name)
            problems += [f"{first.sim} and {other.sim} disagree: {p}" for p in found]
        crosschecks.append({"suite": suite, "seed": seed, "sims": [j.sim for j in group], "agree": not problems,
                            "problems": problems})

    ordered = sorted(jobs)
    outcomes = {f"{job.name}::{t['name']}": t["outcome"] for job in ordered for t in results[job]["tests"]}
    summary = {
        "design": config.name, "config": config.to_dict(), "where": executor.where,
        "jobs": [{"name": job.name, "sim": job.sim, "suite": job.suite, "test_module": job.test_module,
                  "seed": job.seed, "status": results[job]["status"], "message": results[job]["message"],
                  "tests": len(results[job]["tests"]),
                  "failed": sum(t["outcome"] == "failed" for t in results[job]["tests"]),
                  "seconds": results[job]["seconds"], "node": results[job]["node"],
                  "records_sha256": _digest(results[job]["records"])} for job in ordered],
        "outcomes": outcomes,
        "crosscheck": crosschecks,
        "tests": len(outcomes),
        "failures": sum(o == "failed" for o in outcomes.values()),
        "nodes": sorted({results[job]["node"] for job in ordered if results[job]["node"]}),
        "passed": (all(results[job]["status"] == "passed" for job in ordered)
                   and all(c["agree"] for c in crosschecks)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    junit = out_dir / "junit.xml"
    _write_junit(junit, config.name, ordered, results, crosschecks)
    summary_path = out_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return RegressOutcome(summary, junit, summary_path)


def _write_junit(path: Path, design: str, jobs: Sequence[Job], results: dict[Job, dict[str, Any]],
                 crosschecks: list[dict[str, Any]]) -> None:
    """JUnit XML: a test suite per job (its cocotb tests; a job that ran none has one ``run`` test
    carrying its error), and a ``crosscheck`` suite with a test per suite and seed run on several
    simulators."""
    root = ET.Element("testsuites", name=f"stag regress {design}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "time": 0.0}
    for job in jobs:
        result = results[job]
        suite = ET.SubElement(root, "testsuite", name=job.name)
        props = ET.SubElement(suite, "properties")
        for key, value in (("simulator", job.sim), ("test_module", job.test_module), ("seed", job.seed),
                           ("node", result["node"])):
            ET.SubElement(props, "property", name=key, value=str(value))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for test in result["tests"]:
            case = ET.SubElement(suite, "testcase", classname=job.name, name=test["name"], time=f"{test['time']:.3f}")
            counts["tests"] += 1
            if test["outcome"] == "failed":
                ET.SubElement(case, "failure", message=test["message"].splitlines()[0] if test["message"] else "")
                counts["failures"] += 1
            elif test["outcome"] == "skipped":
                ET.SubElement(case, "skipped")
                counts["skipped"] += 1
        if not result["tests"] or (result["status"] != "passed" and not counts["failures"]):
            case = ET.SubElement(suite, "testcase", classname=job.name, name="run", time=f"{result['seconds']:.3f}")
            counts["tests"] += 1
            if result["status"] != "passed":
                ET.SubElement(case, "error", message=result["message"].splitlines()[0] if result["message"] else "")
                counts["errors"] += 1
        suite.set("time", f"{result['seconds']:.3f}")
        for key, value in counts.items():
            suite.set(key, str(value))
        for key in ("tests", "failures", "errors"):
            totals[key] += counts[key]
        totals["time"] += result["seconds"]
    if crosschecks:
        suite = ET.SubElement(root, "testsuite", name="crosscheck", tests=str(len(crosschecks)),
                              failures=str(sum(not c["agree"] for c in crosschecks)), errors="0", skipped="0")
        for check in crosschecks:
            case = ET.SubElement(suite, "testcase", classname="crosscheck",
                                 name=f"{check['suite']}.seed{check['seed']} {'='.join(check['sims'])}", time="0")
            if not check["agree"]:
                ET.SubElement(case, "failure", message="; ".join(check["problems"])[:2000])
        totals["tests"] += len(crosschecks)
        totals["failures"] += sum(not c["agree"] for c in crosschecks)
    for key, value in totals.items():
        root.set(key, f"{value:.3f}" if key == "time" else str(value))
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
