"""The report's figures (matplotlib, Agg, no pyplot state), each returned as a base64 PNG for an
``<img src="data:image/png;base64,...">``."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stag.report.cycles import Waterfall
from stag.report.inputs import CompareRun, TrainingRun

__all__ = ["PASSES", "accuracy", "model_vs_rtl", "speedup_per_layer", "speedup_per_pass", "waterfalls"]

DPI = 90
#: The passes of a layer, in the order the rows and the plots show them.
PASSES = ("fwd", "bwi", "bww")


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _positive(value: float | None) -> float:
    """A bar height for a log axis: NaN (no bar) for a missing or non-positive value."""
    return value if value is not None and value > 0 else math.nan


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def speedup_per_layer(runs: Sequence[CompareRun]) -> str:
    """Per run, per layer pass: the measured speedup (dense / sparse cycles) beside the ideal one
    (dense / effectual MACs)."""
    fig = Figure(figsize=(11, 2.6 * len(runs) + 0.4), layout="constrained")
    axes = fig.subplots(len(runs), 1, squeeze=False)[:, 0]
    for ax, run in zip(axes, runs, strict=True):
        names = [f"{r['layer']}.{r['pass']}" for r in run.rows]
        x = np.arange(len(names))
        ax.bar(x - 0.2, [_positive(r["speedup"]) for r in run.rows], 0.4, color="C0",
               label="measured: dense / sparse RTL cycles")
        ax.bar(x + 0.2, [_positive(r["ideal_speedup"]) for r in run.rows], 0.4, color="C1", alpha=0.6,
               label="ideal: dense / effectual MACs")
        ax.set_yscale("log")
        ax.axhline(1.0, color="0.4", linewidth=0.8)
        ax.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel("speedup (log)")
        total = run.total()
        ax.set_title(f"{run.label}: {_x(total['speedup'])} measured, {_x(total['ideal_speedup'])} ideal over "
                     f"the iteration", fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    return _png(fig)


def speedup_per_pass(runs: Sequence[CompareRun]) -> str:
    """Per run, per pass (FWD, BWI, BWW summed over the layers): measured against ideal speedup."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(runs))
    width = 0.13
    for i, pass_ in enumerate(PASSES):
        totals = [run.total(pass_) for run in runs]
        ax.bar(x + (2 * i - 2.5) * width, [_positive(t["speedup"]) for t in totals], width, color=f"C{i}",
               label=f"{pass_.upper()} measured")
        ax.bar(x + (2 * i - 1.5) * width, [_positive(t["ideal_speedup"]) for t in totals], width, color=f"C{i}",
               alpha=0.35, hatch="//", label=f"{pass_.upper()} ideal")
    ax.set_yscale("log")
    ax.axhline(1.0, color="0.4", linewidth=0.8)
    ax.set_xticks(x, [run.label for run in runs], fontsize=9)
    ax.set_ylabel("speedup (log)")
    ax.set_title("per pass, summed over the layers: measured (solid) against ideal (hatched)", fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(ncols=3, fontsize=8, loc="upper left")
    return _png(fig)


def waterfalls(falls: Sequence[Waterfall]) -> str:
    """Per run, the waterfall of its cycles: each step a floating bar on top of the previous ones,
    the measured total at the end, the ideal as a dashed line."""
    cols = 2 if len(falls) > 1 else 1
    rows = math.ceil(len(falls) / cols)
    fig = Figure(figsize=(11, 3.4 * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, fall in zip(axes, falls, strict=False):
        labels, bottoms, heights, colors = [], [], [], []
        level = 0.0
        for index, (label, cycles) in enumerate(fall.steps):
            first = index == 0
            labels.append(label)
            bottoms.append(level if cycles >= 0 else level + cycles)
            heights.append(abs(cycles))
            colors.append("C2" if first else "0.55" if label.startswith("RTL") else "C3")
            level += cycles
        labels.append("measured")
        bottoms.append(0.0)
        heights.append(fall.measured)
        colors.append("C0")
        x = np.arange(len(labels))
        ax.bar(x, heights, 0.7, bottom=bottoms, color=colors)
        for xi, (bottom, height) in enumerate(zip(bottoms, heights, strict=True)):
            share = 100.0 * height / fall.measured if fall.measured else 0.0
            ax.text(xi, bottom + height, f"{share:.0f}%", ha="center", va="bottom", fontsize=7)
        if fall.ideal:
            ax.axhline(fall.ideal, color="C1", linestyle="--", linewidth=1.2,
                       label=f"ideal {fall.ideal:,.0f} (dense cycles / ideal speedup)")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_xticks(x, labels, rotation=25, ha="right", fontsize=7)
        ax.set_ylabel("cycles")
        ax.set_title(f"{fall.label}: {fall.measured:,} cycles, {fall.lost:,.0f} beyond the ideal", fontsize=9)
        ax.margins(y=0.15)
    for ax in axes[len(falls):]:
        ax.set_axis_off()
    return _png(fig)


def model_vs_rtl(runs: Sequence[CompareRun], bench_rows: Sequence[dict[str, Any]] = ()) -> str:
    """Predicted (``ref.cycle_model``) against measured RTL cycles, every layer pass of every run
    (and every ``make bench`` program given), with each pass's relative error beside it."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax, err = fig.subplots(1, 2, width_ratios=(1.1, 1))
    points: list[float] = []
    for i, run in enumerate(runs):
        measured = [r["sparse_cycles"] for r in run.rows]
        model = [r["model_cycles"] for r in run.rows]
        ax.scatter(measured, model, s=18, color=f"C{i % 10}", label=run.label)
        errors = [100.0 * (m - s) / s if s else 0.0 for m, s in zip(model, measured, strict=True)]
        err.scatter(np.full(len(errors), i) + np.linspace(-0.2, 0.2, len(errors)), errors, s=14, color=f"C{i % 10}")
        points += measured + model
    labels = [run.label for run in runs]
    if bench_rows:
        measured = [r["sparse_cycles"] for r in bench_rows]
        model = [r["model_cycles"] for r in bench_rows]
        ax.scatter(measured, model, s=14, marker="x", color="0.2", label="make bench programs")
        errors = [100.0 * (m - s) / s if s else 0.0 for m, s in zip(model, measured, strict=True)]
        err.scatter(np.full(len(errors), len(runs)) + np.linspace(-0.2, 0.2, len(errors)), errors, s=12, marker="x",
                    color="0.2")
        labels.append("make bench")
        points += measured + model
    positive = [p for p in points if p > 0]
    if positive:
        low, high = min(positive), max(positive)
        ax.plot([low, high], [low, high], linestyle="--", color="0.5", linewidth=1, label="model = RTL")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("measured RTL cycles")
    ax.set_ylabel("cycle model")
    ax.set_title("cycles per layer pass", fontsize=10)
    ax.legend(fontsize=7)
    err.axhline(0.0, color="0.5", linewidth=0.8)
    err.set_xticks(range(len(labels)), labels, rotation=25, ha="right", fontsize=8)
    err.set_ylabel("(model - RTL) / RTL, %")
    err.set_title("relative error per layer pass", fontsize=10)
    err.grid(axis="y", alpha=0.3)
    return _png(fig)


def accuracy(runs: Sequence[TrainingRun]) -> str:
    """Test and train accuracy per epoch of every training run."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    test, train = fig.subplots(1, 2, sharey=True)
    for i, run in enumerate(runs):
        epochs = [h["epoch"] + 1 for h in run.history]
        test.plot(epochs, [h["test_accuracy"] for h in run.history], marker="o", color=f"C{i % 10}", label=run.label)
        train.plot(epochs, [h["train_accuracy"] for h in run.history], marker="s", color=f"C{i % 10}",
                   label=run.label)
    for ax, what in ((test, "test"), (train, "train")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{what} accuracy", fontsize=10)
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    test.set_ylabel("accuracy")
    test.legend(fontsize=8)
    return _png(fig)
