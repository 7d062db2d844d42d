"""``stag synth``: ECP5 resources and post-route Fmax of a generated design, or (``--generic``) its
technology-independent gate netlist with an area estimate and logic depth per module."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hw.generate import generate
from stag.commands.common import add_design_arguments, config_from_args
from stag.generic_synth import NAND2_UM2, synthesize_generic
from stag.synth import synthesize_ecp5

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth", help="synthesize and place-and-route a design for ECP5 (or --generic: for ASIC flows)",
        description="Yosys synth_ecp5 cell counts and nextpnr-ecp5 post-route Fmax (LFE5U-85F, "
                    "out of context); writes <work>/<name>/synth/report.json. With --generic: Yosys' "
                    "technology-independent synthesis (no vendor cell; Verilog with vendor primitives "
                    "is rejected), gates, memory bits, a NAND2-equivalent area estimate and the longest "
                    "logic path in gates for every module; writes <work>/<name>/generic/generic.json "
                    "and the gate-level netlist.v.")
    add_design_arguments(parser)
    parser.add_argument("--generic", action="store_true",
                        help="technology-independent synthesis for ASIC and other flows instead of ECP5")
    parser.add_argument("--unit", default=None, metavar="UNIT",
                        help="synthesize this generated unit (e.g. axi: the AXI top with its core) "
                             "instead of the core top")
    parser.add_argument("--no-pnr", action="store_true", help="cell counts only, skip place and route")
    parser.add_argument("--freq", type=float, default=100.0, metavar="MHZ",
                        help="target clock for nextpnr (default: 100); the achieved Fmax is reported either way")
    parser.add_argument("--pnr-timeout", type=float, default=None, metavar="MIN",
                        help="stop place-and-route after MIN minutes and report the design as not routed "
                             "(default: no limit)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.freq <= 0:
        raise ValueError(f"--freq must be a positive frequency in MHz, got {args.freq}")
    if args.pnr_timeout is not None and args.pnr_timeout <= 0:
        raise ValueError(f"--pnr-timeout must be a positive number of minutes, got {args.pnr_timeout}")
    config = config_from_args(args)
    if args.unit is not None and args.unit not in config.units:
        raise ValueError(f"--unit must be one of the configuration's units ({', '.join(config.units) or 'none'}), "
                         f"got {args.unit!r}")
    design = generate(config, args.out)
    if args.generic:
        return _run_generic(args, design)
    work = Path(args.work) / config.name / "synth"
    print(f"synthesizing {design.verilog} for ECP5 (first run compiles Yosys: ~1.5 min) ...", flush=True)
    timeout = None if args.pnr_timeout is None else 60.0 * args.pnr_timeout
    report = synthesize_ecp5(design, work, place_and_route=not args.no_pnr, frequency_mhz=args.freq,
                             pnr_timeout_s=timeout, unit=args.unit)
    (work / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    print(f"{'design':<10} {report.design}  on {report.device}")
    print(f"{'LUT4':<10} {report.lut4}  (+ {report.carry} CCU2C carry cells, 2 LUTs each)")
    print(f"{'FF':<10} {report.ff}")
    print(f"{'DSP':<10} {report.dsp}  MULT18X18D")
    print(f"{'BRAM':<10} {report.bram}  DP16KD")
    if report.fmax_mhz is not None:
        print(f"{'Fmax':<10} {report.fmax_mhz:.1f} MHz after routing (nextpnr, {report.pnr_seconds:.0f} s)")
    elif report.routed is False:
        print(f"{'Fmax':<10} none: not routed within {args.pnr_timeout:g} min (nextpnr's last router line: "
              f"{report.pnr_note or 'none'})")
    print(f"report     {work / 'report.json'}")
    return 0


def _run_generic(args: argparse.Namespace, design) -> int:
    config = design.config
    top = config.module_name(args.unit)
    work = Path(args.work) / config.name / ("generic" if args.unit is None else f"generic_{args.unit}")
    print(f"generic synthesis of {top} (Yosys synth, no vendor cells) ...", flush=True)
    report = synthesize_generic(design.sources_of(args.unit), top, work)
    width = max(len(m.name) for m in report.modules)
    print(f"{'module':<{width}}  {'gates':>8}  {'flip-flops':>10}  {'memory bits':>11}  {'area (GE)':>10}  "
          f"{'depth':>5}")
    for module in sorted(report.modules, key=lambda m: m.name):
        flops = sum(n for kind, n in module.cells.items() if "DFF" in kind or "DLATCH" in kind)
        depth = "-" if module.depth is None else str(module.depth)
        print(f"{module.name:<{width}}  {module.gates:>8,}  {flops:>10,}  {module.memory_bits:>11,}  "
              f"{module.area_ge:>10,.0f}  {depth:>5}")
    total_gates = sum(report.total_cells.values())
    total_flops = sum(n for kind, n in report.total_cells.items() if "DFF" in kind or "DLATCH" in kind)
    print(f"{'total':<{width}}  {total_gates:>8,}  {total_flops:>10,}  {report.total_memory_bits:>11,}  "
          f"{report.total_area_ge:>10,.0f}  {report.depth:>5}")
    print(f"area       {report.total_area_ge:,.0f} NAND2 equivalents, about {report.area_um2_45nm / 1e6:.3f} mm^2 of "
          f"logic in a 45 nm library (NAND2 = {NAND2_UM2} um^2; memories as flip-flops, before placement)")
    print("depth      the longest combinational path inside each module, in gates (Yosys ltp -noff)")
    print(f"report     {work / 'generic.json'}")
    print(f"netlist    {work / 'netlist.v'}")
    return 0
