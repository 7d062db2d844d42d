"""The report's HTML page: one self-contained file (inline CSS, plots as base64 PNG, no script, no
external resource), one section per question, each saying which command to run when its inputs
are missing from the run directory."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

from stag.report import plots
from stag.report.cycles import STEPS, model_fit, waterfall
from stag.report.inputs import RunInputs
from stag.report.ppa import METRICS, Baselines, Cell, ppa_rows, throughput_rows

__all__ = ["SECTIONS", "render_page"]

#: The page's sections: (HTML id, heading).
SECTIONS = (
    ("speedup", "Speedup against ideal, per layer and per pass"),
    ("waterfall", "Where the cycles go: waterfall of lost cycles"),
    ("model", "Cycle model against the RTL"),
    ("accuracy", "Training accuracy"),
    ("ppa", "PPA and throughput against the stored baselines"),
)

_NO_COMPARE = ("no <code>stag compare</code> or <code>stag demo</code> output found in RUN_DIR "
               "(<code>compare.json</code> or <code>&lt;algo&gt;.compare.json</code>): run "
               "<code>stag demo --results RUN_DIR</code>, or <code>stag compare --algo NAME --train "
               "--out RUN_DIR/NAME</code> per algorithm")

_WATERFALL_NOTE = (
    '<p class="note">The measured cycles of each replayed iteration, split by the cycle model\'s breakdown '
    "(<code>model_breakdown</code> in the rows): useful MACs (effectual MACs / lanes), then each cost on top, then "
    "the RTL's difference from the model. The dashed line is the ideal: the dense cycles divided by the ideal "
    "speedup; what lies above it is lost.</p>")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1180px;
       color: #1a1a1a; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #d0d7de; padding-bottom: 4px;
margin-top: 1.8em; } h3 { font-size: 1.05em; margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 0.86em; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; }
th { background: #f3f5f7; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #e4e7ea; }
.missing { background: #fff4e5; border-left: 4px solid #f0a020; padding: 8px 12px; }
.note { color: #555; font-size: 0.9em; }
.better { color: #1a7f37; } .worse { color: #cf222e; } .bad { color: #cf222e; font-weight: bold; }
code { background: #f3f5f7; padding: 0 3px; } .v { font-weight: 600; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _text(text: object) -> str:
    """Plain text as HTML, with `quoted` commands and files set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _num(value: float | None, spec: str = ",") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and spec == ",":
        spec = ",.2f" if abs(value) < 1000 else ",.0f"
    return format(value, spec)


def _error(model: float, measured: float) -> float:
    return abs(model - measured) / measured if measured else 0.0


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """A table of already-escaped cells; the first ``left`` columns are left-aligned."""
    th = "".join(f'<th{" class=l" if i < left else ""}>{h}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=l" if i < left else ""}>{c}</td>' for i, c in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _img(png: str, alt: str) -> str:
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{png}"></p>'


def _missing(text: str) -> str:
    return f'<p class="missing">{text}</p>'


def _delta(cell: Cell) -> str:
    if cell.delta is None:
        return "-"
    pct = "" if cell.delta_pct is None else f" ({cell.delta_pct:+.1f}%)"
    css = {True: "better", False: "worse", None: ""}[cell.better]
    spec = "+,.2f" if isinstance(cell.delta, float) and not cell.delta.is_integer() else "+,.0f"
    return f'<span class="{css}">{format(cell.delta, spec)}{pct}</span>'


# ---- sections -------------------------------------------------------------------------------------

def _speedup(inputs: RunInputs) -> str:
    runs = inputs.compares
    if not runs:
        return _missing(_NO_COMPARE)
    rows = []
    for run in runs:
        t = run.total()
        by_pass = [run.total(p) for p in plots.PASSES]
        rows.append([_e(run.label), _e(run.design or "-"), str(t["passes"]),
                     "yes" if t["match"] else '<span class="bad">NO</span>', _num(t["dense_cycles"]),
                     _num(t["sparse_cycles"]), _num(t["speedup"], ".2f"), _num(t["ideal_speedup"], ".2f"),
                     _num(t["fraction_of_ideal"], ".2f"),
                     *(f"{_num(b['speedup'], '.2f')} / {_num(b['ideal_speedup'], '.2f')}" for b in by_pass)])
    table = _table(["run", "design", "passes", "match", "dense cycles", "sparse cycles", "speedup", "ideal",
                    "fraction", *(f"{p.upper()} speedup / ideal" for p in plots.PASSES)], rows, left=2)
    details = []
    for run in runs:
        detail = _table(["layer", "pass", "match", "dense MACs", "effectual MACs", "dense cycles", "sparse cycles",
                         "speedup", "ideal", "fraction"],
                        ([_e(r["layer"]), _e(r["pass"]), "yes" if r["match"] and r["counters_match"]
                          else '<span class="bad">NO</span>', _num(r["dense_macs"]), _num(r["effectual_macs"]),
                          _num(r["dense_cycles"]), _num(r["sparse_cycles"]), _num(r.get("speedup"), ".2f"),
                          _num(r.get("ideal_speedup"), ".2f"), _num(r.get("fraction_of_ideal"), ".2f")]
                         for r in run.rows), left=2)
        details.append(f"<details><summary>{_e(run.label)}: every layer pass "
                       f"({_e(inputs.relative(run.path))})</summary>{detail}</details>")
    return (f'<p class="note">Measured speedup = dense RTL cycles / sparse RTL cycles of the same programs; ideal '
            f"= dense MACs / effectual MACs; fraction = measured / ideal.</p>{table}"
            + _img(plots.speedup_per_layer(runs), "speedup per layer pass")
            + _img(plots.speedup_per_pass(runs), "speedup per pass") + "".join(details))


def _waterfall(inputs: RunInputs) -> str:
    if not inputs.compares:
        return _missing(_NO_COMPARE)
    falls = [waterfall(run) for run in inputs.compares]
    parts = [_WATERFALL_NOTE]
    old = [inputs.relative(run.path) for run in inputs.compares if not run.has_breakdown]
    if old:
        parts.append(_missing(f"{_e(', '.join(old))}: rows without the cycle model's breakdown (written before "
                              "<code>stag report</code> existed), so only ideal, model and measured are shown for "
                              "them: rerun <code>stag demo</code> / <code>stag compare</code> for the breakdown"))
    parts.append(_img(plots.waterfalls(falls), "waterfall of lost cycles"))
    broken = [f for f in falls if f.broken_down]
    if broken:
        head = ["run", "ideal", "measured", "beyond ideal", *(_e(label) for _, label in STEPS)]
        parts.append(_table(head, ([_e(f.label), _num(f.ideal, ",.0f"), _num(f.measured), _num(f.lost, ",.0f"),
                                    *(f"{_num(c, ',.0f')} ({100 * c / f.measured:.1f}%)" if f.measured
                                      else _num(c, ",.0f") for _, c in f.steps)] for f in broken)))
    bench = inputs.bench.get("skip_efficiency_summary.json")
    if bench is not None and isinstance(bench.data.get("mean_waterfall"), dict):
        fall = bench.data["mean_waterfall"]
        parts.append(f"<h3>make bench: mean loss waterfall of its programs ({_e(inputs.relative(bench.path))})</h3>"
                     + _table([_e(k) for k in fall], [[f"{100 * v:.1f}%" for v in fall.values()]], left=0))
    return "".join(parts)


def _model(inputs: RunInputs) -> str:
    bench = inputs.bench.get("skip_efficiency.json")
    bench_rows = list(bench.data) if bench is not None else []
    if not inputs.compares and not bench_rows:
        return _missing(_NO_COMPARE + "; or <code>python benchmarks/skip_efficiency.py --out "
                        "RUN_DIR/skip_efficiency.json</code> (<code>make bench</code>)")
    fits = [model_fit(run) for run in inputs.compares]
    rows = [[_e(f.label), str(f.passes), _num(f.model), _num(f.measured), f"{100 * f.error:.3f}%",
             f"{100 * f.worst_error:.3f}% ({_e(f.worst_pass)})"] for f in fits]
    if bench_rows:
        worst = max(bench_rows, key=lambda r: _error(r["model_cycles"], r["sparse_cycles"]))
        model, measured = sum(r["model_cycles"] for r in bench_rows), sum(r["sparse_cycles"] for r in bench_rows)
        worst_error = _error(worst["model_cycles"], worst["sparse_cycles"])
        rows.append([f"make bench ({_e(inputs.relative(bench.path))})", str(len(bench_rows)), _num(model),
                     _num(measured), f"{100 * _error(model, measured):.3f}%",
                     f"{100 * worst_error:.3f}% ({_e(worst.get('name', '?'))})"])
    table = _table(["run", "passes", "model cycles", "RTL cycles", "error of the sums", "worst pass"], rows)
    return ('<p class="note">The analytical cycle model (<code>ref.cycle_model.predict_cycles</code>) against the '
            "sparse RTL's measured cycles, from the first command's handshake to the last result beat.</p>"
            + table + _img(plots.model_vs_rtl(inputs.compares, bench_rows), "cycle model against the RTL"))


def _accuracy(inputs: RunInputs) -> str:
    runs = [t for t in inputs.trainings if t.history]
    if not runs:
        return _missing("no training metrics found in RUN_DIR (<code>metrics.json</code> or "
                        "<code>&lt;algo&gt;.metrics.json</code>): run <code>stag demo --results RUN_DIR</code> (it "
                        "keeps each algorithm's short training run) or <code>stag train --compare-all --out "
                        "RUN_DIR/train</code>")
    rows = [[_e(t.label), _e(t.metrics.get("variant", "-")), str(len(t.history)), _num(t.metrics.get("train_samples")),
             _num(t.metrics.get("batch_size")), _num(t.history[-1]["train_accuracy"], ".3f"),
             _num(t.metrics.get("test_accuracy", t.history[-1]["test_accuracy"]), ".3f"),
             _num(t.metrics.get("achieved_sparsity"), ".3f"), _e(inputs.relative(t.path))] for t in runs]
    parts = [_table(["run", "variant", "epochs", "train samples", "batch", "final train acc.", "test acc.",
                     "achieved sparsity", "file"], rows)]
    if all(len(t.history) == 1 for t in runs):
        parts.append('<p class="note">Every run here has one epoch: <code>stag demo</code> trains only long enough '
                     "to capture an iteration. For curves over a real training run: <code>stag train --compare-all "
                     "--out RUN_DIR/train</code>.</p>")
    parts.append(_img(plots.accuracy(runs), "accuracy per epoch"))
    return "".join(parts)


def _ppa(inputs: RunInputs, baselines: Baselines) -> str:
    parts = [(f'<p class="note">Baselines: {_e(baselines.directory)} ({len(baselines.ppa)} designs, '
              f"{len(baselines.throughput)} throughput rows). Deltas are this run minus the baseline.</p>")]
    parts += [_missing(_text(p)) for p in baselines.problems]
    rows = ppa_rows(inputs, baselines)
    if rows:
        head = ["design", "source", "baseline", *(h for _, h, _ in METRICS)]
        body = []
        for row in rows:
            cells = []
            for key, cell in row.cells.items():
                value = ("not routed" if key == "fmax_mhz" and cell.value is None and row.routed is False
                         else _num(cell.value))
                cells.append(f'<span class="v">{value}</span><br><span class="note">base {_num(cell.baseline)}</span>'
                             f"<br>{_delta(cell)}")
            body.append([_e(row.design), _e(row.source), _e(row.baseline_source or "none stored"), *cells])
        parts.append('<h3>ECP5 resources and Fmax (LFE5U-85F, out of context)</h3><p class="note">Each cell: this '
                     "run, the stored baseline, the difference (green: better, red: worse).</p>"
                     + _table(head, body, left=3))
    else:
        parts.append(_missing("no <code>stag synth</code> report found in RUN_DIR "
                              "(<code>&lt;name&gt;/synth/report.json</code>): run <code>stag synth --preset default "
                              "--work RUN_DIR</code> (and <code>stag synth --config configs/default_dense.toml --work "
                              "RUN_DIR</code> for the dense baseline)"))
    throughput, notes = throughput_rows(inputs, baselines)
    if throughput:
        body = [[_e(t.core), _e(t.algo), _num(t.real_macs), _num(t.cycles), _num(t.fmax_mhz), _num(t.gmacs.value),
                 _num(t.gmacs.baseline), _delta(t.gmacs), _e(t.note), _e(t.source)] for t in throughput]
        parts.append("<h3>Dense-equivalent throughput: real MACs (M x K x N) / (cycles / Fmax)</h3>"
                     + _table(["core", "algo", "real MACs", "cycles", "Fmax MHz", "GMAC/s", "baseline GMAC/s",
                               "&Delta; GMAC/s", "note", "source"], body, left=2))
    elif not notes:
        parts.append(_missing("no throughput: it needs a replayed iteration (<code>stag demo --results RUN_DIR</code>) "
                              "and a <code>stag synth</code> report of its design in RUN_DIR, or "
                              "<code>python benchmarks/throughput.py --out RUN_DIR/throughput.json</code>"))
    parts += [_missing(_text(n)) for n in notes]
    return "".join(parts)


def render_page(inputs: RunInputs, baselines: Baselines) -> str:
    """The whole page for ``inputs``, its PPA compared with ``baselines``."""
    bodies = {"speedup": _speedup(inputs), "waterfall": _waterfall(inputs), "model": _model(inputs),
              "accuracy": _accuracy(inputs), "ppa": _ppa(inputs, baselines)}
    files = _table(["file", "written by"], ([_e(p), _e(w)] for p, w in inputs.files()), left=2)
    skipped = "".join(_missing(f"skipped {_text(s)}") for s in inputs.skipped)
    toc = "".join(f'<li><a href="#{sid}">{_e(title)}</a></li>' for sid, title in SECTIONS)
    sections = "".join(f'<section id="{sid}"><h2>{i}. {_e(title)}</h2>{bodies[sid]}</section>'
                       for i, (sid, title) in enumerate(SECTIONS, start=1))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>STAG report: {_e(inputs.run_dir)}</title><style>{_CSS}</style></head><body>"
            f"<h1>STAG run report</h1><p>RUN_DIR <code>{_e(inputs.run_dir.resolve())}</code></p>"
            f'<section id="inputs"><h2>Inputs read</h2>{files}{skipped}</section><ol>{toc}</ol>{sections}'
            "</body></html>\n")
