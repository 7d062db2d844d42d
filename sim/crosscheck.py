"""Compare what two simulators observed for the same design, seed and tests.

Each cocotb test writes a JSON record (values, cycle numbers, counters) through
``sim.env.write_record``; Icarus and Verilator must produce identical records.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["record_differences"]


def record_differences(first: Path, second: Path) -> list[str]:
    """Human-readable differences between two record directories (empty when they agree)."""
    names_a = {p.name for p in Path(first).glob("*.json")}
    names_b = {p.name for p in Path(second).glob("*.json")}
    problems = [f"record {name} only in {first}" for name in sorted(names_a - names_b)]
    problems += [f"record {name} only in {second}" for name in sorted(names_b - names_a)]
    if not names_a and not names_b:
        problems.append(f"no records in {first} or {second}")
    for name in sorted(names_a & names_b):
        a = json.loads((Path(first) / name).read_text(encoding="utf-8"))
        b = json.loads((Path(second) / name).read_text(encoding="utf-8"))
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                va, vb = a.get(key), b.get(key)
                where = ""
                if isinstance(va, list) and isinstance(vb, list):
                    pairs = enumerate(zip(va, vb, strict=False))
                    index = next((i for i, (x, y) in pairs if x != y), min(len(va), len(vb)))
                    where = f" first differs at index {index}"
                problems.append(f"{name}: '{key}' differs{where}")
    return problems
