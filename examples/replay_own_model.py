"""Replay the layers of your own PyTorch model on the generated accelerator RTL.

Adapt ``build_model`` and ``make_batch`` to your network and data, then run::

    .venv/bin/python examples/replay_own_model.py --out runs/own_model --preset default

What it does:

1. Runs one training step of your model (forward, loss, backward) on one batch. Hooks on every
   ``nn.Conv2d`` and ``nn.Linear`` capture the layer input X, the weight W and the gradient dY at
   the layer output.
2. Writes them as a STAG trace (``ref.traces``, format version 1). Every layer is tagged with the
   ``zero_skip`` policy (Gong et al.): the accelerator skips the zeros that ReLU leaves in X and
   in dY, and computes exactly what dense training computes.
3. Runs ``stag compare --trace <out>/trace``. Each layer's FWD, BWI and BWW is lowered to
   accelerator programs (operands quantized to the design's operand width) and replayed on the
   RTL, and every value is compared with the golden model. The table and ``compare.json`` land in
   ``<out>/compare``.

Supported layers: ``nn.Conv2d`` with square kernels, equal stride and padding on both axes,
``groups=1`` and ``dilation=1``, and ``nn.Linear``. Other layers (pooling, normalization,
activations) run on the host and are not replayed. The first layer's BWI is not replayed:
training never needs the gradient of the input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ref.traces import TraceWriter  # noqa: E402

POLICY = "zero_skip"


# ---- adapt these two to your model ------------------------------------------------------------------

def build_model() -> nn.Module:
    """Your network. This one is a small CNN for 1x12x12 inputs."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=1, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 6 * 6, 10),
    )


def make_batch(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of inputs and integer class labels."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, 12, 12, generator=gen), torch.randint(0, 10, (batch,), generator=gen)


# ---- capture -----------------------------------------------------------------------------------------

def _layer_meta(name: str, layer: nn.Module) -> dict:
    if isinstance(layer, nn.Conv2d):
        k, s, p = layer.kernel_size, layer.stride, layer.padding
        if (k[0] != k[1] or s[0] != s[1] or not isinstance(p, tuple) or p[0] != p[1] or layer.groups != 1
                or layer.dilation != (1, 1)):
            raise ValueError(f"layer {name}: only square kernels, equal stride/padding, groups=1 and dilation=1 "
                             f"can be replayed (got kernel {k}, stride {s}, padding {p}, groups {layer.groups}, "
                             f"dilation {layer.dilation})")
        return {"name": name, "kind": "conv", "stride": s[0], "padding": p[0],
                "weight_shape": list(layer.weight.shape), "input_is_relu": True, "policy": {"policy": POLICY}}
    return {"name": name, "kind": "linear", "stride": None, "padding": None,
            "weight_shape": list(layer.weight.shape), "input_is_relu": True, "policy": {"policy": POLICY}}


def capture_trace(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, out_dir: Path, seed: int) -> Path:
    """One training step of ``model`` with every conv/linear layer's X, W and dY written as a trace."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        raise ValueError("the model has no nn.Conv2d or nn.Linear layer to replay")
    captured: dict[str, dict[str, torch.Tensor]] = {name: {} for name, _ in layers}
    handles = []
    for name, layer in layers:
        def forward_hook(module, args, output, name=name):
            captured[name]["x"] = args[0].detach().clone()
            captured[name]["w"] = module.weight.detach().clone()
            # dY: the gradient arriving at this layer's output during backward.
            output.register_hook(lambda grad: captured[name].__setitem__("dy", grad.detach().clone()))

        handles.append(layer.register_forward_hook(forward_hook))
    try:
        model.train()
        loss = nn.functional.cross_entropy(model(inputs), labels)
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    meta = [_layer_meta(name, layer) for name, layer in layers]
    # Trace layer names must be plain identifiers for the command line (--layers).
    names = {name: f"layer{i}_{type(layer).__name__.lower()}" for i, (name, layer) in enumerate(layers)}
    for entry in meta:
        entry["name"] = names[entry["name"]]
    writer = TraceWriter(out_dir / "trace", {"algo": POLICY, "seed": seed, "sparsity": 0.0, "variant": "custom"},
                         meta)
    writer.add(0, 0, 0, {names[name]: (captured[name], {}) for name, _ in layers})
    writer.close()
    return out_dir / "trace"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/own_model"), help="output directory")
    parser.add_argument("--batch", type=int, default=4, help="batch size (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch (default 0)")
    parser.add_argument("--preset", default="default", help="STAG design preset (default: default)")
    parser.add_argument("--sim", default="verilator", choices=("icarus", "verilator", "both"))
    parser.add_argument("--max-tiles", default=None, help="replay only the first N output tiles of each pass")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be >= 1, got {args.batch}")

    torch.manual_seed(args.seed)
    model = build_model()
    inputs, labels = make_batch(args.batch, args.seed)
    trace = capture_trace(model, inputs, labels, args.out, args.seed)
    print(f"captured one training step (batch {args.batch}) into {trace}")

    from stag.cli import main as stag_main

    stag_args = ["compare", "--trace", str(trace), "--preset", args.preset, "--sim", args.sim,
                 "--out", str(args.out / "compare"), "--rtl", str(args.out / "rtl"), "--work", str(args.out / "work")]
    if args.max_tiles:
        stag_args += ["--max-tiles", str(args.max_tiles)]
    return stag_main(stag_args)


if __name__ == "__main__":
    sys.exit(main())
