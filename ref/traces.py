"""Trace capture for RTL replay: format version 1.

A trace is a directory::

    <dir>/manifest.json          # metadata, see below
    <dir>/iter_<ITER:06d>.pt     # one per captured iteration: torch.save of
                                 #   {layer_name: {tensor_name: plain torch.Tensor}}

``manifest.json`` (format_version 1)::

    {"format": "stag-golden-trace", "format_version": 1,
     "algo": str, "seed": int, "sparsity": float, "variant": str,
     "iterations": [int, ...],                       # global training-step indices, ascending
     "layers": [{"name", "kind": "conv"|"linear", "stride", "padding" (conv only; null for linear),
                 "weight_shape", "input_is_relu", "policy": {policy parameters}}],
     "records": [{"iteration", "epoch", "batch", "file",
                  "layers": {name: {"tensors": {tensor_name: {"shape": [...], "dtype": "float32"}},
                                    "scalars": {name: number}}}}]}

Tensor names per layer (present when applicable):

- ``x`` layer input X, ``w`` dense weight W, ``b`` bias, ``dy`` gradient arriving at the layer
  output before the policy touches it;
- ``relu_mask_x`` (relu_mask: bool mask X > 0 used as BWI output mask);
- ``dy_pruned`` (stochastic_prune: the pruned gradient fed to BWI and BWW);
- ``P`` (stored sample, shape dY.shape[1:]) and ``S`` (sparse difference) for resprop;
- ``swat_mask_w``, ``swat_mask_x`` (swat: bool Top-K masks of W and X).

Scalars: ``tau``, ``lfsr_state_before``/``lfsr_state_after`` (stochastic_prune, LFSR state
before/after this layer's draws; layers draw in backward order), ``threshold_before``/
``threshold_after``, ``nz_percent``, ``target_nz_percent``, ``stored_sample`` (resprop), ``thr_w``,
``thr_x``, ``recomputed`` (swat: the periodic thresholds, X's and an unstructured W's, were
recomputed), ``recomputed_w`` (swat: W's mask was recomputed; every iteration for the official
channel-structured mask).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT_NAME = "stag-golden-trace"
FORMAT_VERSION = 1


@dataclass
class LayerRecord:
    """One layer in one captured iteration."""

    name: str
    kind: str
    stride: int | None
    padding: int | None
    policy: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    scalars: dict[str, float | int]


@dataclass
class IterationRecord:
    iteration: int
    epoch: int
    batch: int
    layers: dict[str, LayerRecord]


@dataclass
class Trace:
    algo: str
    seed: int
    sparsity: float
    variant: str
    manifest: dict[str, Any]
    records: list[IterationRecord] = field(default_factory=list)


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


class TraceWriter:
    """Collects captured iterations and writes the manifest on ``close()``."""

    def __init__(self, out_dir: Path, meta: dict[str, Any], layers: list[dict[str, Any]]) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.manifest: dict[str, Any] = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, **meta,
            "iterations": [], "layers": layers, "records": [],
        }  # fmt: skip

    def add(
        self,
        iteration: int,
        epoch: int,
        batch: int,
        layers: dict[str, tuple[dict[str, torch.Tensor], dict[str, float | int]]],
    ) -> None:
        """Save one iteration: ``layers[name] = (tensors, scalars)``."""
        fname = f"iter_{iteration:06d}.pt"
        payload = {name: {k: v.detach().cpu().contiguous() for k, v in t.items()} for name, (t, _) in layers.items()}
        torch.save(payload, self.out_dir / fname)
        rec_layers = {
            name: {
                "tensors": {k: {"shape": list(v.shape), "dtype": _dtype_name(v)} for k, v in t.items()},
                "scalars": {k: (float(v) if isinstance(v, float) else int(v)) for k, v in s.items()},
            }
            for name, (t, s) in layers.items()
        }
        self.manifest["iterations"].append(iteration)
        self.manifest["records"].append(
            {"iteration": iteration, "epoch": epoch, "batch": batch, "file": fname, "layers": rec_layers}
        )

    def close(self) -> Path:
        path = self.out_dir / "manifest.json"
        path.write_text(json.dumps(self.manifest, indent=1))
        return path


def load_trace(path: Path | str) -> Trace:
    """Load and validate a trace directory (or its manifest.json path)."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    if not p.is_file():
        raise FileNotFoundError(f"trace manifest not found: {p}")
    m = json.loads(p.read_text())
    if m.get("format") != FORMAT_NAME:
        raise ValueError(f"trace format must be {FORMAT_NAME!r}, got {m.get('format')!r}")
    if m.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"trace format_version must be {FORMAT_VERSION}, got {m.get('format_version')!r}")
    layer_meta = {lay["name"]: lay for lay in m["layers"]}
    trace = Trace(m["algo"], int(m["seed"]), float(m["sparsity"]), m["variant"], m)
    for rec in m["records"]:
        data = torch.load(p.parent / rec["file"], weights_only=True)
        layers: dict[str, LayerRecord] = {}
        for name, lrec in rec["layers"].items():
            if name not in layer_meta or name not in data:
                raise ValueError(f"trace record {rec['file']}: layer {name!r} missing from manifest or file")
            tensors = data[name]
            for tname, info in lrec["tensors"].items():
                t = tensors.get(tname)
                if t is None or list(t.shape) != info["shape"] or _dtype_name(t) != info["dtype"]:
                    raise ValueError(f"trace record {rec['file']}: tensor {name}.{tname} does not match the manifest")
            meta = layer_meta[name]
            layers[name] = LayerRecord(
                name, meta["kind"], meta.get("stride"), meta.get("padding"), meta["policy"], tensors, lrec["scalars"]
            )
        trace.records.append(IterationRecord(rec["iteration"], rec["epoch"], rec["batch"], layers))
    return trace
