"""Accelerator programs from captured training traces (``ref.traces``): the real operands of every
layer pass, quantized and lowered exactly as the policy feeds them to the GEMM.

``trace_programs(trace, ...)`` turns one captured iteration into one ``TracePass`` per (layer, pass):

1. **Operands as the policy chose them** (``ref.policies``; the trace holds what is needed):

   ==================  =====================  =====================  =====================  ==============
   layer policy        FWD (X, W)             BWI (dY, W)            BWW (X, dY)            BWI out_mask
   ==================  =====================  =====================  =====================  ==============
   dense, zero_skip    x, w                   dy, w                  x, dy                  –
   relu_mask           x, w                   dy, w                  x, dy                  ``relu_mask_x``
   stochastic_prune    x, w                   ``dy_pruned``, w       x, ``dy_pruned``       –
   resprop             x, w                   ``S``, w               x, ``S``               –
   swat                x, w⊙``swat_mask_w``   dy, w⊙``swat_mask_w``  x⊙``swat_mask_x``, dy  –
   ==================  =====================  =====================  =====================  ==============

   A policy-specific tensor absent from the trace means the policy did not apply it in that
   iteration (ReSprop's dense iterations have no ``S``; SWAT's dense first layer has no masks;
   relu_mask's first layer has no mask), and the plain tensor is used, as the policy did.
   ReSprop's reused terms (``dx_extra`` / ``dw_extra`` from the stored sample P) are added outside
   the GEMM and are not part of the program (see docs/contract.md).
2. **Quantization**: each operand tensor is quantized on its own with
   ``ref.numerics.quantize_symmetric`` (per-tensor symmetric, ``operand_bits``); a masked or
   pruned operand is quantized after masking, as the GEMM receives it.
3. **Formats** from the layer policy's ``skips`` via ``gemm_formats`` (bitmap where the policy
   skips the operand's zeros). The layer's policy comes from the trace manifest, so it can differ
   from the trace's algorithm (SWAT keeps the first layer dense, ReSprop the linear layer).
4. **Lowering** with ``lower_pass`` (tiles, ``acc_bits``, optional requantizing ``drain``).

The first layer's BWI is skipped by default: its input is the image, which needs no gradient, so
training never runs it (the trace still holds that layer's dY, which its BWW uses).

Each ``TracePass`` carries an independent reference: the pass computed by torch
(``ref.layer_ops`` conv/linear ops) in float64 on the integer codes, exact because every partial
sum stays below 2**53 (``operand_bits`` <= 16 and the reduction lengths of a trace are far below
2**23). ``expected_tiles`` turns it into the tiles the program's Drains must produce.

``make_digits_trace`` trains the digits CNN for a few batches and captures one iteration, for
tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from ref.contract.commands import Drain, Program, TileGemm
from ref.contract.evaluate import drain_tile, wrap
from ref.contract.lowering import ACC_BUFFERS, PASSES, gemm_formats, lower_pass
from ref.layer_ops import ConvGeometry, LinearGeometry
from ref.numerics import quantize_symmetric
from ref.policies import (
    DensePolicy,
    ReluMaskPolicy,
    ReSpropPolicy,
    StochasticPrunePolicy,
    SwatPolicy,
    ZeroSkipPolicy,
)
from ref.traces import LayerRecord, Trace

MAX_TRACE_OPERAND_BITS = 16  # keeps the float64 torch reference exact (products < 2**30, sums < 2**53)
POLICY_SKIPS: dict[str, dict[str, tuple[bool, bool]]] = {
    cls.name: dict(cls.skips)
    for cls in (DensePolicy, ReluMaskPolicy, ZeroSkipPolicy, StochasticPrunePolicy, ReSpropPolicy, SwatPolicy)
}
_KIND = {"conv": "conv2d", "linear": "linear"}  # trace manifest kind -> lowering kind


@dataclass(frozen=True, eq=False)
class TracePass:
    """One layer pass of a traced iteration, lowered to a Program, with its exact reference.

    Fields:
        layer:       layer name in the trace (e.g. "conv2").
        pass_:       "fwd", "bwi" or "bww".
        algo:        the trace's training algorithm (``trace.algo``).
        policy:      the layer's policy name from the manifest (decides operands and formats).
        kind:        "conv2d" or "linear".
        iteration:   global training iteration of the captured record.
        program:     the lowered Program (possibly truncated to its first output tiles, see
                     ``full_tiles``); its output matrix is the pass's GEMM result [M, N].
        a_format, b_format: the GEMM operand formats ("dense" / "bitmap").
        operands:    quantized int64 tensors passed to ``lower_pass`` under its argument names
                     (FWD: x, w; BWI: dy, w; BWW: x, dy), in the layer layout.
        sources:     for each operand, which trace tensors it came from (e.g. "w*swat_mask_w").
        scales:      per operand, the quantization scale (real value = code * scale).
        out_mask:    bool tensor of the pass output's shape (relu_mask BWI), or None.
        out_shape:   shape of the layer tensor the pass produces (Y, dX or dW).
        reference:   int64 layer tensor of ``out_shape``: torch's pass on the integer codes with
                     the out_mask applied; the exact accumulator values before wrap and drain.
        full_tiles:  number of output tiles (Drains) of the untruncated program.
        reassemble:  maps the full program's output matrix [M, N] to the layer tensor.
    """

    layer: str
    pass_: str
    algo: str
    policy: str
    kind: str
    iteration: int
    program: Program
    a_format: str
    b_format: str
    operands: dict[str, torch.Tensor]
    sources: dict[str, str]
    scales: dict[str, float]
    out_mask: torch.Tensor | None
    out_shape: tuple[int, ...]
    reference: torch.Tensor
    full_tiles: int
    reassemble: Callable[[torch.Tensor], torch.Tensor]

    @property
    def truncated(self) -> bool:
        """True when ``program`` holds only the first output tiles of the pass (``max_gemms``)."""
        return self.n_tiles < self.full_tiles

    @property
    def n_tiles(self) -> int:
        """Number of output tiles (Drains) in ``program``."""
        return sum(1 for c in self.program.commands if isinstance(c, Drain))

    @property
    def lsb_scale(self) -> float:
        """Real value of one unit of the raw accumulator: the product of the two operand scales."""
        s = list(self.scales.values())
        return s[0] * s[1]

    def reference_matrix(self) -> torch.Tensor:
        """``reference`` in the GEMM's output-matrix layout [M, N] (see ``ref.contract.lowering``)."""
        return layer_to_matrix(self.kind, self.pass_, self.reference)

    @cached_property
    def expected_tiles(self) -> tuple[torch.Tensor, ...]:
        """The int64 tiles [tile_m, tile_n] the program's Drains must produce, in program order.

        Derived from ``reference`` alone (not from the evaluator): each drain region's block of the
        reference matrix, zero-padded to a tile, wrapped to ``acc_bits`` and read out by the Drain.
        """
        p = self.program
        mtx = self.reference_matrix()
        drains = [c for c in p.commands if isinstance(c, Drain)]
        tiles = []
        for cmd, reg in zip(drains, p.drain_regions, strict=True):
            tile = torch.zeros((p.tile_m, p.tile_n), dtype=torch.int64)
            tile[: reg.rows, : reg.cols] = mtx[reg.row0 : reg.row0 + reg.rows, reg.col0 : reg.col0 + reg.cols]
            tiles.append(drain_tile(wrap(tile, p.acc_bits), cmd))
        return tuple(tiles)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def layer_to_matrix(kind: str, pass_: str, t: torch.Tensor) -> torch.Tensor:
    """A pass's output in layer layout -> the GEMM output matrix [M, N] of ``ref.contract.lowering``.

    conv FWD Y [N, K, P, Q] -> [N*P*Q, K]; conv BWI dX [N, C, H, W] -> [N*H*W, C];
    conv BWW dW [K, C, R, S] -> [K, C*R*S]; linear: unchanged (Y [N, O], dX [N, F], dW [O, F]).
    """
    if kind == "linear":
        return t
    if pass_ == "bww":
        return t.reshape(t.shape[0], -1)
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _geometry(rec: LayerRecord) -> ConvGeometry | LinearGeometry:
    if rec.kind == "conv":
        return ConvGeometry(int(rec.stride or 1), int(rec.padding or 0))
    return LinearGeometry()


def _torch_pass(
    rec: LayerRecord, pass_: str, ops: dict[str, torch.Tensor], out_mask: torch.Tensor | None
) -> torch.Tensor:
    """The pass on the integer codes through torch in float64 (exact: all partial sums < 2**53)."""
    g = _geometry(rec)
    f = {k: v.to(torch.float64) for k, v in ops.items()}
    if pass_ == "fwd":
        out = g.fwd(f["x"], f["w"])
    elif pass_ == "bwi":
        out = g.bwi(f["dy"], f["w"], rec.tensors["x"].shape)
    else:
        out = g.bww(f["x"], f["dy"], rec.tensors["w"].shape)
    if out_mask is not None:
        out = torch.where(out_mask, out, torch.zeros((), dtype=out.dtype))
    return out.round().to(torch.int64)


def _masked(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, t, torch.zeros((), dtype=t.dtype))


def _pass_operands(rec: LayerRecord, pass_: str) -> dict[str, tuple[str, torch.Tensor]] | None:
    """Float operands the policy sent to the pass, as {lower_pass argument: (source, tensor)}.

    None when the trace lacks a tensor the pass needs (no dY: the layer's backward was not captured).
    """
    t = rec.tensors
    x, w = ("x", t["x"]), ("w", t["w"])
    if "swat_mask_w" in t:
        w = ("w*swat_mask_w", _masked(t["w"], t["swat_mask_w"]))
    if pass_ == "fwd":
        return {"x": x, "w": w}
    if "dy" not in t:
        return None
    dy = ("dy", t["dy"])
    for name in ("dy_pruned", "S"):  # stochastic_prune / resprop: the gradient fed to BWI and BWW
        if name in t:
            dy = (name, t[name])
    if pass_ == "bwi":
        return {"dy": dy, "w": w}
    if "swat_mask_x" in t:
        x = ("x*swat_mask_x", _masked(t["x"], t["swat_mask_x"]))
    return {"x": x, "dy": dy}


def truncate_program(program: Program, max_tiles: int) -> Program:
    """The first ``max_tiles`` output tiles of a lowered program: all their TileGemms and Drains.

    ``output_shape`` is kept and ``drain_regions`` cut to the kept Drains, so the result is a valid
    Program whose output matrix holds the kept tiles (zeros elsewhere).
    """
    if not _is_int(max_tiles) or max_tiles < 1:
        raise ValueError(f"max_tiles must be an int >= 1, got {max_tiles!r}")
    kept: list[TileGemm | Drain] = []
    drains = 0
    for cmd in program.commands:
        if drains == max_tiles:
            break
        kept.append(cmd)
        drains += isinstance(cmd, Drain)
    regions = program.drain_regions[:drains] if program.output_shape is not None else ()
    return Program(tuple(kept), program.acc_bits, program.tile_m, program.tile_n, program.tile_k,
                   program.output_shape, regions)  # fmt: skip


def trace_programs(
    trace: Trace,
    *,
    iteration_index: int = 0,
    tile_m: int,
    tile_n: int,
    tile_k: int,
    operand_bits: int,
    acc_bits: int,
    passes: Sequence[str] = PASSES,
    layers: Iterable[str] | None = None,
    max_gemms: int | None = None,
    drain: Drain | None = None,
    first_layer_bwi: bool = False,
    acc_buffers: int = ACC_BUFFERS,
) -> list[TracePass]:
    """One ``TracePass`` per (layer, pass) of the captured iteration ``trace.records[iteration_index]``.

    ``operand_bits`` (2..16): width of the symmetric operand codes; ``acc_bits`` (2..64): the
    accumulator width (``>= 2*operand_bits + log2(K)`` never wraps). ``passes``: subset of
    ("fwd", "bwi", "bww"); ``layers``: layer names (None = all, in forward order). ``max_gemms``:
    keep only the first that many output tiles of each program (None = all), for fast tests.
    ``drain``: read-out of every Drain (None = raw accumulators). ``first_layer_bwi``: also lower
    the first layer's BWI, which training never runs (its input is the image). Passes whose
    tensors the trace lacks (no dY) are skipped. Order: layers in forward order, then ``passes``.
    ``acc_buffers``: the accumulators the output tiles alternate between (``lower_gemm``; at most
    the core's ``accumulators``).
    """
    if not isinstance(trace, Trace):
        raise ValueError(f"trace must be a ref.traces.Trace (see load_trace), got {type(trace).__name__}")
    n_rec = len(trace.records)
    if not _is_int(iteration_index) or not 0 <= iteration_index < n_rec:
        raise ValueError(f"iteration_index must be an int in [0, {n_rec}) (trace records), got {iteration_index!r}")
    passes = tuple(passes)
    if not passes or any(p not in PASSES for p in passes):
        raise ValueError(f"passes must be a non-empty subset of {PASSES}, got {passes!r}")
    if not _is_int(operand_bits) or not 2 <= operand_bits <= MAX_TRACE_OPERAND_BITS:
        raise ValueError(f"operand_bits must be an int in [2, {MAX_TRACE_OPERAND_BITS}], got {operand_bits!r}")
    if max_gemms is not None and (not _is_int(max_gemms) or max_gemms < 1):
        raise ValueError(f"max_gemms must be None or an int >= 1, got {max_gemms!r}")
    rec = trace.records[iteration_index]
    order = [lay["name"] for lay in trace.manifest["layers"]]
    if layers is None:
        names = order
    else:
        names = list(layers)
        unknown = [n for n in names if n not in rec.layers]
        if unknown:
            raise ValueError(f"layers must be names from the trace {order}, got unknown {unknown}")
    out: list[TracePass] = []
    for name in names:
        lay = rec.layers[name]
        policy = str(lay.policy.get("policy"))
        if policy not in POLICY_SKIPS:
            raise ValueError(f"layer {name}: unknown policy {policy!r} (known: {tuple(POLICY_SKIPS)})")
        kind = _KIND[lay.kind]
        for pass_ in passes:
            if pass_ == "bwi" and name == order[0] and not first_layer_bwi:
                continue  # the image needs no gradient: training never runs the first layer's BWI
            chosen = _pass_operands(lay, pass_)
            if chosen is None:
                continue
            q = {arg: quantize_symmetric(t, operand_bits) for arg, (_, t) in chosen.items()}
            ops = {arg: v[0] for arg, v in q.items()}
            mask = lay.tensors.get("relu_mask_x") if pass_ == "bwi" else None
            a_fmt, b_fmt = gemm_formats(pass_, POLICY_SKIPS[policy][pass_])
            geo: dict[str, object] = {}
            if kind == "conv2d":
                geo = {"stride": int(lay.stride or 1), "padding": int(lay.padding or 0)}
                if pass_ == "bwi":
                    geo["x_shape"] = tuple(lay.tensors["x"].shape)
                elif pass_ == "bww":
                    geo["w_shape"] = tuple(lay.tensors["w"].shape)
            lowered = lower_pass(kind, pass_, **ops, **geo, a_format=a_fmt, b_format=b_fmt, out_mask=mask,
                                 tiles=(tile_m, tile_n, tile_k), acc_bits=acc_bits, drain=drain,
                                 acc_buffers=acc_buffers)  # fmt: skip
            program = lowered.program
            full = len(program.drain_regions)
            if max_gemms is not None and max_gemms < full:
                program = truncate_program(program, max_gemms)
            out.append(TracePass(
                layer=name, pass_=pass_, algo=trace.algo, policy=policy, kind=kind, iteration=rec.iteration,
                program=program, a_format=a_fmt, b_format=b_fmt, operands=ops,
                sources={arg: src for arg, (src, _) in chosen.items()},
                scales={arg: v[1] for arg, v in q.items()}, out_mask=mask, out_shape=tuple(lowered.out_shape),
                reference=_torch_pass(lay, pass_, ops, mask), full_tiles=full, reassemble=lowered.reassemble,
            ))  # fmt: skip
    return out


# ReSprop's official adaptive threshold starts at 1e-7 under a 100%-nonzero warm-up target, so in
# the few iterations of a quick trace S is not sparse at all (denser than dY: S = dY - P has the
# union of both supports). The quantile threshold without warm-up reaches the target at once.
QUICK_TRACE_OPTIONS: dict[str, dict[str, object]] = {"resprop": {"threshold_mode": "quantile", "warmup": False}}


def make_digits_trace(
    out_dir: Path | str,
    *,
    algo: str,
    seed: int = 0,
    epochs: int = 1,
    iteration: int = 1,
    train_subset: int | None = 96,
    batch_size: int = 32,
    sparsity: float | None = None,
    options: dict[str, object] | None = None,
    variant: str = "relu",
) -> Path:
    """Train the digits CNN briefly under ``algo`` and capture global iteration ``iteration``.

    Runs ``ref.training.train`` on the first ``train_subset`` training samples (None = all) for
    ``epochs`` epochs and returns the trace directory ``<out_dir>/trace`` (load it with
    ``ref.traces.load_trace``). Defaults (96 samples, batch 32: 3 iterations; capture iteration 1)
    take well under a second per algorithm after imports. Iteration 1 is the first one in which
    every policy is active: ReSprop's first and last batch of an epoch are dense iterations.
    ``options`` (None = ``QUICK_TRACE_OPTIONS.get(algo)``; pass {} for the algorithm's defaults)
    and ``sparsity`` go to ``train``.
    """
    from ref.training import train  # local: training pulls in plotting and data-set modules

    opts = QUICK_TRACE_OPTIONS.get(algo) if options is None else options
    out = Path(out_dir)
    train(algo, sparsity=sparsity, epochs=epochs, seed=seed, variant=variant, trace_iters=(iteration,), out_dir=out,
          batch_size=batch_size, train_subset=train_subset, options=dict(opts) if opts else None,
          plots=False)  # fmt: skip
    return out / "trace"
