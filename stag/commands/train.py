"""``stag train``: train the digits CNN with the golden model of one sparse-training algorithm.

Examples::

    stag train --algo swat --sparsity 0.8 --epochs 15 --seed 1 --out runs/train/swat
    stag train --compare-all --out runs/train/compare     # dense + all five, same seed
    stag train --algo stochastic_prune --trace 0,100 --out runs/trace_sp   # trace for RTL replay
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ref.models import VARIANTS
from ref.policies.registry import ALGOS, DEFAULT_SPARSITY, resolve_sparsity
from ref.training import DEFAULT_EPOCHS, Progress, train

PROG = "stag train"
OPERAND_NAMES = {"fwd": ("X", "W"), "bwi": ("dY", "W"), "bww": ("X", "dY")}


def add_parser(subparsers: Any) -> None:
    """Add the ``train`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "train",
        help="train the digits CNN with a sparse-training algorithm (golden model)",
        description="Train a small CNN on scikit-learn's digits data with one of the golden-model "
        "policies; writes metrics.json, PNG plots and optional traces.",
    )
    p.add_argument("--algo", choices=ALGOS, default="dense", help="algorithm (default: dense)")
    p.add_argument("--compare-all", action="store_true", help="run dense and all five algorithms, same seed")
    p.add_argument(
        "--sparsity",
        type=float,
        default=None,
        help="target sparsity in [0, 1) (default: the algorithm's paper default: "
        + ", ".join(f"{a}={s}" for a, s in DEFAULT_SPARSITY.items() if s)
        + ")",
    )
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs (default {DEFAULT_EPOCHS})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--variant", choices=VARIANTS, default="relu", help="conv-ReLU or conv-BN-ReLU (default relu)")
    p.add_argument(
        "--trace",
        metavar="ITERS",
        default=None,
        help="comma list of global iteration indices to capture for RTL replay, e.g. 0,50",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="output directory (default runs/train/<algo>, or runs/train/compare)"
    )
    p.add_argument(
        "--train-subset",
        type=int,
        default=None,
        metavar="N",
        help="use only the first N training samples (for smoke tests)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)  # stag.cli dispatches with args.run(args)


class _Error(Exception):
    pass


def _parse_trace(text: str | None) -> list[int]:
    if text is None:
        return []
    try:
        items = [int(t) for t in text.split(",") if t.strip() != ""]
    except ValueError:
        raise _Error(f"--trace must be a comma list of iteration indices >= 0, got {text!r}") from None
    if not items or any(i < 0 for i in items):
        raise _Error(f"--trace must be a comma list of iteration indices >= 0, got {text!r}")
    return items


def _validate(args: argparse.Namespace) -> list[int]:
    if args.sparsity is not None and not 0.0 <= args.sparsity < 1.0:
        raise _Error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if args.epochs < 0:
        raise _Error(f"--epochs must be >= 0, got {args.epochs}")
    if args.seed < 0:
        raise _Error(f"--seed must be >= 0, got {args.seed}")
    if args.train_subset is not None and args.train_subset < 1:
        raise _Error(f"--train-subset must be >= 1, got {args.train_subset}")
    trace = _parse_trace(args.trace)
    if args.compare_all and (args.sparsity is not None or trace):
        raise _Error("--compare-all uses each algorithm's default sparsity and takes no --sparsity or --trace")
    if not args.compare_all:
        resolve_sparsity(args.algo, args.sparsity)  # raises ValueError naming the field
    return trace


def _progress_bar(algo: str) -> Any:
    def show(p: Progress) -> None:
        width = 20
        done = int(width * (p.batch + 1) / p.batches)
        bar = "#" * done + "." * (width - done)
        sys.stderr.write(
            f"\r[{algo}] epoch {p.epoch + 1}/{p.epochs} [{bar}] batch {p.batch + 1}/{p.batches} "
            f"loss {p.loss:.4f} acc {p.acc:.3f} "
        )
        if p.batch + 1 == p.batches and p.epoch + 1 == p.epochs:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _sparsity_label(m: dict[str, Any], algo: str) -> str:
    s = m.get("achieved_sparsity")
    if s is None:
        return "-"
    prim = {"relu_mask": "BWI out-mask", "zero_skip": "X", "stochastic_prune": "dY",
            "resprop": "S", "swat": "W"}.get(algo, "")  # fmt: skip
    return f"{s:.3f} ({prim})"


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per algorithm: accuracy, achieved sparsity, effectual-MAC fraction per pass."""
    head = (
        f"{'algo':<17} {'test acc':>8}  {'sparsity (operand)':<20} "
        f"{'FWD eff':>7} {'BWI eff':>7} {'BWW eff':>7} {'time s':>7}"
    )
    lines = [head, "-" * len(head)]
    for algo, m in results.items():
        ps = m["passes"]
        lines.append(
            f"{algo:<17} {m['test_accuracy']:>8.4f}  {_sparsity_label(m, algo):<20} "
            f"{ps['fwd']['effectual_fraction']:>7.3f} {ps['bwi']['effectual_fraction']:>7.3f} "
            f"{ps['bww']['effectual_fraction']:>7.3f} {m['train_time_s']:>7.1f}"
        )
    return "\n".join(lines)


def _run_one(algo: str, args: argparse.Namespace, out: Path, sparsity: float | None, trace: list[int]) -> dict:
    s = DEFAULT_SPARSITY[algo] if sparsity is None else sparsity
    print(
        f"{PROG}: algo={algo} seed={args.seed} sparsity={s} epochs={args.epochs} variant={args.variant} out={out}",
        file=sys.stderr,
    )
    return train(
        algo, sparsity=sparsity, epochs=args.epochs, seed=args.seed, variant=args.variant, trace_iters=trace,
        out_dir=out, progress=None if args.no_progress else _progress_bar(algo), train_subset=args.train_subset,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Execute ``stag train``; returns the exit status (2 on bad arguments)."""
    try:
        trace = _validate(args)
        if args.compare_all:
            out = args.out or Path("runs/train/compare")
            t0 = time.perf_counter()
            results = {a: _run_one(a, args, out / a, None, []) for a in ALGOS}
            wall = time.perf_counter() - t0
            print(format_table(results))
            print(f"total wall time {wall:.1f} s (seed {args.seed})")
            from ref.plots import plot_comparison

            plot_comparison(results, out / "comparison.png")
            keys = ("test_accuracy", "achieved_sparsity", "passes", "train_time_s", "sparsity")
            summary = {a: {k: m[k] for k in keys} for a, m in results.items()}
            (out / "comparison.json").write_text(
                json.dumps({"seed": args.seed, "wall_time_s": wall, "algos": summary}, indent=1)
            )
            return 0
        out = args.out or Path("runs/train") / args.algo
        m = _run_one(args.algo, args, out, args.sparsity, trace)
        print(format_table({args.algo: m}))
        print(f"metrics: {out / 'metrics.json'}")
        if trace:
            print(f"trace: {out / 'trace' / 'manifest.json'}")
        return 0
    except (_Error, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
