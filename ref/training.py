"""Training the digits CNN under one policy, with work accounting, metrics, plots and traces.

Entry point: ``train(algo, ...) -> metrics dict`` (also written to ``<out_dir>/metrics.json``).
Everything is seeded from ``seed`` (model init, batch order, policy randomness), so the same
arguments give identical metrics in the same environment.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
import torch.nn.functional as F

from ref.accounting import WorkLedger
from ref.digits import load_split
from ref.layer_ops import ConvGeometry
from ref.models import VARIANTS, DigitsCNN
from ref.policies.base import IterationInfo
from ref.policies.dense import DensePolicy
from ref.policies.registry import build_policies, resolve_sparsity
from ref.traces import TraceWriter

DEFAULT_EPOCHS = 15
DEFAULT_BATCH = 32
DEFAULT_LR = 0.05


@dataclass
class Progress:
    """One progress event (after every batch)."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    acc: float


def _check_int(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return value


def versions() -> dict[str, str]:
    import matplotlib

    return {
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "sklearn": sklearn.__version__, "matplotlib": matplotlib.__version__,
    }  # fmt: skip


def evaluate(model: DigitsCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy as a fraction in [0, 1]."""
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    model.train()
    return float((pred == y).float().mean().item())


def _achieved_sparsity(model: DigitsCNN, ledger: WorkLedger) -> tuple[float | None, dict[str, float]]:
    """Sparsity of each policy's primary operand (1 - density), per layer and pooled over layers."""
    per_layer: dict[str, float] = {}
    nnz = numel = 0.0
    masks: list[float] = []
    for lay in model.policy_layers():
        prim = lay.policy.primary_operand()
        t = ledger.totals.get(lay.name, {}).get(prim[0]) if prim else None
        if prim is None or t is None or isinstance(lay.policy, DensePolicy):
            continue
        if prim[1] == "mask":
            s = 1.0 - t.mask_density_sum / max(t.count, 1)
            masks.append(s)
        else:
            nz, ne = (t.nnz_a, t.numel_a) if prim[1] == "a" else (t.nnz_b, t.numel_b)
            s = 1.0 - nz / max(ne, 1)
            nnz, numel = nnz + nz, numel + ne
        per_layer[lay.name] = s
    if masks:
        return float(np.mean(masks)), per_layer
    return (1.0 - nnz / numel if numel else None), per_layer


def _layer_meta(model: DigitsCNN) -> list[dict[str, Any]]:
    out = []
    for lay in model.policy_layers():
        g = lay.geometry
        conv = isinstance(g, ConvGeometry)
        out.append({
            "name": lay.name, "kind": g.kind, "stride": g.stride if conv else None,
            "padding": g.padding if conv else None, "weight_shape": list(lay.weight.shape),
            "input_is_relu": lay.input_is_relu, "policy": lay.policy.params(),
        })  # fmt: skip
    return out


def train(
    algo: str,
    *,
    sparsity: float | None = None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    variant: str = "relu",
    trace_iters: Iterable[int] = (),
    out_dir: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    batch_size: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    train_subset: int | None = None,
    options: dict[str, object] | None = None,
    plots: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train the digits CNN with policy ``algo`` and return the metrics dict.

    ``sparsity`` None = the algorithm's default. ``trace_iters``: global iteration indices
    (0-based, counting batches over all epochs) whose layers are saved as a trace under
    ``<out_dir>/trace``. ``options``: algorithm parameters (see ``build_policies``).
    ``threads``: torch intra-op threads for this run (None = leave the process setting).
    """
    s = resolve_sparsity(algo, sparsity)
    _check_int("epochs", epochs, 0)
    _check_int("seed", seed, 0)
    _check_int("batch_size", batch_size, 1)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    data = load_split(seed, train_subset=train_subset)
    n_train = data.x_train.shape[0]
    batches = (n_train + batch_size - 1) // batch_size
    total_steps = epochs * batches
    trace_set = sorted({_check_int("trace iteration", int(i), 0) for i in trace_iters})
    if trace_set and trace_set[-1] >= total_steps:
        raise ValueError(f"trace iteration {trace_set[-1]} is beyond the last iteration ({total_steps - 1})")
    if trace_set and out_dir is None:
        raise ValueError("out_dir is required when trace_iters is given")

    if threads is not None:
        _check_int("threads", threads, 1)
    prev_det, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        model = DigitsCNN(variant)
        model.set_policies(build_policies(algo, model.layer_specs(), s, seed, options))
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
        gen = torch.Generator().manual_seed(seed)
        layers = model.policy_layers()
        writer = TraceWriter(Path(out_dir) / "trace", {
            "algo": algo, "seed": seed, "sparsity": s, "variant": variant,
        }, _layer_meta(model)) if trace_set else None  # fmt: skip
        ledger = WorkLedger()
        history: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        step = 0
        model.train()
        for epoch in range(epochs):
            ep_ledger = WorkLedger()
            perm = torch.randperm(n_train, generator=gen)
            loss_sum = correct = seen = 0.0
            for b in range(batches):
                idx = perm[b * batch_size : (b + 1) * batch_size]
                xb, yb = data.x_train[idx], data.y_train[idx]
                info = IterationInfo(epoch, b, batches, step)
                capture = step in trace_set
                for lay in layers:
                    lay.policy.begin_iteration(info)
                    lay.capture = capture
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                for lay in layers:
                    for p, w in lay.last_work.items():
                        ledger.add(lay.name, p, w)
                        ep_ledger.add(lay.name, p, w)
                if writer is not None and capture:
                    writer.add(step, epoch, b, {
                        lay.name: (dict(lay.last_capture), dict(lay.last_scalars)) for lay in layers
                    })  # fmt: skip
                n = yb.shape[0]
                loss_sum += float(loss.item()) * n
                correct += float((logits.argmax(1) == yb).sum().item())
                seen += n
                step += 1
                if progress is not None:
                    progress(Progress(epoch, epochs, b, batches, loss_sum / seen, correct / seen))
            for lay in layers:
                lay.capture = False
            ep_sparsity, _ = _achieved_sparsity(model, ep_ledger)
            history.append({
                "epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
                "test_accuracy": evaluate(model, data.x_test, data.y_test), "achieved_sparsity": ep_sparsity,
                "passes": ep_ledger.pass_fractions(),
                "layers": {lay: {p: {k: v[k] for k in ("effectual_fraction", "operand_density_a",
                                                         "operand_density_b", "mask_density")}
                                 for p, v in ps.items()} for lay, ps in ep_ledger.summary().items()},
            })  # fmt: skip
        train_time = time.perf_counter() - t0
        test_acc = evaluate(model, data.x_test, data.y_test)
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)

    achieved, achieved_layers = _achieved_sparsity(model, ledger)
    metrics: dict[str, Any] = {
        "algo": algo, "seed": seed, "sparsity": s, "variant": variant, "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
        "train_samples": n_train, "test_samples": int(data.x_test.shape[0]), "iterations": total_steps,
        "test_accuracy": test_acc, "train_time_s": train_time,
        "achieved_sparsity": achieved, "achieved_sparsity_layers": achieved_layers,
        "final_epoch_achieved_sparsity": history[-1]["achieved_sparsity"] if history else None,
        "passes": ledger.pass_fractions(), "layers": ledger.summary(), "history": history,
        "policies": {lay.name: lay.policy.params() for lay in layers}, "versions": versions(),
        "pass_operands": {"fwd": ["X", "W"], "bwi": ["dY", "W"], "bww": ["X", "dY"]},
    }  # fmt: skip
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if writer is not None:
            metrics["trace_manifest"] = str(writer.close())
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        if plots and history:
            from ref.plots import plot_training

            plot_training(metrics, out)
    return metrics
