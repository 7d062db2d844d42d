"""Design study of the compute core (docs/design_study.md): candidate cycle models on the real
training iteration of every algorithm and on random GEMMs, combined with the routed cost and clock
of one slice of each candidate (benchmarks/slices.py), into dense-equivalent throughput on
LFE5U-85F.

    python benchmarks/design_study.py [--seed N] [--out benchmarks/results/design_study.json]

Prints, per candidate and algorithm, the cycles of one training iteration (the demo's: digits CNN,
batch 4, every conv and linear layer, FWD/BWI/BWW) and the dense MACs per cycle; then the same on
random GEMMs at densities 10-90 %; then the projection onto the chip: multipliers that fit, routed
slice Fmax, GMAC/s dense-equivalent. The present core appears twice: in the study's shared model
and in its own exact cycle model (ref.cycle_model), which measures the shared model's optimism.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ref.contract.lowering import lower_gemm  # noqa: E402
from ref.contract.trace_programs import make_digits_trace, trace_programs  # noqa: E402
from ref.cycle_model import predict_cycles  # noqa: E402
from ref.design_study.candidates import DenseArray, MatchPEs, VectorLanes  # noqa: E402
from ref.design_study.gemm import GemmPattern, trace_pass_pattern  # noqa: E402
from ref.policies.registry import ALGOS  # noqa: E402
from ref.traces import load_trace  # noqa: E402
from ref.vector_cycle_model import predict_vector_cycles  # noqa: E402

SLICES = ROOT / "benchmarks" / "results" / "slices"
PRESENT = ROOT / "benchmarks" / "results" / "skip_efficiency_summary.json"
#: LFE5U-85F: LUT4 sites and MULT18X18D multipliers.
CHIP_LUT4, CHIP_DSP = 83_640, 156
#: The demo's replayed iteration: batch 4, first 12 training samples.
BATCH = 4
#: Default-core geometry the present core's programs are lowered with.
PRESENT_TILES = (16, 16, 64)


def candidates() -> list[tuple[str, str, object]]:
    """(label, slice name, candidate) for every configuration the study compares."""
    return [
        ("present 8 lanes (1 match)", "present", MatchPEs(pes=8, matches=1, group=8, name="present")),
        ("match 32 PEs x 4 (SparTen-like)", "match_pe", MatchPEs(pes=32, matches=4, group=16)),
        ("vector 8 lanes x 16", "vector_lane", VectorLanes(lanes=8, vector=16)),
        ("vector 8 x 16, tiles 256x16x128", "vector_lane", VectorLanes(lanes=8, vector=16, tile_m=256, max_k=128)),
        ("vector 8 x 16, tiles 64x16x64", "vector_lane", VectorLanes(lanes=8, vector=16, tile_m=64, max_k=64)),
        ("vector 8 x 16, tiles 256x16x128, 256b", "vector_lane",
         VectorLanes(lanes=8, vector=16, tile_m=256, max_k=128, bus_elems=32)),
        ("vector 4 lanes x 32", "vector_lane", VectorLanes(lanes=4, vector=32)),
        ("vector 16 lanes x 8", "vector_lane", VectorLanes(lanes=16, vector=8)),
        ("vector 8 lanes x 16, no transpose", "vector_lane", VectorLanes(lanes=8, vector=16, transpose=False)),
        ("vector 8 lanes x 16, 256-bit stream", "vector_lane", VectorLanes(lanes=8, vector=16, bus_elems=32)),
        ("dense array 16 x 8", "dense_array", DenseArray(rows=16, cols=8)),
        ("dense array 16 x 8, 256-bit stream", "dense_array", DenseArray(rows=16, cols=8, bus_elems=32)),
    ]


#: Vector cores run through their RTL-exact cycle model (ref.vector_cycle_model): (label, lanes,
#: vector, tile_m, tile_k, bus_elems, sparse). ``sparse=False`` is the same generator's dense array.
BUILT = [
    ("vector core 8x16, tiles 64x16x64 (RTL model)", 8, 16, 64, 64, 16, True),
    ("vector core 8x16, 256-bit stream (RTL model)", 8, 16, 64, 64, 32, True),
    ("its dense array, 8x16 (RTL model)", 8, 16, 64, 64, 16, False),
]


def built_core_cycles(g: GemmPattern, lanes: int, vector: int, tile_m: int, tile_k: int, bus_elems: int,
                      sparse: bool) -> int:
    """The built vector core's exact cycles for pass ``g``: lowered with A as the skipped operand
    (bitmap) and B dense, in the orientation that runs faster (the lowering's choice)."""
    best = None
    for view in (g, g.transposed()):
        program = lower_gemm(view.a.long(), view.b.long(), out_mask=view.mask, a_format="bitmap" if sparse else "dense",
                             b_format="dense", tiles=(tile_m, vector, tile_k), acc_bits=32)
        cycles = predict_vector_cycles(program, lanes=lanes, vector=vector, tile_m=tile_m, tile_k=tile_k,
                                       bus_elems=bus_elems, operand_bits=8, sparse=sparse).total
        best = cycles if best is None else min(best, cycles)
    assert best is not None
    return best


def trace_patterns(work: Path) -> tuple[dict[str, list[GemmPattern]], dict[str, int]]:
    """Each algorithm's iteration as whole-GEMM patterns, and the present core's exact cycles."""
    patterns: dict[str, list[GemmPattern]] = {}
    present: dict[str, int] = {}
    tm, tn, tk = PRESENT_TILES
    for algo in ALGOS:
        t0 = time.perf_counter()
        trace = load_trace(make_digits_trace(work / algo, algo=algo, batch_size=BATCH, train_subset=3 * BATCH))
        passes = trace_programs(trace, tile_m=tm, tile_n=tn, tile_k=tk, operand_bits=8, acc_bits=32)
        patterns[algo] = [trace_pass_pattern(p) for p in passes]
        present[algo] = sum(predict_cycles(p.program, lanes=8, tile_m=tm, tile_n=tn, tile_k=tk, bus_elems=16,
                                           operand_bits=8, sparse=True).total for p in passes)
        print(f"   trace {algo}: {len(passes)} passes ({time.perf_counter() - t0:.1f} s)", flush=True)
    return patterns, present


def random_patterns(seed: int) -> list[GemmPattern]:
    """Random GEMMs (M, N, K) = (256, 64, 256): A density x B density in {10, 30, 50, 70, 90} %."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for da in (0.1, 0.3, 0.5, 0.7, 0.9):
        for db in (0.1, 0.5, 0.9):
            a = torch.rand((256, 256), generator=gen) < da
            b = torch.rand((256, 64), generator=gen) < db
            out.append(GemmPattern(f"random a{da:.1f} b{db:.1f}", a, b))
    return out


def load_slices() -> dict[str, dict]:
    """Routed slice reports by slice name, plus the present core's measured PPA."""
    found: dict[str, dict] = {}
    for path in sorted(SLICES.glob("*.json")):
        found[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    if PRESENT.exists():
        ppa = json.loads(PRESENT.read_text(encoding="utf-8"))["ppa"]["sparse"]
        found["present"] = {**ppa, "multipliers": 8, "note": "whole default sparse core, routed"}
    return found


def lut_equivalent(report: dict) -> int:
    """LUT4 plus the two LUTs of each carry cell (CCU2C)."""
    return int(report.get("lut4", 0)) + 2 * int(report.get("carry", 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="seed of the random GEMMs (default 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "design_study.json")
    args = parser.parse_args()
    random.seed(args.seed)
    print(f"== design study (random GEMM seed {args.seed})")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stag_study_") as work:
        patterns, present_exact = trace_patterns(Path(work))
    randoms = random_patterns(args.seed)
    slices = load_slices()

    rows = []
    print("\n== one training iteration per algorithm: cycles (dense MACs per cycle); bound per pass "
          "c=compute l=load d=drain")
    dense_macs = {algo: sum(p.dense_macs for p in pats) for algo, pats in patterns.items()}
    effectual = {algo: sum(p.effectual_macs for p in pats) for algo, pats in patterns.items()}
    for algo in ALGOS:
        print(f"   {algo:<17} dense MACs {dense_macs[algo]:>9,}  effectual {effectual[algo] / dense_macs[algo]:.3f}  "
              f"present core, exact model: {present_exact[algo]:>7,} cycles")
    for label, slice_name, cand in candidates():
        per_algo = {}
        for algo in ALGOS:
            results = [cand.pass_cycles(p) for p in patterns[algo]]
            cycles = sum(r.cycles for r in results)
            per_algo[algo] = {
                "cycles": cycles, "dense_macs": dense_macs[algo], "effectual_macs": effectual[algo],
                "bounds": "".join(r.bound[0] for r in results),
                "transposed": sum(r.transposed for r in results),
                "ideal_cycles": effectual[algo] / cand.multipliers,
            }
        rand = []
        for g in randoms:
            r = cand.pass_cycles(g)
            rand.append({"name": g.name, "cycles": r.cycles, "dense_macs": g.dense_macs,
                         "effectual_macs": g.effectual_macs, "bound": r.bound})
        rows.append({"label": label, "slice": slice_name, "multipliers": cand.multipliers, "traces": per_algo,
                     "random": rand})
        cells = "  ".join(f"{algo[:6]} {v['cycles']:>6} ({v['dense_macs'] / v['cycles']:5.1f})"
                          for algo, v in per_algo.items())
        print(f"   {label:<38} {cand.multipliers:>3} mult  {cells}")

    for label, lanes, vec, tm, tk, be, sparse in BUILT:
        per_algo = {}
        for algo in ALGOS:
            cycles = sum(built_core_cycles(g, lanes, vec, tm, tk, be, sparse) for g in patterns[algo])
            per_algo[algo] = {"cycles": cycles, "dense_macs": dense_macs[algo], "effectual_macs": effectual[algo]}
        rows.append({"label": label, "slice": "vector_core", "multipliers": lanes * vec, "traces": per_algo,
                     "random": [], "tiles": [tm, vec, tk], "bus_elems": be, "sparse": sparse})
        cells = "  ".join(f"{algo[:6]} {v['cycles']:>6} ({v['dense_macs'] / v['cycles']:5.1f})"
                          for algo, v in per_algo.items())
        print(f"   {label:<38} {lanes * vec:>3} mult  {cells}", flush=True)

    print("\n== random GEMMs 256x64x256: dense MACs per cycle (fraction of the ideal effectual/multipliers)")
    print("   " + " " * 38 + "  ".join(f"{g.name[7:]:>13}" for g in randoms[::3]))
    for row in rows:
        if not row["random"]:
            continue
        mult = row["multipliers"]
        cells = "  ".join(f"{r['dense_macs'] / r['cycles']:6.1f} ({r['effectual_macs'] / mult / r['cycles']:.2f})"
                          for r in row["random"][::3])
        print(f"   {row['label']:<38}{cells}")

    print("\n== on LFE5U-85F: routed slice cost and clock -> dense-equivalent GMAC/s on the iteration")
    for row in rows:
        rep = slices.get(row["slice"])
        row["slice_report"] = rep
        if not rep or not rep.get("fmax_mhz"):
            print(f"   {row['label']:<38} no routed slice report ({row['slice']})")
            continue
        per_mult = lut_equivalent(rep) / max(1, int(rep.get("multipliers", 1)))
        row["lut_per_multiplier"] = round(per_mult, 1)
        row["fmax_mhz"] = rep["fmax_mhz"]
        gmacs = {algo: v["dense_macs"] / v["cycles"] * rep["fmax_mhz"] / 1e3 for algo, v in row["traces"].items()}
        row["gmacs"] = {a: round(g, 2) for a, g in gmacs.items()}
        cells = "  ".join(f"{algo[:6]} {g:6.2f}" for algo, g in gmacs.items())
        print(f"   {row['label']:<38} {per_mult:6.1f} LUT/mult {rep['fmax_mhz']:6.1f} MHz  {cells}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seed": args.seed, "batch": BATCH, "present_exact": present_exact,
                                    "chip": {"lut4": CHIP_LUT4, "dsp": CHIP_DSP}, "candidates": rows},
                                   indent=1) + "\n", encoding="utf-8")
    print(f"\n   wrote {args.out} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
