"""Where a replayed iteration's cycles go: the waterfall from the useful MACs to the measured
cycles, and how close the cycle model came to the RTL.

The waterfall takes the cycle model's breakdown that ``stag compare`` and ``stag demo`` store in
each row (``model_breakdown``: the categories of ``ref.cycle_model.CATEGORIES``, which sum to
``model_cycles``; ``model_lane_imbalance``: compute cycles not issuing a MAC on every lane), so
its steps are

    useful MACs (compute - lane imbalance) + lane imbalance and dispatch + operand loads not
    hidden + GEMM fill + pipeline drain and write-back + result drains = model cycles,
    model cycles + (RTL - model) = measured cycles,

with the ideal (dense cycles / ideal speedup, the cycles at the ideal speedup) as the reference
the lost cycles are counted from. Rows without the breakdown (written before it existed) give
only ideal, model and measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from stag.report.inputs import CompareRun

__all__ = ["STEPS", "ModelFit", "Waterfall", "model_fit", "waterfall"]

#: The waterfall's steps with a breakdown, in order: (key, label).
STEPS = (
    ("useful", "useful MACs"),
    ("lane_imbalance", "lane imbalance, dispatch"),
    ("load", "operand loads not hidden"),
    ("fill", "GEMM fill"),
    ("pipeline_drain", "pipeline drain, write-back"),
    ("drain_beats", "result drains"),
    ("unmodelled", "RTL - model"),
)


@dataclass(frozen=True)
class Waterfall:
    """One run's cycles, summed over its layer passes. ``steps``: (label, cycles), adding up to
    ``measured``; ``broken_down``: the steps are the model's categories (else ideal, model - ideal,
    RTL - model)."""

    label: str
    ideal: float
    model: int
    measured: int
    steps: tuple[tuple[str, float], ...]
    broken_down: bool

    @property
    def lost(self) -> float:
        """Cycles beyond the ideal."""
        return self.measured - self.ideal


def waterfall(run: CompareRun) -> Waterfall:
    total = run.total()
    measured, model = total["sparse_cycles"], total["model_cycles"]
    ideal = total["dense_cycles"] / total["ideal_speedup"] if total["ideal_speedup"] else 0.0
    if run.has_breakdown:
        parts = dict.fromkeys((key for key, _ in STEPS), 0.0)
        for row in run.rows:
            breakdown, imbalance = row["model_breakdown"], row["model_lane_imbalance"]
            parts["useful"] += breakdown["compute"] - imbalance
            parts["lane_imbalance"] += imbalance
            for key in ("load", "fill", "pipeline_drain", "drain_beats"):
                parts[key] += breakdown[key]
        parts["unmodelled"] = measured - model
        steps = tuple((label, parts[key]) for key, label in STEPS)
    else:
        steps = (("ideal", ideal), ("model - ideal (no breakdown in this file)", model - ideal),
                 ("RTL - model", measured - model))
    return Waterfall(label=run.label, ideal=ideal, model=model, measured=measured, steps=steps,
                     broken_down=run.has_breakdown)


@dataclass(frozen=True)
class ModelFit:
    """The cycle model against the RTL over one run: summed cycles, the error of the sums, and the
    layer pass with the largest relative error."""

    label: str
    passes: int
    model: int
    measured: int
    worst_pass: str
    worst_error: float

    @property
    def error(self) -> float:
        return abs(self.model - self.measured) / self.measured if self.measured else 0.0


def model_fit(run: CompareRun) -> ModelFit:
    errors = [(abs(r["model_cycles"] - r["sparse_cycles"]) / r["sparse_cycles"] if r["sparse_cycles"] else 0.0,
               f"{r['layer']}.{r['pass']}") for r in run.rows]
    worst_error, worst_pass = max(errors)
    total = run.total()
    return ModelFit(label=run.label, passes=len(run.rows), model=total["model_cycles"],
                    measured=total["sparse_cycles"], worst_pass=worst_pass, worst_error=worst_error)
