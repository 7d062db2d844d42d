"""``stag synth``: ECP5 resources and post-route Fmax of a generated design."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hw.generate import generate
from stag.commands.common import add_design_arguments, config_from_args
from stag.synth import synthesize_ecp5

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth", help="synthesize and place-and-route a design for ECP5",
        description="Yosys synth_ecp5 cell counts and nextpnr-ecp5 post-route Fmax (LFE5U-85F, "
                    "out of context). Writes <work>/<name>/synth/report.json.")
    add_design_arguments(parser)
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
    design = generate(config, args.out)
    work = Path(args.work) / config.name / "synth"
    print(f"synthesizing {design.verilog} for ECP5 (first run compiles Yosys: ~1.5 min) ...", flush=True)
    timeout = None if args.pnr_timeout is None else 60.0 * args.pnr_timeout
    report = synthesize_ecp5(design, work, place_and_route=not args.no_pnr, frequency_mhz=args.freq,
                             pnr_timeout_s=timeout)
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
