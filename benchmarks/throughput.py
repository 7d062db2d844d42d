"""Dense-equivalent training throughput on LFE5U-85F: the measure of issue 17.

    python benchmarks/throughput.py [--no-rtl] [--out benchmarks/results/throughput.json]

For one training iteration of each algorithm (the demo's: digits CNN, batch 4, every conv and
linear layer, FWD/BWI/BWW), the throughput a user gets is the iteration's real MACs divided by
the time the core takes (cycles / routed Fmax), in GMAC/s. Rows (``core``):

- ``sparse``: the default sparse core (``hw.core.SparseCore``, 8 per-output lanes);
- ``dense_same``: its dense baseline with the same multipliers (``sparse = false``);
- ``dense_max``: the largest dense array the generator builds for the chip: the vector core with
  skipping off, 8 lanes x 16 = 128 MULT18X18D (the chip has 156; a ninth lane does not fit with
  the result path's multipliers, docs/design_study.md);
- ``vector_sparse``: the vector core with skipping on (docs/design_study.md), the core that is to
  replace ``sparse`` as the default.

Cycles: the vector cores run every pass on Verilator (cocotb, ``sim.tb_vector_core``; every
result beat checked against ``ref``) beside their exact cycle model, both printed; the present
cores use their cycle model (``ref.cycle_model``, exact against their RTL in
tests/hw/test_cycle_model_vs_rtl.py and measured in ``make bench``'s skip-efficiency run). Fmax
and resources: the routed reports in ``benchmarks/results/`` (``skip_efficiency_summary.json``
for the present cores, ``vector_core_<mode>.json`` for the vector cores, written by
``benchmarks/route_vector_core.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from amaranth.back import verilog  # noqa: E402

from hw.vector_core import VectorCore, VectorCoreParams  # noqa: E402
from ref.contract.trace_programs import trace_programs  # noqa: E402
from ref.cycle_model import predict_cycles  # noqa: E402
from ref.design_study.gemm import program_operands, reduction_length  # noqa: E402
from ref.policies.registry import ALGOS  # noqa: E402
from ref.vector_lowering import lower_for_vector_core  # noqa: E402
from sim.runner import build_sources, run_cocotb_top  # noqa: E402
from sim.vector_cases import VectorCase, write_vector_cases  # noqa: E402
from stag.workload import dense_equivalent_gmacs, iteration_trace, pass_dense_macs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: The present default core's geometry (configs/default.toml).
PRESENT = dict(lanes=8, tile_m=16, tile_n=16, tile_k=64, bus_elems=16, operand_bits=8)
#: The vector core measured here.
VECTOR = VectorCoreParams(lanes=8, vector=16, tile_m=64, tile_k=64, operand_bits=8, acc_bits=32, bus_elems=16)
KEYS = ("core", "algo", "dense_macs", "cycles", "fmax_mhz", "gmacs", "multipliers", "lut4", "ff", "dsp", "bram")


def _ppa(core: str) -> dict:
    """Routed resources and Fmax of ``core`` from the stored reports ({} when none is stored)."""
    if core in ("sparse", "dense_same"):
        path = RESULTS / "skip_efficiency_summary.json"
        if not path.exists():
            return {}
        ppa = json.loads(path.read_text(encoding="utf-8"))["ppa"]["sparse" if core == "sparse" else "dense"]
        return {**ppa, "multipliers": PRESENT["lanes"]}
    path = RESULTS / f"vector_core_{'dense' if core == 'dense_max' else 'sparse'}.json"
    if not path.exists():
        return {}
    return {**json.loads(path.read_text(encoding="utf-8")), "multipliers": VECTOR.lanes * VECTOR.vector}


def _measure(cases: list[VectorCase], params: VectorCoreParams, work: Path, label: str) -> dict[str, int]:
    """Cycles of every case on Verilator (from the first command to the last result beat)."""
    work.mkdir(parents=True, exist_ok=True)
    source = work / "vector_core.v"
    source.write_text(verilog.convert(VectorCore(params), name="vector_core", emit_src=False), encoding="utf-8")
    vectors = write_vector_cases(cases, params, work / "vectors.json")
    t0 = time.perf_counter()
    runner = build_sources([source], "vector_core", "verilator", work / "build")
    print(f"   {label}: Verilator build {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    run = run_cocotb_top(runner, "vector_core", test_module="sim.tb_vector_core", test_dir=work / "run", seed=1,
                         extra_env={"STAG_VECTORS": str(vectors)})
    cycles = {}
    for path in run.record_dir.glob("*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        cycles[path.stem] = record["result_cycles"][-1] + 1
    print(f"   {label}: {len(cases)} passes simulated and checked against ref in {time.perf_counter() - t0:.0f} s "
          f"({sum(cycles.values()):,} cycles)", flush=True)
    return cycles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-rtl", action="store_true", help="vector cores from the cycle model only")
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    args = parser.parse_args()
    started = time.perf_counter()
    print("== dense-equivalent throughput of one training iteration on LFE5U-85F")
    model: dict[tuple[str, str], int] = {}
    dense_macs: dict[str, int] = {}
    cases: dict[str, list[VectorCase]] = {"vector_sparse": [], "dense_max": []}
    with tempfile.TemporaryDirectory(prefix="stag_throughput_") as scratch:
        for algo in ALGOS:
            trace = iteration_trace(algo, scratch)
            passes = trace_programs(trace, tile_m=PRESENT["tile_m"], tile_n=PRESENT["tile_n"],
                                    tile_k=PRESENT["tile_k"], operand_bits=8, acc_bits=VECTOR.acc_bits)
            dense_macs[algo] = 0
            for p in passes:
                a, b, mask = program_operands(p.program, k=reduction_length(p))
                dense_macs[algo] += pass_dense_macs(p)
                for core, sparse in (("sparse", True), ("dense_same", False)):
                    model[core, algo] = model.get((core, algo), 0) + predict_cycles(
                        p.program, lanes=PRESENT["lanes"], tile_m=PRESENT["tile_m"], tile_n=PRESENT["tile_n"],
                        tile_k=PRESENT["tile_k"], bus_elems=PRESENT["bus_elems"], operand_bits=8,
                        sparse=sparse).total
                for core, sparse in (("vector_sparse", True), ("dense_max", False)):
                    lowered = lower_for_vector_core(a, b, out_mask=mask, lanes=VECTOR.lanes, vector=VECTOR.vector,
                                                    tile_m=VECTOR.tile_m, tile_k=VECTOR.tile_k,
                                                    bus_elems=VECTOR.bus_elems, operand_bits=8,
                                                    acc_bits=VECTOR.acc_bits, sparse=sparse)
                    model[core, algo] = model.get((core, algo), 0) + lowered.estimate.total
                    cases[core].append(VectorCase(f"{algo}__{p.layer}__{p.pass_}", lowered.program))
            print(f"   {algo}: {len(passes)} passes, {dense_macs[algo]:,} real MACs", flush=True)
        measured: dict[tuple[str, str], int] = {}
        if not args.no_rtl:
            for core, sparse in (("vector_sparse", True), ("dense_max", False)):
                params = VectorCoreParams(**{**VECTOR.__dict__, "sparse": sparse})
                per_case = _measure(cases[core], params, Path(scratch) / core, core)
                for algo in ALGOS:
                    measured[core, algo] = sum(c for name, c in per_case.items() if name.startswith(f"{algo}__"))

    rows = []
    print(f"\n   {'core':<14} {'algo':<17} {'cycles':>8} {'model':>8} {'MHz':>6} {'GMAC/s':>7} {'mult':>4} "
          f"{'peak/cyc':>8} {'LUT4':>6} {'GMAC/s/kLUT':>11}")
    for core in ("sparse", "dense_same", "dense_max", "vector_sparse"):
        ppa = _ppa(core)
        for algo in ALGOS:
            cycles = measured.get((core, algo), model[core, algo])
            fmax = ppa.get("fmax_mhz")
            gmacs = dense_equivalent_gmacs(dense_macs[algo], cycles, fmax) if fmax else None
            row = {"core": core, "algo": algo, "dense_macs": dense_macs[algo], "cycles": cycles,
                   "model_cycles": model[core, algo], "cycles_source": "verilator" if (core, algo) in measured
                   else "cycle model", "fmax_mhz": fmax, "gmacs": None if gmacs is None else round(gmacs, 3),
                   "multipliers": ppa.get("multipliers", VECTOR.lanes * VECTOR.vector if core in ("dense_max",
                                                                                                   "vector_sparse")
                                          else PRESENT["lanes"]),
                   "lut4": ppa.get("lut4"), "ff": ppa.get("ff"), "dsp": ppa.get("dsp"), "bram": ppa.get("bram"),
                   # Distributed RAM (TRELLIS_DPR16X4), beside the logic LUTs that lut4 counts.
                   "lutram": ppa.get("lutram", 0)}
            rows.append(row)
            per_klut = f"{gmacs / (row['lut4'] / 1e3):.3f}" if gmacs and row["lut4"] else "-"
            print(f"   {core:<14} {algo:<17} {cycles:>8,} {model[core, algo]:>8,} {fmax or 0:>6.1f} "
                  f"{gmacs or 0:>7.2f} {row['multipliers']:>4} {row['multipliers']:>8} {row['lut4'] or 0:>6} "
                  f"{per_klut:>11}")
    for algo in ALGOS:
        by = {r["core"]: r for r in rows if r["algo"] == algo}
        if by["dense_max"]["gmacs"] and by["vector_sparse"]["gmacs"]:
            ratio = by["vector_sparse"]["gmacs"] / by["dense_max"]["gmacs"]
            used = by["dense_max"]["dense_macs"] / by["dense_max"]["cycles"] / by["dense_max"]["multipliers"]
            print(f"   {algo:<17} vector_sparse / dense_max = {ratio:.2f}   dense_max uses {used:.0%} of its "
                  "multipliers")
    args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"   wrote {args.out} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
