"""Per-module cost of a generated design: Yosys ``synth_ecp5`` cell counts of the top and each unit.

Each module (the core and every generated unit) is synthesized on its own, out of context, so the
counts say what that block costs by itself. No place and route: this is the quick estimate that
``stag generate --cost`` prints; ``stag synth`` gives the post-route figures of the top.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hw.generate import GeneratedDesign
from stag.synth import SynthReport, synthesize_ecp5

__all__ = ["COST_COLUMNS", "module_costs", "write_costs"]

#: Columns of the cost table: (SynthReport field, heading).
COST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("lut4", "LUT4"), ("carry", "CCU2C"), ("ff", "FF"), ("dsp", "DSP"), ("bram", "BRAM"))


def module_costs(design: GeneratedDesign, work_dir: Path, *,
                 progress: Callable[[str], None] = lambda line: None) -> dict[str, SynthReport]:
    """``{module label: report}`` for the top (label ``"top"``) and every unit, in design order.

    Modules are synthesized in parallel (one Yosys process per CPU core); ``progress`` gets a line
    as each one finishes.
    """
    units = design.modules
    labels = ["top" if unit is None else unit for unit in units]
    workers = max(1, min(len(units), os.cpu_count() or 1))

    def one(unit: str | None, label: str) -> SynthReport:
        report = synthesize_ecp5(design, Path(work_dir) / label, place_and_route=False, unit=unit)
        progress(f"  {label}: {report.lut4} LUT4, {report.ff} FF ({report.synth_seconds:.0f} s)")
        return report

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(one, unit, label) for unit, label in zip(units, labels, strict=True)]
        return {label: future.result() for label, future in zip(labels, futures, strict=True)}


def write_costs(costs: dict[str, SynthReport], path: Path) -> None:
    """Write ``costs`` as JSON: ``{label: SynthReport fields}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: v.to_json() for k, v in costs.items()}, indent=2) + "\n", encoding="utf-8")
