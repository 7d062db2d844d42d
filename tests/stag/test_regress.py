"""``stag regress``: the jobs it plans, its JUnit XML and summary, failures and simulator disagreements.

The jobs here are stand-ins (``stag.regress.run_job`` replaced), so these tests check the driver in
a second; ``tests/stag/test_ray_cluster.py`` runs real cosimulations, sharded and serially.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from hw.config import preset
from stag import regress
from stag.cli import main
from stag.cluster import Executor
from stag.regress import Job, plan_jobs, run_regression


def test_jobs_cover_every_simulator_suite_and_seed_in_a_fixed_order():
    config = preset("tiny")
    jobs = plan_jobs(config, ["icarus", "verilator"], [2, 1], ["lfsr", "core"])
    assert [job.name for job in jobs] == [
        "icarus.core.seed1", "verilator.core.seed1", "icarus.core.seed2", "verilator.core.seed2",
        "icarus.lfsr.seed1", "verilator.lfsr.seed1", "icarus.lfsr.seed2", "verilator.lfsr.seed2"]
    assert jobs[0].test_module == "sim.tb_core" and jobs[0].unit is None
    assert jobs[-1].test_module == "sim.tb_lfsr" and jobs[-1].unit == "lfsr"
    # Every suite by default: the core's and one per unit (the two bitmap units share a testbench).
    everything = plan_jobs(config, ["icarus"], [1])
    assert [job.suite for job in everything] == sorted(["core", *config.units])


def test_unknown_suite_is_an_error_naming_the_suites(capsys, tmp_path):
    with pytest.raises(ValueError, match="lfsr"):
        plan_jobs(preset("tiny"), ["icarus"], [1], ["nope"])
    assert main(["regress", "--preset", "tiny", "--suites", "nope", "--serial", "--work", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--suites must name suites of tiny" in err and "nope" in err
    assert not any(tmp_path.iterdir())


def fake_job(fields, job: Job, job_dir):
    """Stand-in results: lfsr seed 2 fails one test on icarus; the simulators disagree on pe_lane seed 1."""
    failing = job.name == "icarus.lfsr.seed2"
    tests = [{"name": "test_a", "outcome": "passed", "time": 0.5, "message": ""},
             {"name": "test_b", "outcome": "failed" if failing else "passed", "time": 0.25,
              "message": "AssertionError: beat 3 differs\nmore" if failing else ""}]
    value = 7 if job.name == "verilator.pe_lane.seed1" else 6
    return {"status": "failed" if failing else "passed", "message": "1 of 2 tests failed" if failing else "",
            "tests": tests, "records": {"test_a.json": {"values": [1, 2, value], "cycles": [3, 4, 5]}},
            "seconds": 1.0}


def test_junit_and_summary_report_failures_and_disagreements(tmp_path, monkeypatch):
    monkeypatch.setattr(regress, "run_job", fake_job)
    config = preset("tiny")
    jobs = plan_jobs(config, ["icarus", "verilator"], [1, 2], ["lfsr", "pe_lane"])
    outcome = run_regression(config, jobs, Executor(serial=True), tmp_path, progress=lambda line: None)
    summary = json.loads(outcome.summary_path.read_text())
    assert summary == outcome.summary and not outcome.passed
    assert summary["tests"] == 16 and summary["failures"] == 1
    assert summary["outcomes"]["icarus.lfsr.seed2::test_b"] == "failed"
    assert summary["outcomes"]["verilator.lfsr.seed2::test_b"] == "passed"
    checks = {(c["suite"], c["seed"]): c for c in summary["crosscheck"]}
    assert len(checks) == 4 and checks["lfsr", 1]["agree"] and checks["pe_lane", 2]["agree"]
    assert checks["pe_lane", 1]["problems"] == [
        "icarus and verilator disagree: test_a.json: 'values' differs first differs at index 2"]
    assert checks["lfsr", 2]["problems"] == ["not compared: icarus failed, verilator passed"]

    root = ET.parse(outcome.junit).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "20" and root.get("failures") == "3"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == [job.name for job in sorted(jobs)] + ["crosscheck"]
    failed = suites["icarus.lfsr.seed2"]
    assert failed.get("failures") == "1" and failed.get("tests") == "2"
    case = next(c for c in failed.iter("testcase") if c.get("name") == "test_b")
    assert case.find("failure").get("message") == "AssertionError: beat 3 differs"
    props = {p.get("name"): p.get("value") for p in suites["verilator.pe_lane.seed1"].iter("property")}
    assert props == {"simulator": "verilator", "test_module": "sim.tb_pe_lane", "seed": "1", "node": "serial"}
    cross = {c.get("name"): c for c in suites["crosscheck"].iter("testcase")}
    assert cross["pe_lane.seed1 icarus=verilator"].find("failure") is not None
    assert cross["pe_lane.seed2 icarus=verilator"].find("failure") is None


def test_a_job_that_cannot_build_is_an_error_test(tmp_path, monkeypatch):
    def no_build(fields, job, job_dir):
        return {"status": "error", "message": "RuntimeError: iverilog failed\n...", "tests": [], "records": {},
                "seconds": 0.5}

    monkeypatch.setattr(regress, "run_job", no_build)
    config = preset("tiny")
    outcome = run_regression(config, plan_jobs(config, ["icarus"], [1], ["lfsr"]), Executor(serial=True), tmp_path,
                             progress=lambda line: None)
    assert not outcome.passed and outcome.summary["jobs"][0]["status"] == "error"
    suite = ET.parse(outcome.junit).getroot().find("testsuite")
    assert suite.get("errors") == "1"
    assert suite.find("testcase").get("name") == "run"
    assert suite.find("testcase/error").get("message") == "RuntimeError: iverilog failed"
