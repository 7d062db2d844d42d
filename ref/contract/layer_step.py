"""One full training step (FWD, BWI, BWW) of one conv layer and its ReLU, per algorithm, in integers.

The step is a chain of contract commands only: core programs (``lower_pass`` GEMMs with their
Drains) and unit commands (``ref.contract.units``). ``layer_step`` runs the chain on a
:class:`StepBackend`, so the same composition runs on the reference (:class:`RefBackend`, here:
``evaluate`` and ``evaluate_unit``) and on the RTL (``sim.layer_chain``). What sits where
(docs/contract.md, "Layer step chains"):

==================  ======================================  ======================================
algorithm           forward                                 backward
==================  ======================================  ======================================
dense, zero_skip    FWD, Drain with ReLU                    BWI (requantizing Drain), BWW (raw)
relu_mask           FWD, Drain with ReLU -> A and, on the   BWI with out_mask M_in; also BWI
                    result path, M_out = A > 0;             unmasked -> MaskApply(., M_in) (both
                    ReluMaskEmit(X) -> M_in                 give dX); BWW
stochastic_prune    FWD, Drain with ReLU                    StochasticPrune(dY) -> dY_p; BWI(dY_p),
                                                            BWW(X, dY_p)
swat                TopKSelect(W) -> W_hat; TopKSelect(X)   BWI(dY, W_hat); BWW(X_hat, dY)
                    -> X_hat; FWD(X, W_hat), Drain w. ReLU
                    (with a stored threshold of A: its
                    top-K keep bits from the result path)
resprop             FWD, Drain with ReLU                    ReSpropDifference(dY, P) -> S; dX =
                                                            rq(BWI(S) + BWI(P) broadcast);
                                                            dW = BWW(X, S) + BWW(X, P broadcast)
==================  ======================================  ======================================

Numerics. Inputs are per-tensor symmetric codes (``quantize_symmetric``, as ``trace_programs``).
FWD and BWI outputs are requantized to operand codes by the Drain (``shift`` from
:func:`calibrate_shift`, ``half_away``, saturation to +-qmax): Y feeds the next layer and dX is the
previous layer's dY, so both must be operand codes. dW is read raw (int64; it goes to the weight
update). The bias (a host add; db = sum dY) is not part of the step.

ReSprop's reused terms are added outside the GEMM by the host: the one-sample BWI of P
(``N = 1``) is read raw, broadcast over the batch and added to the raw accumulators of BWI(S); the
sum is requantized with the Drain's rule (``ref.numerics.requantize``). ``preGW`` is the BWW GEMM of
X with P broadcast over the batch, read raw and added to the raw BWW(X, S) (the policy's
``bww(sum_n X[n], P)`` is the same number; sum_n X does not fit the operand width). dY and P share
one scale with ``operand_bits - 1`` bits, so S = dY - P (which the unit emits with one extra bit)
always fits the core's operand width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import torch

from ref.contract.commands import Drain, Program
from ref.contract.evaluate import evaluate
from ref.contract.lowering import gemm_formats, lower_pass
from ref.contract.machine import StepParams
from ref.contract.trace_programs import POLICY_SKIPS
from ref.contract.units import (
    MaskApply,
    PruneOut,
    ReluMaskEmit,
    ReluMaskOut,
    ReSpropDifference,
    ReSpropOut,
    StochasticPrune,
    TopKOut,
    TopKSelect,
    UnitCommand,
    UnitResult,
    evaluate_unit,
)
from ref.layer_ops import ConvGeometry
from ref.numerics import qmax, quantize_symmetric, requantize, to_fixed
from ref.resprop_codes import target_code, threshold_code
from ref.topk_codes import keep_count
from ref.traces import Trace

__all__ = [
    "ALGOS", "LayerInputs", "LayerStep", "RefBackend", "StepBackend", "StepParams", "calibrate_shift",
    "layer_inputs_from_trace", "layer_step",
]  # fmt: skip

ALGOS: tuple[str, ...] = ("dense", "zero_skip", "relu_mask", "stochastic_prune", "swat", "resprop")
ROUNDING = "half_away"
_R = TypeVar("_R")


@dataclass(frozen=True, eq=False)
class LayerInputs:
    """The codes and host decisions of one layer step (build with :func:`layer_inputs_from_trace`).

    x [N, C, H, W], w [K, C, R, S], dy [N, K, P, Q]: int64 codes (dy: the gradient at the conv
    output, before the algorithm touches it). ``scales``: real value per code of x, w, dy.
    fwd_shift, bwi_shift: the requantizing Drains' shifts. Algorithm knobs (ignored by the others):
    prune_c_fixed / prune_seed (stochastic_prune: ``to_fixed(c, frac_bits)``, LFSR reseed value);
    topk_keep / topk_slice_len_w / topk_count_rule (swat: kept fraction, 1 or R*S for channel top-K of
    W, how K is computed: ``ref.topk_codes.keep_count``'s ``count_rule``); p [K, P, Q]
    (resprop: stored sample, same scale as dy), resprop_load (mant, exp), resprop_target_cp,
    resprop_sample (the sample stored as the next P; ``>= N`` stores none). ``a_topk_threshold``
    (swat): the stored top-K threshold of this layer's activation A (the next layer's X) between
    two recomputations; the FWD Drain then emits A's keep bits ``|A| >= threshold`` on the result
    path (``Drain(topk=True)``) instead of its ReLU mask. ``source``: where the tensors came from
    (trace, layer, iteration, crop).
    """

    algo: str
    stride: int
    padding: int
    x: torch.Tensor
    w: torch.Tensor
    dy: torch.Tensor
    scales: dict[str, float]
    fwd_shift: int
    bwi_shift: int
    prune_c_fixed: int = 0
    prune_seed: int = 1
    topk_keep: float = 1.0
    topk_slice_len_w: int = 1
    topk_count_rule: str = "official"
    p: torch.Tensor | None = None
    resprop_load: tuple[int, int] = (0, 0)
    resprop_target_cp: int = 0
    resprop_sample: int = 0
    a_topk_threshold: int | None = None
    source: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}, got {self.algo!r}")
        for name in ("x", "w", "dy"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.dim() != 4:
                raise ValueError(f"{name} must be a 4-D int64 code tensor")
        if self.a_topk_threshold is not None and (self.algo != "swat" or self.a_topk_threshold < 0):
            raise ValueError(f"a_topk_threshold must be None or, for swat, an int >= 0; got "
                             f"{self.a_topk_threshold!r} for {self.algo}")
        if self.algo == "resprop" and (self.p is None or tuple(self.p.shape) != tuple(self.dy.shape[1:])):
            raise ValueError(f"resprop needs p of shape {tuple(self.dy.shape[1:])} (one dY sample)")


class StepBackend(Protocol):
    """Executes the programs and unit commands of a step. Tensors are int64 codes / bool masks, row-major."""

    def gemm(self, program: Program) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The drained tiles of ``program`` and their mask bits from the result path, in program order."""
        ...

    def unit(self, command: UnitCommand) -> UnitResult:
        """The result of one unit command (``ref.contract.units``) on a fresh unit."""
        ...


class RefBackend:
    """The integer reference: ``evaluate`` for programs, ``evaluate_unit`` for unit commands."""

    def __init__(self, params: StepParams) -> None:
        self.params = params

    def gemm(self, program: Program) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        result = evaluate(program)
        return list(result.tiles), list(result.masks)

    def unit(self, command: UnitCommand) -> UnitResult:
        return evaluate_unit(command, self.params)


@dataclass(frozen=True, eq=False)
class LayerStep:
    """Every intermediate of one layer step (int64 codes / raw accumulators, bool masks, ints).

    Fields that an algorithm does not produce are None. Layouts are the layer's (NCHW / KCRS).

    w_fwd:   W fed to FWD and BWI (swat: top-K of W);       w_keep, w_threshold: swat's W top-K.
    x_bww:   X fed to BWW (swat: top-K of X);                 x_keep, x_threshold: swat's X top-K.
    a:       the activation, FWD requantized with ReLU (all).
    a_keep:  |a| >= a_topk_threshold, the FWD drain's top-K keep bits from the result path (swat with
             a stored threshold): the keep bitmap of the next layer's X_hat.
    mask_out: a > 0 (= z > 0), the FWD drain's mask from the core's result path (relu_mask).
    mask_in: X > 0 from ReluMaskEmit(X) (relu_mask).
    dy_g:    the gradient fed to BWI and BWW (pruned dY / S / dY).  tau: the pruner's threshold.
    resprop_nnz, resprop_thr_used, resprop_exp_after: the ReSprop unit's done beat.
    dx_unmasked: BWI requantized without output mask (relu_mask); dx_mask_applied: MaskApply of it.
    dx_gemm, pre_gx: raw BWI(S) and raw one-sample BWI(P) [1, C, H, W] (resprop).
    dx:      dX codes (requantized).
    dw_gemm, pre_gw: raw BWW(X, S) and raw BWW(X, P broadcast) (resprop).   dw: raw dW.
    """

    algo: str
    w_fwd: torch.Tensor
    x_bww: torch.Tensor
    a: torch.Tensor
    dy_g: torch.Tensor
    dx: torch.Tensor
    dw: torch.Tensor
    w_keep: torch.Tensor | None = None
    w_threshold: int | None = None
    x_keep: torch.Tensor | None = None
    x_threshold: int | None = None
    mask_out: torch.Tensor | None = None
    a_keep: torch.Tensor | None = None
    mask_in: torch.Tensor | None = None
    tau: int | None = None
    resprop_nnz: int | None = None
    resprop_thr_used: int | None = None
    resprop_exp_after: int | None = None
    dx_unmasked: torch.Tensor | None = None
    dx_mask_applied: torch.Tensor | None = None
    dx_gemm: torch.Tensor | None = None
    pre_gx: torch.Tensor | None = None
    dw_gemm: torch.Tensor | None = None
    pre_gw: torch.Tensor | None = None


# ----------------------------------------------------------------------------------------------
# The step


def _assemble(program: Program, tiles: list[torch.Tensor]) -> torch.Tensor:
    """The program's output matrix from drained tiles (each region's valid block)."""
    if len(tiles) != len(program.drain_regions):
        raise ValueError(f"expected {len(program.drain_regions)} drained tiles, got {len(tiles)}")
    assert program.output_shape is not None
    out = torch.zeros(program.output_shape, dtype=torch.int64)
    for tile, reg in zip(tiles, program.drain_regions, strict=True):
        out[reg.row0:reg.row0 + reg.rows, reg.col0:reg.col0 + reg.cols] = tile[:reg.rows, :reg.cols]
    return out


def _check_fits(params: StepParams, inp: LayerInputs) -> None:
    n, c, h, w = inp.x.shape
    k = inp.w.shape[0]
    if inp.algo == "swat":
        for name, t in (("w", inp.w), ("x", inp.x)):
            if t.numel() > params.topk_max_elems:
                raise ValueError(f"swat: {name} has {t.numel()} codes, more than topk_max_elems = "
                                 f"{params.topk_max_elems}")
    if inp.a_topk_threshold is not None and inp.a_topk_threshold >= 1 << params.operand_bits:
        raise ValueError(f"swat: a_topk_threshold = {inp.a_topk_threshold}, but the result path compares "
                         f"operand_bits = {params.operand_bits}-bit magnitudes (0..{(1 << params.operand_bits) - 1})")
    if inp.algo == "stochastic_prune" and inp.dy.numel() >= 1 << params.prune_count_bits:
        raise ValueError(f"stochastic_prune: dy has {inp.dy.numel()} codes, the pruner counts to "
                         f"{(1 << params.prune_count_bits) - 1} (prune_count_bits)")
    if inp.algo == "resprop":
        elems = inp.dy[0].numel()
        if elems > params.resprop_max_elems or n > params.resprop_max_batch:
            raise ValueError(f"resprop: one sample has {elems} codes and the batch {n}; the unit holds "
                             f"{params.resprop_max_elems} (resprop_max_elems) and {params.resprop_max_batch} "
                             "(resprop_max_batch)")
        lim = qmax(params.operand_bits - 1)
        for name, t in (("dy", inp.dy), ("p", inp.p)):
            assert t is not None
            if int(t.abs().max()) > lim:
                raise ValueError(f"resprop: {name} codes must lie in +-{lim} (operand_bits - 1 bits) so that "
                                 "S = dY - P fits the core's operands")
    if n * c * h * w == 0 or k == 0:
        raise ValueError("the layer step needs a non-empty X and W")


def layer_step(inp: LayerInputs, params: StepParams, backend: StepBackend | None = None) -> LayerStep:
    """Run one layer step of ``inp.algo`` on ``backend`` (default: :class:`RefBackend`)."""
    be = RefBackend(params) if backend is None else backend
    _check_fits(params, inp)
    algo, b = inp.algo, params.operand_bits
    skips = POLICY_SKIPS[algo]
    x, w, dy = inp.x, inp.w, inp.dy
    geo = {"stride": inp.stride, "padding": inp.padding}
    x_shape, w_shape = tuple(x.shape), tuple(w.shape)

    def run_with_mask(pass_: str, *, drain: Drain | None = None, out_mask: torch.Tensor | None = None,
                      formats: tuple[str, str] | None = None, topk_threshold: int | None = None,
                      **ops) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower one pass (formats from the policy's skips unless given), run it, reassemble the
        output and the mask the result path emitted with it (ReLU, or with ``topk_threshold``
        the top-K keep bits of every Drain)."""
        a_fmt, b_fmt = formats or gemm_formats(pass_, skips[pass_])
        lowered = lower_pass("conv2d", pass_, **ops, **geo, a_format=a_fmt, b_format=b_fmt, out_mask=out_mask,
                             tiles=params.tiles, acc_bits=params.acc_bits, drain=drain)
        program = lowered.program
        if topk_threshold is not None:
            program = replace(program, topk_threshold=topk_threshold, commands=tuple(
                replace(c, topk=True) if isinstance(c, Drain) else c for c in program.commands))
        tiles, masks = be.gemm(program)
        output = lowered.reassemble(_assemble(program, tiles))
        mask = lowered.reassemble(_assemble(program, [m.to(torch.int64) for m in masks])).bool()
        return output, mask

    def run(pass_: str, **kw) -> torch.Tensor:
        return run_with_mask(pass_, **kw)[0]

    def unit(command: UnitCommand, kind: type[_R]) -> _R:
        result = be.unit(command)
        if not isinstance(result, kind):
            raise TypeError(f"{type(be).__name__}.unit({type(command).__name__}) returned {type(result).__name__}, "
                            f"not {kind.__name__}")
        return result

    out: dict[str, object] = {"algo": algo}
    # -- units before FWD (swat: top-K of W for FWD/BWI and of X for BWW) ----------------------
    w_fwd, x_bww = w, x
    if algo == "swat":
        sl = inp.topk_slice_len_w
        rule = inp.topk_count_rule
        tw = unit(TopKSelect(w, k=keep_count(inp.topk_keep, w.numel() // sl, rule), slice_len=sl), TopKOut)
        tx = unit(TopKSelect(x, k=keep_count(inp.topk_keep, x.numel(), rule), slice_len=1), TopKOut)
        w_fwd, x_bww = tw.values, tx.values
        out.update(w_keep=tw.keep, w_threshold=tw.threshold, x_keep=tx.keep, x_threshold=tx.threshold)
    out.update(w_fwd=w_fwd, x_bww=x_bww)
    # -- FWD and the layer's ReLU ----------------------------------------------------------------
    if algo == "relu_mask":
        # The activation's 1-bit mask (Sarma et al.) leaves the core with the drained activation.
        a, mask_out = run_with_mask("fwd", x=x, w=w_fwd, drain=Drain(0, inp.fwd_shift, b, ROUNDING, relu=True))
        # M_in: the previous layer's emitted mask of X; X is a ReLU output, so the unit passes it
        # unchanged and its mask is the nonzero bitmap of X.
        emitted = unit(ReluMaskEmit(x), ReluMaskOut)
        if not torch.equal(emitted.act, x):
            raise ValueError("relu_mask: the layer input X must be a ReLU output (codes >= 0)")
        out.update(a=a, mask_out=mask_out, mask_in=emitted.mask)
    elif inp.a_topk_threshold is not None:
        # SWAT between recomputations: A's top-K keep bits leave the core with A itself.
        out["a"], out["a_keep"] = run_with_mask("fwd", x=x, w=w_fwd, topk_threshold=inp.a_topk_threshold,
                                                drain=Drain(0, inp.fwd_shift, b, ROUNDING, relu=True))
    else:
        out["a"] = run("fwd", x=x, w=w_fwd, drain=Drain(0, inp.fwd_shift, b, ROUNDING, relu=True))
    # -- units on dY -------------------------------------------------------------------------------
    dy_g = dy
    if algo == "stochastic_prune":
        pruned = unit(StochasticPrune(dy, c_fixed=inp.prune_c_fixed, seed=inp.prune_seed), PruneOut)
        dy_g, out["tau"] = pruned.codes, pruned.tau
    elif algo == "resprop":
        assert inp.p is not None
        r = unit(ReSpropDifference(dy, inp.p, load=inp.resprop_load, target_cp=inp.resprop_target_cp,
                                   sample=inp.resprop_sample), ReSpropOut)
        dy_g = r.s
        if int(dy_g.abs().max()) > qmax(b):
            raise AssertionError("resprop: S does not fit the operand width")  # excluded by _check_fits
        out.update(resprop_nnz=r.nnz, resprop_thr_used=r.thr_used, resprop_exp_after=r.exp_after)
    out["dy_g"] = dy_g
    # -- BWI ---------------------------------------------------------------------------------------
    bwi_drain = Drain(0, inp.bwi_shift, b, ROUNDING)
    if algo == "relu_mask":
        out["dx"] = run("bwi", dy=dy_g, w=w_fwd, x_shape=x_shape, drain=bwi_drain, out_mask=out["mask_in"])
        dxu = run("bwi", dy=dy_g, w=w_fwd, x_shape=x_shape, drain=bwi_drain)
        out.update(dx_unmasked=dxu, dx_mask_applied=unit(MaskApply(dxu, out["mask_in"]), torch.Tensor))
    elif algo == "resprop":
        assert inp.p is not None
        dx_gemm = run("bwi", dy=dy_g, w=w_fwd, x_shape=x_shape)
        pre_gx = run("bwi", dy=inp.p[None], w=w_fwd, x_shape=(1, *x_shape[1:]), formats=("dense", "dense"))
        # Host: broadcast the one-sample reused term over the batch, add, requantize like the Drain.
        out.update(dx_gemm=dx_gemm, pre_gx=pre_gx,
                   dx=requantize(dx_gemm + pre_gx, inp.bwi_shift, b, ROUNDING))
    else:
        out["dx"] = run("bwi", dy=dy_g, w=w_fwd, x_shape=x_shape, drain=bwi_drain)
    # -- BWW (raw) ---------------------------------------------------------------------------------
    dw = run("bww", x=x_bww, dy=dy_g, w_shape=w_shape)
    if algo == "resprop":
        assert inp.p is not None
        p_b = inp.p[None].expand_as(dy).contiguous()
        pre_gw = run("bww", x=x, dy=p_b, w_shape=w_shape, formats=("dense", "dense"))
        out.update(dw_gemm=dw, pre_gw=pre_gw)
        dw = dw + pre_gw
    out["dw"] = dw
    return LayerStep(**out)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Inputs from a captured trace


def calibrate_shift(estimate: float, out_bits: int) -> int:
    """Smallest shift >= 0 with ``round(estimate / 2**shift) <= qmax(out_bits)`` (0 for estimate 0).

    ``estimate`` is the expected largest |accumulator|; :func:`layer_inputs_from_trace` takes it
    from the float layer on the trace tensors divided by the two operand scales (a static
    calibration; the integer accumulators may exceed it slightly, and the Drain then saturates).
    """
    if not math.isfinite(estimate) or estimate < 0:
        raise ValueError(f"estimate must be a finite number >= 0, got {estimate!r}")
    shift = 0
    while estimate / (1 << shift) >= qmax(out_bits) + 0.5:
        shift += 1
    return shift


def _top_indices(score: torch.Tensor, count: int) -> list[int]:
    """Indices of the ``count`` largest scores (ties: lower index first), in increasing order."""
    order = sorted(range(score.numel()), key=lambda i: (-float(score[i]), i))
    return sorted(order[:count])


def layer_inputs_from_trace(
    trace: Trace,
    params: StepParams,
    *,
    layer: str = "conv2",
    iteration_index: int = 0,
    samples: tuple[int, ...] | None = None,
    in_channels: int = 2,
    out_channels: int = 4,
) -> LayerInputs:
    """The inputs of one step of ``trace.algo`` on a crop of conv ``layer`` of a captured iteration.

    Crop (so that the RTL simulation stays short and the tensors fit the units of small designs):
    the batch samples ``samples`` (default (0, 1); for resprop the sample the policy stored is
    included), the ``in_channels`` input channels whose X (over those samples) is nearest half
    nonzero, and
    the ``out_channels`` output channels with the largest sum |dY|. Every pass of the step is then
    complete for that sub-layer (same geometry, fewer channels and samples): its Y is the conv over
    the kept input channels only.

    Quantization: x, w, dy each with ``quantize_symmetric(., operand_bits)`` (as ``trace_programs``);
    resprop's dy and P jointly with ``operand_bits - 1`` bits (see the module docstring). Shifts
    from :func:`calibrate_shift` on the float layer (dense operands). Knobs from the manifest's
    policy parameters and the record's scalars: the pruner constant ``to_fixed(c, prune_frac_bits)``
    and an LFSR seed from ``lfsr_state_before``; swat's keep = 1 - sparsity, structure and count_rule; ReSprop's
    threshold (``threshold_before`` in dY code units, as ``threshold_code``), target and stored sample.
    """
    rec = trace.records[iteration_index]
    if layer not in rec.layers or rec.layers[layer].kind != "conv":
        raise ValueError(f"layer must name a conv layer of the trace, got {layer!r}")
    lay = rec.layers[layer]
    t, sc, pol = lay.tensors, lay.scalars, lay.policy
    algo = str(pol.get("policy"))
    if algo not in ALGOS:
        raise ValueError(f"layer {layer}: unknown policy {algo!r}")
    n_all = t["x"].shape[0]
    if samples is None:
        samples = (0, 1)
        j = int(sc.get("stored_sample", 0))
        if algo == "resprop" and j not in samples:
            samples = (0, j)
    if not samples or any(not 0 <= s < n_all for s in samples) or len(set(samples)) != len(samples):
        raise ValueError(f"samples must be distinct indices in 0..{n_all - 1}, got {samples!r}")
    sel = list(samples)
    x_s, dy_s = t["x"][sel].double(), t["dy"][sel].double()
    # Input channels whose X is nearest half nonzero: neither dead nor dense, so the zero skipping
    # and the ReLU masks have something to do.
    cin = _top_indices(-((x_s != 0).double().mean(dim=(0, 2, 3)) - 0.5).abs(), in_channels)
    cout = _top_indices(dy_s.abs().sum(dim=(0, 2, 3)), out_channels)
    xf = x_s[:, cin].contiguous()
    wf = t["w"].double()[cout][:, cin].contiguous()
    dyf = dy_s[:, cout].contiguous()
    b = params.operand_bits
    stride, padding = int(lay.stride or 1), int(lay.padding or 0)
    geom = ConvGeometry(stride, padding)
    x, sx = quantize_symmetric(xf, b)
    w, sw = quantize_symmetric(wf, b)
    kw: dict[str, object] = {}
    if algo == "resprop":
        pf = t["P"].double()[cout].contiguous()
        both, sdy = quantize_symmetric(torch.cat([dyf.flatten(), pf.flatten()]), b - 1)
        dy, p = both[:dyf.numel()].reshape(dyf.shape), both[dyf.numel():].reshape(pf.shape)
        thr = float(sc["threshold_before"]) / sdy
        j = int(sc["stored_sample"])
        kw.update(p=p, resprop_load=threshold_code(thr, b),
                  resprop_target_cp=target_code(float(sc["target_nz_percent"])),
                  resprop_sample=sel.index(j) if j in sel else len(sel))
    else:
        dy, sdy = quantize_symmetric(dyf, b)
    if algo == "stochastic_prune":
        span = (1 << params.lfsr_width) - 1
        kw.update(prune_c_fixed=to_fixed(float(pol["c"]), params.prune_frac_bits),
                  prune_seed=int(sc.get("lfsr_state_before", 0)) % span + 1)
    if algo == "swat":
        kw.update(topk_keep=1.0 - float(pol["sparsity"]), topk_count_rule=str(pol.get("count_rule", "official")),
                  topk_slice_len_w=int(wf.shape[2] * wf.shape[3]) if pol.get("structure") == "channel" else 1)
    fwd_est = float(geom.fwd(xf, wf).abs().max()) / (sx * sw)
    bwi_est = float(geom.bwi(dyf, wf, xf.shape).abs().max()) / (sdy * sw)
    return LayerInputs(
        algo=algo, stride=stride, padding=padding, x=x, w=w, dy=dy, scales={"x": sx, "w": sw, "dy": sdy},
        fwd_shift=calibrate_shift(fwd_est, b), bwi_shift=calibrate_shift(bwi_est, b),
        source={"algo": trace.algo, "seed": trace.seed, "layer": layer, "iteration": rec.iteration,
                "samples": tuple(sel), "in_channels": tuple(cin), "out_channels": tuple(cout)},
        **kw,  # type: ignore[arg-type]
    )
