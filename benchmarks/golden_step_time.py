"""Golden-model training-step time per policy vs plain dense torch (nn.Conv2d), side by side.

Run: ``python benchmarks/golden_step_time.py [--steps N] [--variant relu|bn_relu] [--threads T]``.
For each policy the digits CNN takes N SGD steps on real digits batches (batch 32) in this process,
interleaved in rounds with the same number of steps of the stock-torch network, so both see the same
machine state. Reports median ms/step (with and without work accounting for the policy model) and the
ratio to plain torch; writes ``benchmarks/results/golden_step_time.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ref.digits import load_split
from ref.models import DigitsCNN, PlainDigitsCNN
from ref.policies.base import IterationInfo
from ref.policies.registry import ALGOS, build_policies
from ref.training import versions

BATCH = 32


def _batches(n_steps: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    data = load_split(seed)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_steps):
        idx = torch.randint(0, data.x_train.shape[0], (BATCH,), generator=g)
        out.append((data.x_train[idx], data.y_train[idx]))
    return out


def _time_plain(model: torch.nn.Module, batches: list, opt: torch.optim.Optimizer) -> float:
    t0 = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - t0) / len(batches)


def _time_policy(model: DigitsCNN, batches: list, opt: torch.optim.Optimizer, start: int) -> float:
    layers = model.policy_layers()
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(batches):
        info = IterationInfo(0, (start + i) % 40 + 1, 45, start + i)  # mid-epoch iterations
        for lay in layers:
            lay.policy.begin_iteration(info)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - t0) / len(batches)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="steps per round (default 30)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--variant", choices=("relu", "bn_relu"), default="relu")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "golden_step_time.json")
    a = ap.parse_args(argv)
    if a.steps < 1 or a.rounds < 1 or a.threads < 1:
        ap.error("--steps, --rounds and --threads must be >= 1")
    torch.set_num_threads(a.threads)
    print(f"seed {a.seed}, variant {a.variant}, {a.threads} thread(s), {a.rounds} rounds x {a.steps} steps")
    batches = _batches(a.steps, a.seed)
    rows = []
    for algo in ALGOS:
        torch.manual_seed(a.seed)
        plain = PlainDigitsCNN(a.variant)
        pol = DigitsCNN(a.variant)
        pol.set_policies(build_policies(algo, pol.layer_specs(), None, a.seed))
        pol_noacc = DigitsCNN(a.variant)
        pol_noacc.set_policies(build_policies(algo, pol_noacc.layer_specs(), None, a.seed))
        for lay in pol_noacc.policy_layers():
            lay.record_work = False
        opts = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in (plain, pol, pol_noacc)]
        _time_plain(plain, batches[:3], opts[0])  # warm-up
        _time_policy(pol, batches[:3], opts[1], 0)
        _time_policy(pol_noacc, batches[:3], opts[2], 0)
        tp, ta, tn = [], [], []
        for r in range(a.rounds):
            tp.append(_time_plain(plain, batches, opts[0]))
            ta.append(_time_policy(pol, batches, opts[1], r * a.steps))
            tn.append(_time_policy(pol_noacc, batches, opts[2], r * a.steps))
        mp, ma, mn = (statistics.median(t) * 1e3 for t in (tp, ta, tn))
        rows.append({"policy": algo, "plain_ms": mp, "golden_ms": ma, "golden_no_accounting_ms": mn,
                     "ratio": ma / mp, "ratio_no_accounting": mn / mp})  # fmt: skip
    head = f"{'policy':<17} {'plain ms':>9} {'golden ms':>10} {'ratio':>6} {'no-acct ms':>11} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['policy']:<17} {r['plain_ms']:>9.2f} {r['golden_ms']:>10.2f} {r['ratio']:>6.2f} "
            f"{r['golden_no_accounting_ms']:>11.2f} {r['ratio_no_accounting']:>6.2f}"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"seed": a.seed, "variant": a.variant, "threads": a.threads, "steps": a.steps, "rounds": a.rounds,
            "batch": BATCH, "versions": versions()}  # fmt: skip
    a.out.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
