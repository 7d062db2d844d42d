"""PNG plots of training metrics (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ref.layer_ops import PASSES


def plot_training(metrics: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write ``training_curves.png`` (loss, accuracy) and ``effectual_macs.png`` (per layer, per pass)."""
    hist = metrics["history"]
    ep = [h["epoch"] + 1 for h in hist]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in hist], marker="o")
    a1.set(xlabel="epoch", ylabel="train loss", title=f"{metrics['algo']}: loss")
    a2.plot(ep, [h["train_accuracy"] for h in hist], marker="o", label="train")
    a2.plot(ep, [h["test_accuracy"] for h in hist], marker="s", label="test")
    a2.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), title=f"{metrics['algo']}: accuracy")
    a2.legend()
    fig.tight_layout()
    p1 = Path(out_dir) / "training_curves.png"
    fig.savefig(p1, dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    layers = sorted({lay for h in hist for lay in h["layers"]}, key=list(hist[0]["layers"]).index)
    colors = {lay: f"C{i}" for i, lay in enumerate(layers)}  # one colour per layer in every panel
    for ax, p in zip(axes, PASSES, strict=True):
        for lay in layers:
            ys = [h["layers"].get(lay, {}).get(p, {}).get("effectual_fraction") for h in hist]
            if any(y is not None for y in ys):
                ax.plot(ep, [float("nan") if y is None else y for y in ys], marker="o", label=lay, color=colors[lay])
        ax.set(xlabel="epoch", title=f"{p.upper()} effectual-MAC fraction", ylim=(0, 1.02))
        ax.legend(fontsize=8)
    axes[0].set_ylabel("effectual MACs / dense MACs")
    fig.tight_layout()
    p2 = Path(out_dir) / "effectual_macs.png"
    fig.savefig(p2, dpi=100)
    plt.close(fig)
    return [p1, p2]


def plot_comparison(all_metrics: dict[str, dict[str, Any]], out_path: Path) -> Path:
    """Bar chart: test accuracy and per-pass effectual-MAC fraction for each algorithm."""
    algos = list(all_metrics)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
    a1.bar(algos, [all_metrics[a]["test_accuracy"] for a in algos])
    a1.set(ylabel="test accuracy", ylim=(0, 1.02), title="accuracy")
    a1.tick_params(axis="x", rotation=30)
    width = 0.25
    for i, p in enumerate(PASSES):
        xs = [j + (i - 1) * width for j in range(len(algos))]
        a2.bar(xs, [all_metrics[a]["passes"][p]["effectual_fraction"] for a in algos], width, label=p.upper())
    a2.set_xticks(range(len(algos)), algos, rotation=30)
    a2.set(ylabel="effectual MACs / dense MACs", ylim=(0, 1.02), title="effectual-MAC fraction per pass")
    a2.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return Path(out_path)
