"""The Pareto fronts of a sweep (throughput against cost, throughput against Fmax), as a table and a PNG.

Throughput is dense-equivalent GMAC/s when the sweep routes its points (``synth = true``), else
dense-equivalent MACs per cycle (no clock is known). Cost is LUT4 (Yosys ``synth_ecp5``) when the
sweep synthesizes, else the number of multipliers: the repository has no LUT4 estimate without
synthesis, and the table says which cost it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Axes", "Fronts", "axes_for", "fronts", "pareto_front", "plot_fronts", "render_table"]


def pareto_front(values: Sequence[Sequence[float]], senses: Sequence[str]) -> list[int]:
    """Indices (ascending) of the points that no other point dominates.

    ``values[i]`` holds point i's objectives, ``senses`` says per objective ``"max"`` or ``"min"``.
    A point dominates another when it is at least as good in every objective and better in one;
    equal points dominate neither other, so both stay on the front.
    """
    if any(sense not in ("max", "min") for sense in senses):
        raise ValueError(f"senses must be 'max' or 'min', got {list(senses)!r}")
    signed = [tuple(v if s == "max" else -v for v, s in zip(row, senses, strict=True)) for row in values]
    front = []
    for i, a in enumerate(signed):
        dominated = any(all(y >= x for x, y in zip(a, b, strict=True)) and b != a
                        for j, b in enumerate(signed) if j != i)
        if not dominated:
            front.append(i)
    return front


@dataclass(frozen=True)
class Axes:
    """What the fronts plot: the throughput and cost measures of one sweep's synthesis mode."""

    throughput: str             # result-line key
    throughput_label: str
    cost: str                   # result-line key
    cost_label: str
    fmax: bool                  # a throughput-against-Fmax front too


def axes_for(synth: str) -> Axes:
    """The measures of a sweep whose ``synth`` is "off", "cells" or "route"."""
    if synth == "route":
        return Axes("gmacs", "dense-equivalent GMAC/s", "lut4", "LUT4 (Yosys synth_ecp5, design routed)", True)
    if synth == "cells":
        return Axes("macs_per_cycle", "dense-equivalent MACs per cycle", "lut4",
                    "LUT4 (Yosys synth_ecp5, not routed)", False)
    return Axes("macs_per_cycle", "dense-equivalent MACs per cycle", "multipliers",
                "multipliers (no synthesis: no LUT4 estimate)", False)


@dataclass(frozen=True)
class Fronts:
    """Per workload: the lines that have the measures, and the indices among them on each front."""

    axes: Axes
    lines: dict[str, list[dict[str, Any]]]
    cost_front: dict[str, list[int]]
    fmax_front: dict[str, list[int]]
    left_out: list[dict[str, Any]]           # evaluated lines without a measure (e.g. not routed)


def fronts(lines: Sequence[dict[str, Any]], synth: str, workloads: Sequence[str]) -> Fronts:
    """The fronts of the finished lines (``status == "ok"``) of a sweep, per workload."""
    axes = axes_for(synth)
    by_workload: dict[str, list[dict[str, Any]]] = {w: [] for w in workloads}
    left_out = []
    for line in lines:
        if line.get("status") != "ok":
            continue
        if line.get(axes.throughput) is None or line.get(axes.cost) is None:
            left_out.append(line)
            continue
        by_workload.setdefault(line["workload"], []).append(line)
    cost_front, fmax_front = {}, {}
    for workload, rows in by_workload.items():
        cost_front[workload] = pareto_front([(r[axes.throughput], r[axes.cost]) for r in rows], ("max", "min"))
        if axes.fmax:
            fmax_front[workload] = pareto_front([(r[axes.throughput], r["fmax_mhz"]) for r in rows], ("max", "max"))
    return Fronts(axes, by_workload, cost_front, fmax_front, left_out)


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render_table(f: Fronts, *, title: str, invalid: Sequence[dict[str, Any]] = ()) -> str:
    """Markdown: per workload, the points on a front (best throughput first), then the invalid points."""
    axes = f.axes
    out = [f"# {title}", "",
           f"Throughput: {axes.throughput_label}. Cost: {axes.cost_label}. "
           f"Front `cost`: not dominated on (throughput up, cost down)"
           + ("; `fmax`: on (throughput up, Fmax up)." if axes.fmax else "."), ""]
    for workload, rows in f.lines.items():
        on_cost, on_fmax = set(f.cost_front.get(workload, ())), set(f.fmax_front.get(workload, ()))
        chosen = sorted(on_cost | on_fmax, key=lambda i: (-rows[i][axes.throughput], rows[i][axes.cost]))
        out += [f"## {workload}: {len(chosen)} of {len(rows)} points on a front", "",
                "| front | point | cycles | MAC/cycle | GMAC/s | LUT4 | FF | DSP | BRAM | Fmax MHz | multipliers |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for i in chosen:
            r = rows[i]
            front = "+".join(name for name, on in (("cost", i in on_cost), ("fmax", i in on_fmax)) if on)
            out.append(f"| {front} | {r['label']} | {r['cycles']:,} | {r['macs_per_cycle']:.2f} | "
                       f"{_num(r.get('gmacs'), '.3f')} | {_num(r.get('lut4'), ',')} | {_num(r.get('ff'), ',')} | "
                       f"{_num(r.get('dsp'), 'd')} | {_num(r.get('bram'), 'd')} | {_num(r.get('fmax_mhz'), '.1f')} | "
                       f"{r['multipliers']} |")
        out.append("")
    if f.left_out:
        out += [f"Left out of the fronts (no {axes.throughput} or {axes.cost}, e.g. not routed): "
                + "; ".join(f"{r['label']} ({r['workload']})" for r in f.left_out), ""]
    if invalid:
        out += [f"## {len(invalid)} invalid points", ""]
        out += [f"- {r['label']} ({r['workload']}): {r['error']}" for r in invalid]
        out.append("")
    return "\n".join(out)


def plot_fronts(f: Fronts, path: Path, *, title: str) -> Path:
    """A PNG: throughput against cost (and against Fmax), every point, each workload's front joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = f.axes
    panels = [("cost", axes.cost, axes.cost_label, f.cost_front)]
    if axes.fmax:
        panels.append(("fmax", "fmax_mhz", "routed Fmax (MHz)", f.fmax_front))
    fig, plots = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, (_, key, label, front) in zip(plots[0], panels, strict=True):
        for n, (workload, rows) in enumerate(f.lines.items()):
            if not rows:
                continue
            color = f"C{n}"
            ax.scatter([r[key] for r in rows], [r[axes.throughput] for r in rows], s=14, alpha=0.35, color=color)
            best = sorted(front.get(workload, ()), key=lambda i: rows[i][key])
            ax.plot([rows[i][key] for i in best], [rows[i][axes.throughput] for i in best], marker="o",
                    color=color, label=f"{workload} ({len(best)} on front)")
        ax.set(xlabel=label, ylabel=axes.throughput_label)
        xs = [r[key] for rows in f.lines.values() for r in rows]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 30:  # e.g. 2 to 128 multipliers
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        if any(f.lines.values()):
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no point with these measures", ha="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
