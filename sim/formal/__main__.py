"""``python -m sim.formal`` (``make formal``): prove every check, then show every mutant fails.

Prints one line per run as it finishes, the counterexample of any check that fails, and writes
``runs/formal/summary.json``. Exit status 1 if a check fails or a mutant passes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sim.formal.checks import CHECKS, FormalCheck
from sim.formal.runner import combinational_paths, format_failure, run_smtbmc


def run_check(check: FormalCheck, mutant: str | None, out: Path) -> dict:
    """One run of ``check`` (or of its ``mutant``): a summary row; prints a failure's trace."""
    label = check.name + (f" [mutant {mutant}]" if mutant else "")
    work = out / check.name / (mutant or "design")
    start = time.monotonic()
    if check.structural:
        harness = check.build(mutant)
        sources = [source for source, _ in check.structural]
        sinks = [sink for _, sink in check.structural]
        found = combinational_paths(label, harness, harness.ports, sources, sinks, work)
        paths = [f"{sink} <- {source}" for source, sink in check.structural if sink in found]
        passed, detail = not paths, "; ".join(paths)
    else:
        harness = check.build(mutant)
        result = run_smtbmc(label, harness, harness.ports, depth=check.depth, work_dir=work)
        passed, detail = result.passed, "" if result.passed else f"{result.failed_at} cycle {result.step}"
        if not passed and mutant is None:
            print(format_failure(result))
    seconds = time.monotonic() - start
    expected = mutant is None
    ok = passed == expected
    verdict = ("PASS" if passed else "FAIL") + ("" if ok else "  <-- unexpected")
    print(f"{label:58s} {verdict:24s} {seconds:7.1f} s  {detail}", flush=True)
    return {"check": check.name, "mutant": mutant, "depth": check.depth, "structural": bool(check.structural),
            "passed": passed, "as_expected": ok, "seconds": round(seconds, 1), "detail": detail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.formal", description=__doc__)
    parser.add_argument("--only", action="append", metavar="CHECK", choices=[c.name for c in CHECKS],
                        help="run only this check (repeatable)")
    parser.add_argument("--no-mutants", action="store_true", help="skip the mutants")
    parser.add_argument("--out", type=Path, default=Path("runs/formal"), help="work and summary directory")
    args = parser.parse_args(argv)
    checks = [c for c in CHECKS if not args.only or c.name in args.only]
    rows = []
    for check in checks:
        print(f"-- {check.name}: {check.description}", flush=True)
        rows.append(run_check(check, None, args.out))
        if not args.no_mutants:
            for mutant, what in check.mutants.items():
                print(f"   mutant {mutant}: {what}", flush=True)
                rows.append(run_check(check, mutant, args.out))
    bad = [r for r in rows if not r["as_expected"]]
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"checks": len(checks), "runs": len(rows), "unexpected": len(bad), "rows": rows}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"{len(rows)} runs, {len(bad)} unexpected; summary in {args.out / 'summary.json'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
