"""``stag demo``: the main job on the default configuration.

1. Generate the design (the sparse core, its units and the AXI top) and its dense baseline.
2. Lint the generated Verilog (``verilator --lint-only -Wall``).
3. Train the digits CNN briefly with the golden model under dense and each of the five
   sparse-training algorithms, capturing one training iteration of each.
4. Replay every conv and linear layer of each iteration (FWD, BWI, BWW) on the generated RTL
   through the AXI top (Verilator), compare every value with ``ref``, and measure the cycles
   against the dense baseline RTL running the same programs.
5. Print the table: per algorithm, whether every value matched, the measured speedup, the ideal
   speedup (dense MACs / effectual MACs), the fraction of ideal and the cycle model's error.

``--regression`` also runs the design's whole cocotb regression on Icarus and Verilator first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from ref.policies.registry import ALGOS
from sim.lint import lint
from sim.runner import SIMULATORS, CosimFailure
from stag.commands.common import add_design_arguments, config_from_args
from stag.commands.sim import seed_list
from stag.verify import verify_design

__all__ = ["add_parser", "run"]

#: Batch size of each replayed training iteration (keeps the demo to a few minutes on 2 cores).
DEMO_BATCH = 4


def _algo_list(text: str) -> list[str]:
    algos = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in algos if a not in ALGOS]
    if not algos or unknown:
        raise argparse.ArgumentTypeError(f"--algos must list algorithms from {', '.join(ALGOS)}, got {text!r}")
    return algos


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="generate the default design and replay training layers on it",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_design_arguments(parser)
    parser.add_argument("--algos", type=_algo_list, default=list(ALGOS), metavar="NAME,...",
                        help=f"algorithms to train and replay (default: {','.join(ALGOS)})")
    parser.add_argument("--batch", type=int, default=DEMO_BATCH, metavar="N",
                        help=f"batch size of each replayed iteration (default {DEMO_BATCH})")
    parser.add_argument("--regression", action="store_true",
                        help="also run the design's cocotb regression on Icarus and Verilator")
    parser.add_argument("--seeds", type=seed_list, default=[1, 2], metavar="N,N,...",
                        help="--regression: random seeds (default: 1,2)")
    parser.add_argument("--results", type=Path, default=Path("runs/demo"), metavar="DIR",
                        help="where each algorithm's compare.json and the summary go (default: runs/demo)")
    parser.set_defaults(run=run)


def _print_summary(summary: list[dict]) -> None:
    head = (f"   {'algorithm':<17} {'passes':>6} {'match':<5} {'MACs eff/dense':>15} {'dense cyc':>10} "
            f"{'sparse cyc':>10} {'speedup':>8} {'ideal':>6} {'frac':>5} {'model err':>9}")
    print(head)
    for s in summary:
        print(f"   {s['algo']:<17} {s['passes']:>6} {'yes' if s['match'] else 'NO':<5} "
              f"{s['effectual_macs'] / s['dense_macs']:>15.3f} {s['dense_cycles']:>10} {s['sparse_cycles']:>10} "
              f"{s['speedup']:>8.2f} {s['ideal_speedup'] or 0:>6.2f} {s['fraction_of_ideal'] or 0:>5.2f} "
              f"{100 * s['model_error']:>8.3f}%")


def run(args: argparse.Namespace) -> int:
    from ref.contract.trace_programs import make_digits_trace, trace_programs
    from ref.traces import load_trace
    from sim.compare import generate_pair, make_jobs, replay_and_compare, total_row
    from sim.core_program import acc_buffers
    from stag.commands.compare import add_report_fields, format_table

    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    started = time.perf_counter()
    config = config_from_args(args)
    steps = 5 if args.regression else 4
    print(f"== 1/{steps} generate: {config.name} and its dense baseline")
    design, dense = generate_pair(config, args.out, dense_rtl=True)
    lines = design.verilog.read_text(encoding="utf-8").count("\n")
    print(f"   {design.verilog} ({lines} lines), its units and the AXI top in {design.directory}")
    print(f"== 2/{steps} lint: verilator --lint-only -Wall")
    report = lint(design)
    print(f"   {report.summary()}")
    if not report.clean:
        return 1
    step = 3
    tests = 0
    if args.regression:
        print(f"== {step}/{steps} cocotb regression on {' and '.join(SIMULATORS)} against ref")
        outcomes = verify_design(design, sims=SIMULATORS, seeds=args.seeds,
                                 work_dir=Path(args.work) / config.name,
                                 progress=lambda line: print(f"   {line}"))
        if not outcomes:
            raise CosimFailure("no cocotb run happened")
        tests = sum(o.tests for o in outcomes)
        step += 1

    print(f"== {step}/{steps} golden model: train the digits CNN briefly under {', '.join(args.algos)}, "
          f"capture one iteration each (batch {args.batch})")
    scratch = Path(tempfile.mkdtemp(prefix="stag_demo_"))
    args.results.mkdir(parents=True, exist_ok=True)
    try:
        traces = {}
        for algo in args.algos:
            t0 = time.perf_counter()
            traces[algo] = load_trace(make_digits_trace(scratch / algo, algo=algo, batch_size=args.batch,
                                                        train_subset=3 * args.batch))
            # The short training run's metrics (accuracy per epoch, work per pass) for `stag report`.
            shutil.copyfile(scratch / algo / "metrics.json", args.results / f"{algo}.metrics.json")
            print(f"   {algo}: iteration {traces[algo].records[0].iteration} captured "
                  f"({time.perf_counter() - t0:.1f} s)")
        step += 1
        print(f"== {step}/{steps} replay every layer pass on the RTL (verilator), compare with ref, "
              f"dense baseline on {dense.config.top_name if dense else config.top_name}")
        runners: dict = {}
        summary = []
        for algo in args.algos:
            passes = trace_programs(traces[algo], tile_m=config.tile_m, tile_n=config.tile_n, tile_k=config.tile_k,
                                    operand_bits=config.operand_bits, acc_bits=config.acc_bits,
                                    acc_buffers=acc_buffers(config))
            jobs = make_jobs(passes, config)
            rows, mismatches = replay_and_compare(
                jobs, config, design, dense, ("verilator",), Path(args.work) / "demo" / config.name / algo,
                progress=lambda line, algo=algo: print(f"   {algo}: {line}"), runners=runners)
            add_report_fields(rows, jobs)
            for row in rows:   # the keys `stag compare` adds to its rows
                row.update(algo=algo, iteration=traces[algo].records[0].iteration, design=config.name,
                           sims=["verilator"])
            (args.results / f"{algo}.compare.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
            print(f"-- {algo}")
            print(format_table(rows))
            for mismatch in mismatches:
                print(f"MISMATCH {mismatch.describe()}")
            summary.append({"algo": algo, **total_row(rows)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (args.results / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")

    print("== summary")
    print(f"   design     {config.top_name}: {config.operand_bits}-bit operands, {config.acc_bits}-bit accumulator, "
          f"{config.lanes} lanes, tiles {config.tile_m}x{config.tile_n}x{config.tile_k}")
    print("   lint       clean")
    if args.regression:
        print(f"   cosim      {tests} tests passed on {', '.join(SIMULATORS)}, seeds "
              f"{', '.join(map(str, args.seeds))}; simulators agree value for value, cycle for cycle")
    print(f"   replay     one training iteration (batch {args.batch}) per algorithm, every conv and linear layer, "
          "FWD/BWI/BWW, through the AXI top on Verilator; cycles measured on the sparse and the dense RTL")
    _print_summary(summary)
    print(f"   results    {args.results}/<algo>.compare.json, {args.results}/<algo>.metrics.json, "
          f"{args.results}/summary.json (an HTML page of them: stag report {args.results})")
    print(f"   time       {time.perf_counter() - started:.1f} s")
    return 0 if all(s["match"] for s in summary) else 1
