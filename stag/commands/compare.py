"""``stag compare``: replay the layers of a training iteration on the generated RTL and compare every
value with the golden model.

Examples::

    stag compare --algo relu_mask --train --preset tiny --sim both --out runs/compare/relu_mask
    stag train --algo swat --trace 40 --out runs/swat && stag compare --trace runs/swat/trace
    stag compare --algo resprop --train --layers conv2,fc --max-tiles 4 --dense-cycles model

For each chosen layer and pass (FWD, BWI, BWW) the lowered program runs on the design's AXI top
level (``stag_<name>_axi``) through cocotbext-axi; every result beat is compared with
``ref.contract.evaluate``, which is itself checked against torch's pass on the integer codes.
Writes ``<out>/compare.json`` (one row per layer pass) and prints the same table. On a mismatch
the first wrong element is located (layer, pass, command, tile, lane, cycle) and a short FST
waveform around it is written to ``<out>/mismatch_<layer>_<pass>.fst`` (rerun on Icarus). The exit
status is 1 when any value differs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from ref.contract.lowering import PASSES
from ref.policies.registry import ALGOS
from sim.runner import SIMULATORS
from stag.commands.common import add_design_arguments, config_from_args

__all__ = ["add_parser", "add_report_fields", "format_table", "run"]

#: Batch size of the iteration ``--train`` captures (the digits CNN's training default is 32).
DEFAULT_TRAIN_BATCH = 8


def _name_list(text: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    return items


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="replay training layers on the RTL and compare with the golden model",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_design_arguments(parser, out_flag="--rtl")
    parser.add_argument("--algo", choices=ALGOS, default=None,
                        help="training algorithm (with --train; with --trace it must match the trace's)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--trace", type=Path, metavar="DIR",
                        help="a trace directory written by `stag train --trace` (its manifest.json)")
    source.add_argument("--train", action="store_true",
                        help="train the digits CNN briefly under --algo and replay one iteration (default)")
    parser.add_argument("--iteration", type=int, default=0, metavar="I",
                        help="which captured iteration of --trace to replay (index, default 0)")
    parser.add_argument("--batch", type=_positive, default=DEFAULT_TRAIN_BATCH, metavar="N",
                        help=f"--train: batch size of the replayed iteration (default {DEFAULT_TRAIN_BATCH})")
    parser.add_argument("--seed", type=int, default=0, help="--train: training seed (default 0)")
    parser.add_argument("--layers", type=_name_list, default=None, metavar="NAME,...",
                        help="layers to replay (default: all, e.g. conv1,conv2,conv3,fc)")
    parser.add_argument("--passes", type=_name_list, default=list(PASSES), metavar="PASS,...",
                        help="passes to replay: fwd, bwi, bww (default: all three)")
    parser.add_argument("--max-tiles", type=_positive, default=None, metavar="N",
                        help="replay only the first N output tiles of each pass (default: all)")
    parser.add_argument("--sim", choices=(*SIMULATORS, "both"), default="verilator",
                        help="simulator(s); with both they must agree record for record (default: verilator)")
    parser.add_argument("--dense-cycles", choices=("rtl", "model"), default="rtl",
                        help="dense baseline cycles: measured on the dense design generated from the same "
                             "configuration, or predicted by the cycle model (default: rtl)")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), metavar="DIR",
                        help="where compare.json and any mismatch waveform go (default: runs/compare)")
    parser.set_defaults(run=run)


def _check_args(args: argparse.Namespace) -> None:
    if args.trace is None and args.algo is None:
        raise ValueError("--algo is required with --train (one of: " + ", ".join(ALGOS) + ")")
    unknown = [p for p in args.passes if p not in PASSES]
    if unknown:
        raise ValueError(f"--passes must name passes from {', '.join(PASSES)}, got unknown {unknown}")
    if args.iteration < 0:
        raise ValueError(f"--iteration must be >= 0, got {args.iteration}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[dict]) -> str:
    """The comparison table, one line per layer pass, plus a total line."""
    head = (f"{'layer':<8} {'pass':<4} {'match':<5} {'dense MACs':>11} {'eff. MACs':>10} {'dense cyc':>10} "
            f"{'sparse cyc':>10} {'model cyc':>10} {'speedup':>8} {'ideal':>7} {'frac':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['layer']:<8} {r['pass']:<4} {'yes' if r['match'] else 'NO':<5} {r['dense_macs']:>11} "
                     f"{r['effectual_macs']:>10} {r['dense_cycles']:>10} {r['sparse_cycles']:>10} "
                     f"{r['model_cycles']:>10} {_fmt(r['speedup'], '8.2f')} {_fmt(r['ideal_speedup'], '7.2f')} "
                     f"{_fmt(r['fraction_of_ideal'], '6.2f')}")
    from sim.compare import total_row

    t = total_row(rows)
    lines.append("-" * len(head))
    lines.append(f"{'total':<8} {'':<4} {'yes' if t['match'] else 'NO':<5} {t['dense_macs']:>11} "
                 f"{t['effectual_macs']:>10} {t['dense_cycles']:>10} {t['sparse_cycles']:>10} "
                 f"{t['model_cycles']:>10} {_fmt(t['speedup'], '8.2f')} {_fmt(t['ideal_speedup'], '7.2f')} "
                 f"{_fmt(t['fraction_of_ideal'], '6.2f')}")
    return "\n".join(lines)


def add_report_fields(rows: list[dict], jobs) -> None:
    """Add to each ``compare.json`` row (``sim.compare.compare_rows``, in job order) what ``stag report``
    draws beside the measurements:

    - ``model_breakdown``: the cycle model's cycles per ``ref.cycle_model.CATEGORIES`` (load not
      hidden, fill, compute, pipeline drain, drain beats; they sum to ``model_cycles``);
    - ``model_lane_imbalance``: the compute cycles not spent issuing a MAC on every lane;
    - ``real_macs``: M x K x N of the pass's GEMM (``dense_macs`` counts whole tiles, padding
      included), the MACs dense-equivalent throughput is counted in (``benchmarks/throughput.py``).
    """
    from ref.design_study.gemm import reduction_length

    for row, job in zip(rows, jobs, strict=True):
        shape = job.program.output_shape
        row["model_breakdown"] = dict(job.estimate.categories)
        row["model_lane_imbalance"] = job.estimate.lane_imbalance
        row["real_macs"] = None if shape is None else shape[0] * reduction_length(job.trace_pass) * shape[1]


def _load_passes(args, config, scratch: Path, progress):
    from ref.contract.trace_programs import make_digits_trace, trace_programs
    from ref.traces import load_trace
    from sim.core_program import acc_buffers

    if args.trace is not None:
        trace = load_trace(args.trace)
        if args.algo is not None and args.algo != trace.algo:
            raise ValueError(f"--algo {args.algo} differs from the trace's algorithm {trace.algo!r} ({args.trace})")
    else:
        started = time.perf_counter()
        progress(f"training the digits CNN under {args.algo} (batch {args.batch}, seed {args.seed}) to capture "
                 "one iteration ...")
        trace = load_trace(make_digits_trace(scratch / "train", algo=args.algo, seed=args.seed,
                                             batch_size=args.batch, train_subset=3 * args.batch))
        progress(f"captured iteration {trace.records[0].iteration} in {time.perf_counter() - started:.1f} s")
    if args.iteration >= len(trace.records):
        raise ValueError(f"--iteration must be in [0, {len(trace.records)}) (the trace's captured iterations), "
                         f"got {args.iteration}")
    return trace, trace_programs(trace, iteration_index=args.iteration, tile_m=config.tile_m, tile_n=config.tile_n,
                                 tile_k=config.tile_k, operand_bits=config.operand_bits, acc_bits=config.acc_bits,
                                 passes=args.passes, layers=args.layers, max_gemms=args.max_tiles,
                                 acc_buffers=acc_buffers(config))


def run(args: argparse.Namespace) -> int:
    from sim.compare import generate_pair, make_jobs, replay_and_compare, write_mismatch_wave

    _check_args(args)
    config = config_from_args(args)
    started = time.perf_counter()

    def progress(line: str) -> None:
        print(f"   {line}", flush=True)

    work = Path(args.work) / "compare" / config.name
    scratch = Path(tempfile.mkdtemp(prefix="stag_compare_"))
    try:
        trace, passes = _load_passes(args, config, scratch, progress)
        if not passes:
            raise ValueError("nothing to replay: the chosen layers and passes select no layer pass of the trace")
        print(f"== {trace.algo}: {len(passes)} layer passes on {config.top_name} "
              f"({', '.join(f'{p.layer}.{p.pass_}' for p in passes)})")
        jobs = make_jobs(passes, config)
        print(f"   ref: contract evaluation equals torch's pass on the integer codes for all {len(jobs)} passes")
        design, dense = generate_pair(config, args.rtl, dense_rtl=args.dense_cycles == "rtl")
        sims = SIMULATORS if args.sim == "both" else (args.sim,)
        rows, mismatches = replay_and_compare(jobs, config, design, dense, sims, work, progress=progress)
        add_report_fields(rows, jobs)
        for row in rows:
            row.update(algo=trace.algo, iteration=trace.records[args.iteration].iteration, design=config.name,
                       sims=list(sims))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "compare.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        print(f"== {trace.algo} on {config.top_name} ({', '.join(sims)}; dense cycles: "
              f"{'dense RTL' if dense is not None or not config.sparse else 'cycle model'})")
        print(format_table(rows))
        bad_counters = [f"{r['layer']}.{r['pass']}" for r in rows if not r["counters_match"]]
        if bad_counters:
            print(f"   MAC counters differ from ref's counts in: {', '.join(bad_counters)}")
        for mismatch in mismatches:
            print(f"MISMATCH {mismatch.describe()}")
        if mismatches:
            first = mismatches[0]
            job = next(j for j in jobs if j.trace_pass.layer == first.layer and j.trace_pass.pass_ == first.pass_)
            fst = args.out / f"mismatch_{first.layer}_{first.pass_}.fst"
            wave = write_mismatch_wave(design, job, first, work / "wave", fst)
            print(f"   waveform of cycles {wave.first}..{wave.last} (Icarus rerun, mismatch "
                  f"{'reproduced' if wave.reproduced else 'NOT reproduced'}): {wave.path}")
            print("   what the RTL's lanes computed for that element:")
            for line in wave.describe(first).splitlines():
                print(f"     {line}")
        print(f"   wrote {args.out / 'compare.json'} in {time.perf_counter() - started:.1f} s")
        return 1 if mismatches or bad_counters else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
