"""Synthesize and route the vector core on LFE5U-85F (out of context) and store its report.

    python benchmarks/route_vector_core.py [--mode sparse|dense] [--unit core|lane] [--placer static|heap]
                                           [--freq MHZ] [--pnr-timeout MIN] [--seed N]
                                           [--lanes L]

The core of ``benchmarks/throughput.py`` (8 lanes x 16 MULT18X18D with their registers, tiles
64 x 16 x 64, 128-bit stream), ``sparse`` with skipping on or ``dense`` with it off, through
``stag.synth.synthesize_verilog`` (Yosys ``synth_ecp5``, nextpnr-ecp5 router2). Writes
``benchmarks/results/vector_core_<mode>.json`` (LUT4, CCU2C, FF, DSP, BRAM, routed Fmax, seconds,
the Yosys flow used) and prints nextpnr's critical path. Takes 30-40 minutes on one core.
``--unit lane`` routes one of its lanes alone (``hw.vector_lane.VectorLane`` at position 3 of the
eight on the chains) into ``benchmarks/results/vector_lane.json``, in a few minutes: the lane's own
clock, the bound the whole core can reach.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from amaranth.back import verilog  # noqa: E402

from hw.vector_core import VectorCore  # noqa: E402
from hw.vector_lane import VectorLane  # noqa: E402
from stag.synth import PLACERS, synthesize_verilog  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from throughput import VECTOR  # noqa: E402


def critical_path(log: Path) -> list[str]:
    """The last critical-path report of a nextpnr log: one line per step (delay, net or cell)."""
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    starts = [i for i, line in enumerate(text) if "Critical path report for clock" in line]
    if not starts:
        return []
    lines = []
    for line in text[starts[-1] + 2:]:
        if "ns logic" in line:
            lines.append(line.removeprefix("Info:").strip())
            break
        match = re.match(r"Info:\s+(clk-to-q|routing|logic|setup)\s+([\d.]+)\s+([\d.]+)\s+(.*)$", line)
        if match:
            lines.append(f"{match[1]:<8} {match[2]:>5} {match[3]:>6}  {match[4]}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("sparse", "dense"), default="sparse")
    parser.add_argument("--freq", type=float, default=150.0, help="nextpnr target in MHz (default 150)")
    parser.add_argument("--pnr-timeout", type=float, default=45.0, metavar="MIN")
    parser.add_argument("--lanes", type=int, default=None,
                        help="lanes of the core (default: the benchmark's); another count is written to "
                             "vector_core_MODE_<L>lanes.json, so the scaling study keeps each size")
    parser.add_argument("--seed", type=int, default=1,
                        help="nextpnr's placement seed (default 1): a router that diverges on one placement "
                             "may converge on another")
    parser.add_argument("--placer", choices=PLACERS, default="static",
                        help="nextpnr placer (default static); another placer's result is written to "
                             "vector_core_MODE_PLACER.json beside the default one")
    parser.add_argument("--unit", choices=("core", "lane"), default="core",
                        help="the whole core (default) or one of its lanes alone")
    args = parser.parse_args()
    params = dataclasses.replace(VECTOR, target="ecp5", sparse=args.mode == "sparse")
    if args.lanes is not None and args.lanes != params.lanes:
        params = dataclasses.replace(params, lanes=args.lanes)
    if args.unit == "lane":
        name, top, position = "vector_lane", "vector_lane", params.lanes // 2 - 1
        design = VectorLane(vector=params.vector, tile_k=params.tile_k, operand_bits=params.operand_bits,
                            acc_bits=params.acc_bits, rows=params.tile_m, target=params.target, position=position,
                            chain_lanes=params.lanes)
        what = (f"vector lane ({params.vector} MACs, tile_k {params.tile_k}, position {position} of "
                f"{params.lanes} on the chains)")
    else:
        name, top, design = f"vector_core_{args.mode}", "vector_core", VectorCore(params)
        what = (f"vector core ({args.mode}, {params.lanes} x {params.vector}, tiles {params.tile_m} x {params.vector} "
                f"x {params.tile_k})")
    name += "" if args.placer == "static" else f"_{args.placer}"
    name += "" if params.lanes == VECTOR.lanes else f"_{params.lanes}lanes"
    work = ROOT / "runs" / name
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"{top}.v"
    source.write_text(verilog.convert(design, name=top, emit_src=False), encoding="utf-8")
    print(f"== {what}: synthesis and place-and-route on LFE5U-85F ({args.placer} placer), up to "
          f"{args.pnr_timeout:.0f} min", flush=True)
    started = time.perf_counter()
    report = synthesize_verilog([source], top, work / "synth", frequency_mhz=args.freq,
                                pnr_timeout_s=60 * args.pnr_timeout, design_name=name, placer=args.placer,
                                seed=args.seed)
    result = {k: v for k, v in report.to_json().items() if k != "cells"}
    result["parameters"] = dataclasses.asdict(params)
    result["target_mhz"], result["seed"] = args.freq, args.seed
    result["critical_path"] = critical_path(work / "synth" / "nextpnr.log")
    out = ROOT / "benchmarks" / "results" / f"{name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"   LUT4 {report.lut4:,}  CCU2C {report.carry:,}  FF {report.ff:,}  DSP {report.dsp}  "
          f"BRAM {report.bram}  DPR16X4 {report.lutram}  Fmax {report.fmax_mhz} MHz "
          f"({time.perf_counter() - started:.0f} s, flow {report.flow})")
    for line in result["critical_path"]:
        print(f"   {line}")
    print(f"   wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
