"""The formal flow end to end on the smallest check: the dense dispatcher's conservation is proved
by bounded model checking, and both of its mutants are caught (``make formal`` runs every check)."""

from __future__ import annotations

from sim.formal.__main__ import run_check
from sim.formal.checks import CHECKS


def test_dispatcher_conservation_is_proved_and_its_mutants_fail(tmp_path):
    check = next(c for c in CHECKS if c.name == "dispatcher_dense")
    assert run_check(check, None, tmp_path)["passed"]
    for mutant in check.mutants:
        row = run_check(check, mutant, tmp_path)
        assert not row["passed"], f"mutant {mutant} was not caught"
        assert row["detail"], "a failing run names the assertion and the cycle"


def test_valid_from_ready_is_found_structurally(tmp_path):
    check = next(c for c in CHECKS if c.name == "core_valid_from_ready")
    assert run_check(check, None, tmp_path)["passed"]
    assert not run_check(check, "valid_waits_for_ready", tmp_path)["passed"]
