# amaranth: UnusedElaboratable=no
"""One full layer step per algorithm: RTL chain (core + generated units) == integer reference chain,
and the reference chain == the float golden layer on integer-valued inputs.

Data: conv2 of the digits CNN, captured iteration 1 of ``make_digits_trace(algo=<algo>, seed=0)``,
cropped by ``layer_inputs_from_trace`` to 2 samples x 2 input channels x 4 output channels (every
pass complete for that sub-layer; the whole layer would take ~100x longer in the Amaranth
simulator and its X would not fit the tiny top-K unit). Design: the ``tiny`` preset.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch
from torch import nn

from hw.config import preset
from ref.contract import Drain, PruneSetting, ReSpropSetting, evaluate, lower_gemm, lower_pass
from ref.contract.layer_step import ALGOS, LayerInputs, LayerStep, layer_inputs_from_trace, layer_step
from ref.contract.trace_programs import make_digits_trace, truncate_program
from ref.contract.units import BitmapDecode, BitmapEncode, evaluate_unit
from ref.layer_ops import ConvGeometry
from ref.layers import PolicyConv2d
from ref.lfsr import GaloisLFSR
from ref.numerics import qmax, quantize_symmetric, requantize, tau_fixed, tau_float
from ref.policies import (
    DensePolicy,
    IterationInfo,
    ReluMaskPolicy,
    ReSpropPolicy,
    SwatPolicy,
    ZeroSkipPolicy,
    stochastic_prune,
)
from ref.resprop_codes import effective_threshold, threshold_value
from ref.stochastic_prune_codes import prune_codes
from ref.topk_codes import apply_threshold, keep_count, select_threshold
from ref.traces import load_trace
from sim.core_amaranth import run_core_amaranth
from sim.core_program import encode_program
from sim.layer_chain import RtlBackend, run_layer_chain, step_params

CONFIG = preset("tiny")
PARAMS = step_params(CONFIG)
TRACE_SEED = 0
STALL = 0.2


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """``get(algo)``: the algorithm's digits trace, made on first use."""
    cache = {}

    def get(algo: str):
        if algo not in cache:
            print(f"make_digits_trace(algo={algo!r}, seed={TRACE_SEED}), layer conv2, iteration 1")
            root = tmp_path_factory.mktemp(f"trace_{algo}")
            cache[algo] = load_trace(make_digits_trace(root, algo=algo, seed=TRACE_SEED))
        return cache[algo]

    return get


@pytest.fixture(scope="module")
def steps(traces):
    """``get(algo) -> (trace, inputs, reference step)``."""
    cache = {}

    def get(algo: str):
        if algo not in cache:
            trace = traces(algo)
            inp = layer_inputs_from_trace(trace, PARAMS)
            print(f"crop {inp.source}, shifts fwd={inp.fwd_shift} bwi={inp.bwi_shift}")
            cache[algo] = (trace, inp, layer_step(inp, PARAMS))
        return cache[algo]

    return get


def assert_steps_equal(got: LayerStep, want: LayerStep) -> None:
    for f in dataclasses.fields(LayerStep):
        g, w = getattr(got, f.name), getattr(want, f.name)
        if isinstance(w, torch.Tensor):
            assert isinstance(g, torch.Tensor) and g.dtype == w.dtype and g.shape == w.shape, f.name
            diff = (g != w).nonzero()
            assert diff.numel() == 0, f"{f.name}: {diff.shape[0]} elements differ, first at {diff[0].tolist()}"
        else:
            assert g == w, f"{f.name}: RTL {g!r}, ref {w!r}"


@pytest.mark.parametrize("algo", ALGOS)
def test_rtl_chain_equals_ref_chain(steps, algo):
    """Every intermediate of the RTL chain (random stalls on every stream) equals the reference."""
    _, inp, want = steps(algo)
    seed = 100 + ALGOS.index(algo)
    print(f"RTL chain seed={seed} stall={STALL}")
    start = time.process_time()
    got, backend = run_layer_chain(inp, CONFIG, seed=seed, stall=STALL)
    print(f"{algo}: {time.process_time() - start:.1f} s CPU; calls {backend.log}")
    assert_steps_equal(got, want)
    # The chain is not trivial: the algorithm's unit changed something and every pass has nonzeros.
    for name in ("a", "dx", "dw"):
        assert int((getattr(want, name) != 0).sum()) > 0, name
    if algo == "relu_mask":
        assert 0 < int(want.mask_out.sum()) < want.mask_out.numel()
        assert 0 < int(want.mask_in.sum()) < want.mask_in.numel()
        assert not torch.equal(want.dx, want.dx_unmasked)  # the output mask removed real values
    if algo == "stochastic_prune":
        assert want.tau > 0 and not torch.equal(want.dy_g, inp.dy)
    if algo == "swat":
        assert 0 < int(want.w_keep.sum()) < want.w_keep.numel()
        assert 0 < int(want.x_keep.sum()) < want.x_keep.numel()
    if algo == "resprop":
        assert 0 < want.resprop_nnz < want.dy_g.numel() and int((inp.p != 0).sum()) > 0


# ----------------------------------------------------------------------------------------------
# The reference chain against the float golden layer (ref.layers.PolicyConv2d + ref.policies) in
# float64 on the integer codes: every product and sum is an integer below 2**53, so it is exact.


def golden_layer(inp: LayerInputs, policy_cls, dy: torch.Tensor, **policy_kw):
    """Run the golden PolicyConv2d on the codes; returns (Y, dX, dW, layer, policy)."""
    k, c, r, _ = inp.w.shape
    layer = PolicyConv2d(c, k, r, inp.stride, inp.padding, bias=False, name="conv2", input_is_relu=True)
    layer.weight = nn.Parameter(inp.w.to(torch.float64))
    layer.record_work, layer.capture = False, True
    policy = policy_cls(layer.spec(1, 4), **policy_kw)
    if isinstance(policy, ReSpropPolicy):
        policy.P = inp.p.to(torch.float64)
        policy.threshold = threshold_value(*inp.resprop_load)
    layer.set_policy(policy)
    layer.train()
    policy.begin_iteration(IterationInfo(epoch=0, batch=1, batches_per_epoch=3, step=1))
    x = inp.x.to(torch.float64).requires_grad_()
    y = layer(x)
    y.backward(dy.to(torch.float64))
    return y.detach(), x.grad, layer.weight.grad, layer, policy


def as_int(t: torch.Tensor) -> torch.Tensor:
    r = t.round()
    assert torch.equal(r, t), "the golden layer left the integers"
    assert int(r.abs().max()) < 1 << (PARAMS.acc_bits - 1), "an accumulator would wrap: exactness needs no wrap"
    return r.to(torch.int64)


def check_forward_backward(step: LayerStep, inp: LayerInputs, y, dx, dw) -> None:
    b = PARAMS.operand_bits
    z = requantize(as_int(y), inp.fwd_shift, b)
    assert torch.equal(step.a, z.clamp(min=0))
    assert torch.equal(step.dx, requantize(as_int(dx), inp.bwi_shift, b))
    assert torch.equal(step.dw, as_int(dw))


@pytest.mark.parametrize("algo", ["dense", "zero_skip", "relu_mask"])
def test_exact_algorithms_equal_torch_autograd(steps, algo):
    """FWD, the ReLU (mask), BWI (with relu_mask's output mask) and BWW equal autograd on the codes."""
    _, inp, step = steps(algo)
    cls = {"dense": DensePolicy, "zero_skip": ZeroSkipPolicy, "relu_mask": ReluMaskPolicy}[algo]
    y, dx, dw, layer, _ = golden_layer(inp, cls, inp.dy)
    check_forward_backward(step, inp, y, dx, dw)
    assert torch.equal(step.dy_g, inp.dy) and torch.equal(step.w_fwd, inp.w) and torch.equal(step.x_bww, inp.x)
    # Plain torch autograd (no policy layer): conv2d on leaves; BWI/BWW are the leaves' gradients.
    x = inp.x.to(torch.float64).requires_grad_()
    w = inp.w.to(torch.float64).requires_grad_()
    torch.nn.functional.conv2d(x, w, None, inp.stride, inp.padding).backward(inp.dy.to(torch.float64))
    assert torch.equal(step.dw, as_int(w.grad))
    if algo != "relu_mask":
        assert torch.equal(step.dx, requantize(as_int(x.grad), inp.bwi_shift, PARAMS.operand_bits))
        return
    z = requantize(as_int(y), inp.fwd_shift, PARAMS.operand_bits)
    assert torch.equal(step.a, z.clamp(min=0)) and torch.equal(step.mask_out, z > 0)
    assert torch.equal(step.mask_in, layer.last_capture["relu_mask_x"])  # the policy's X > 0
    # The masked dX is the gradient through the previous layer's ReLU (autograd: 0 where X == 0).
    xr = inp.x.to(torch.float64).requires_grad_()
    torch.nn.functional.conv2d(torch.relu(xr), w.detach(), None, inp.stride, inp.padding).backward(
        inp.dy.to(torch.float64))
    assert torch.equal(step.dx, requantize(as_int(xr.grad), inp.bwi_shift, PARAMS.operand_bits))
    assert torch.equal(step.dx_unmasked, requantize(as_int(x.grad), inp.bwi_shift, PARAMS.operand_bits))
    assert torch.equal(step.dx_mask_applied, step.dx)  # MaskApply after BWI == the GEMM's output mask


def test_stochastic_prune_equals_float_rule_and_tau_is_within_bound(steps):
    """Given the unit's integer tau and its LFSR draws, the pruned dY, dX and dW equal the float
    policy's rule (``stochastic_prune``) and layer; tau itself is within the derived bound of the
    float ``c * mean|g|`` (the one inexact quantity)."""
    trace, inp, step = steps("stochastic_prune")
    b, f = PARAMS.operand_bits, PARAMS.prune_frac_bits
    assert 0 < step.tau <= qmax(b)  # no saturation of the substituted +-tau in this trace
    u = GaloisLFSR(PARAMS.lfsr_width, PARAMS.lfsr_taps, inp.prune_seed).uniforms(tuple(inp.dy.shape))
    pruned = stochastic_prune(inp.dy.to(torch.float64), float(step.tau), u)
    assert torch.equal(step.dy_g, as_int(pruned))
    y, dx, dw, _, _ = golden_layer(inp, DensePolicy, pruned)  # the policy feeds the pruned dY to BWI and BWW
    check_forward_backward(step, inp, y, dx, dw)
    # tau = floor(c_fixed * sum|q| / (n 2**f)) lies in (c' m - 1, c' m], c' = c_fixed / 2**f, m = mean|q|,
    # so |tau - c m| <= 1 + |c' - c| m.
    c = float(trace.records[0].layers["conv2"].policy["c"])
    m = float(inp.dy.abs().double().mean())
    bound = 1 + abs(inp.prune_c_fixed / (1 << f) - c) * m
    assert abs(step.tau - tau_float(inp.dy, c)) <= bound
    print(f"tau={step.tau} float tau={tau_float(inp.dy, c):.4f} bound={bound:.4f}")


def test_swat_equals_float_policy(steps):
    """The units' top-K masks and thresholds are SwatPolicy's on the codes; FWD/BWI use W_hat, BWW X_hat."""
    trace, inp, step = steps("swat")
    pol = trace.records[0].layers["conv2"].policy
    y, dx, dw, layer, policy = golden_layer(inp, SwatPolicy, inp.dy, sparsity=float(pol["sparsity"]),
                                            structure=str(pol["structure"]))
    check_forward_backward(step, inp, y, dx, dw)
    cap = layer.last_capture
    assert torch.equal(step.w_keep, cap["swat_mask_w"]) and torch.equal(step.x_keep, cap["swat_mask_x"])
    assert (step.w_threshold, step.x_threshold) == (policy.thr_w, policy.thr_x)
    assert torch.equal(step.w_fwd, torch.where(cap["swat_mask_w"], inp.w, 0))
    assert torch.equal(step.x_bww, torch.where(cap["swat_mask_x"], inp.x, 0))


def test_resprop_equals_float_policy(steps):
    """S, nnz, the controller step, and dX/dW with the reused terms equal ReSpropPolicy (adaptive x2)
    on the codes, with the threshold the unit was loaded with."""
    trace, inp, step = steps("resprop")
    pol = trace.records[0].layers["conv2"].policy
    y, dx, dw, layer, policy = golden_layer(
        inp, ReSpropPolicy, inp.dy, reuse_sparsity=float(pol["reuse_sparsity"]), threshold_mode="adaptive_x2",
        nz_margin=float(pol["nz_margin"]), warmup=False)
    assert policy.target_nz_percent() * 100 == inp.resprop_target_cp
    check_forward_backward(step, inp, y, dx, dw)
    s = as_int(layer.last_capture["S"])
    assert torch.equal(step.dy_g, s) and step.resprop_nnz == int((s != 0).sum())
    assert policy.threshold == threshold_value(inp.resprop_load[0], step.resprop_exp_after)
    # The reused terms the host adds are the policy's preGX / preGW.
    g = ConvGeometry(inp.stride, inp.padding)
    p1 = inp.p[None].to(torch.float64)
    xf, wf = inp.x.to(torch.float64), inp.w.to(torch.float64)
    assert torch.equal(step.pre_gx, as_int(g.bwi(p1, wf, torch.Size((1, *inp.x.shape[1:])))))
    assert torch.equal(step.pre_gw, as_int(g.bww(xf.sum(dim=0, keepdim=True), p1, inp.w.shape)))


@pytest.mark.parametrize("algo", ["dense", "relu_mask"])
def test_quantized_step_is_within_bound_of_float_layer(steps, algo):
    """Against the float layer on the real (float) trace tensors: dW (raw) within the contract's
    quantization bound, and Y (requantized) within that bound plus half a drain step, where unsaturated."""
    trace, inp, step = steps(algo)
    src = inp.source
    t = trace.records[0].layers["conv2"].tensors
    sel, cin, cout = list(src["samples"]), list(src["in_channels"]), list(src["out_channels"])
    xf = t["x"][sel][:, cin].double()
    wf = t["w"][cout][:, cin].double()
    dyf = t["dy"][sel][:, cout].double()
    sx, sw, sdy = inp.scales["x"], inp.scales["w"], inp.scales["dy"]
    assert quantize_symmetric(xf, PARAMS.operand_bits)[1] == sx
    g = ConvGeometry(inp.stride, inp.padding)
    n, _, p, q = inp.dy.shape
    c, r, s = inp.w.shape[1:]
    # Per output: sum over Kred products of (a + ea)(b + eb) - ab, |ea| <= sa/2, |eb| <= sb/2.
    kred = n * p * q
    bound_w = kred * (sx * float(dyf.abs().max()) + sdy * float(xf.abs().max())) / 2 + kred * sx * sdy / 4
    err_w = float((step.dw.double() * sx * sdy - g.bww(xf, dyf, wf.shape)).abs().max())
    assert err_w <= bound_w, (err_w, bound_w)
    kred = c * r * s
    bound_y = kred * (sx * float(wf.abs().max()) + sw * float(xf.abs().max())) / 2 + kred * sx * sw / 4
    unit = sx * sw * (1 << inp.fwd_shift)
    z = requantize(as_int(g.fwd(inp.x.double(), inp.w.double())), inp.fwd_shift, PARAMS.operand_bits)
    ok = z.abs() < qmax(PARAMS.operand_bits)
    err_y = ((z.double() * unit - g.fwd(xf, wf)).abs())[ok]
    assert torch.equal(step.a, z.clamp(min=0))
    assert float(err_y.max()) <= bound_y + unit / 2, (float(err_y.max()), bound_y + unit / 2)
    print(f"{algo}: dW err {err_w:.3g} <= {bound_w:.3g}; Y err {float(err_y.max()):.3g} <= {bound_y + unit / 2:.3g}")


def test_bwi_drain_prunes_the_gradient_on_the_result_path(steps):
    """Dai et al. where the gradient is produced: conv2's BWI on real trace codes drains dX (the
    previous layer's dY) pruned on the core's result path. The RTL equals ref tile for tile; ref
    equals ``prune_codes`` of the unpruned dX in drain order; and the RTL's sum of |g| gives the
    tau the unit would compute for that tensor (the previous-tau mode closes on chip)."""
    _, inp, _ = steps("stochastic_prune")
    b, f = PARAMS.operand_bits, PARAMS.prune_frac_bits
    lowered = lower_pass("conv2d", "bwi", dy=inp.dy, w=inp.w, x_shape=tuple(inp.x.shape), stride=inp.stride,
                         padding=inp.padding, a_format="bitmap", b_format="dense", tiles=PARAMS.tiles,
                         acc_bits=PARAMS.acc_bits, drain=Drain(0, inp.bwi_shift, b, "half_away"))
    plain = evaluate(lowered.program)
    dx = lowered.reassemble(plain.output)
    tau = tau_fixed(dx, inp.prune_c_fixed, f)
    seed = 0x5A
    print(f"tau={tau} lfsr seed={seed:#x} stall={STALL}")
    assert 0 < tau <= qmax(b)
    program = dataclasses.replace(
        lowered.program,
        commands=tuple(dataclasses.replace(c, prune=True) if isinstance(c, Drain) else c
                       for c in lowered.program.commands),
        prune=PruneSetting(tau, seed, CONFIG.lfsr_width, CONFIG.lfsr_taps))
    want = evaluate(program)
    run = run_core_amaranth(program, CONFIG, seed=seed, stall=STALL)
    for got, exp in zip(run.tiles, want.tiles, strict=True):
        assert torch.equal(got, exp)
    for got, exp in zip(run.masks, want.masks, strict=True):
        assert torch.equal(got, exp)
    # ref's pruned tiles are prune_codes of the unpruned tiles, one draw per drained element in order.
    lfsr = GaloisLFSR(CONFIG.lfsr_width, CONFIG.lfsr_taps, seed)
    for tile, unpruned in zip(want.tiles, plain.tiles, strict=True):
        draws = lfsr.draw_many(unpruned.numel())
        assert torch.equal(tile, prune_codes(unpruned, tau, draws, operand_bits=b, lfsr_width=CONFIG.lfsr_width))
    assert not torch.equal(torch.stack(want.tiles), torch.stack(plain.tiles))
    assert run.prune_sum == want.prune_sum == int(dx.abs().sum())
    n = dx.numel()
    assert inp.prune_c_fixed * run.prune_sum // (n << f) == tau


def test_resprop_difference_on_the_result_path_equals_the_unit(steps):
    """ReSprop where the gradient is drained, on the digits trace's own codes: conv2's dY and the
    stored sample P the policy kept, with its threshold and target. dY enters the accumulators
    through an identity GEMM (in a layer chain it is the next layer's BWI drain) and drains with
    ``resprop``. ref's S, nonzero count and exponent after the x2 / /2 step equal the ReSprop
    unit's (the layer step's ``dy_g``, ``resprop_nnz``, ``resprop_exp_after``); the RTL equals ref
    tile for tile and in both counts, and the P it stores, read back after the next load, is the
    chosen sample's dY."""
    _, inp, step = steps("resprop")
    assert inp.p is not None
    b = PARAMS.operand_bits
    n, k, hh, ww = inp.dy.shape
    dy_rows = inp.dy.permute(0, 2, 3, 1).reshape(n * hh * ww, k)   # output-matrix layout: rows (n, h, w)
    p_rows = inp.p.permute(1, 2, 0).reshape(hh * ww, k)
    mant, exp = inp.resprop_load
    j = inp.resprop_sample
    setting = ReSpropSetting(p_rows, n, j, mant, exp, inp.resprop_target_cp)
    assert setting.threshold == effective_threshold(mant, exp, b) == step.resprop_thr_used
    print(f"N={n} R={hh * ww} C={k} threshold={mant}*2**{exp} target={inp.resprop_target_cp} sample={j} "
          f"stall={STALL}")
    program = lower_gemm(dy_rows, torch.eye(k, dtype=torch.int64), tiles=PARAMS.tiles, acc_bits=PARAMS.acc_bits,
                         drain=Drain(0, 0, b, resprop=True), resprop=setting)
    want = evaluate(program)
    s = want.output.reshape(n, hh, ww, k).permute(0, 3, 1, 2)
    assert torch.equal(s, step.dy_g) and want.resprop_nnz == step.resprop_nnz
    assert want.resprop_exp_after == step.resprop_exp_after != exp
    assert 0 < want.resprop_nnz < int((inp.dy != 0).sum())
    run = run_core_amaranth(program, CONFIG, seed=7, stall=STALL)
    for got, exp, got_mask, exp_mask in zip(run.tiles, want.tiles, run.masks, want.masks, strict=True):
        assert torch.equal(got, exp) and torch.equal(got_mask, exp_mask)
    assert run.resprop_nnz == want.resprop_nnz and run.resprop_exp_next == want.resprop_exp_after
    assert j < n and torch.equal(run.resprop_p, dy_rows[j * hh * ww:(j + 1) * hh * ww])


def test_bitmap_codec_commands_on_the_rtl_equal_ref(steps):
    """BitmapEncode / BitmapDecode on the codec RTL (random stalls) equal the contract, on real
    trace vectors (rows of zero_skip's dY, conv2) and on random ones with an all-zero and a full vector."""
    _, inp, _ = steps("zero_skip")
    k = PARAMS.tile_k
    flat = inp.dy.flatten()
    trace = flat[:flat.numel() // k * k].reshape(-1, k)[:12]
    gen = torch.Generator().manual_seed(77)
    q = 1 << (PARAMS.operand_bits - 1)
    rand = torch.randint(-q, q, (6, k), generator=gen) * (torch.rand(6, k, generator=gen) < 0.4)
    rand[0], rand[1] = 0, torch.randint(1, q, (k,), generator=gen)
    backend = RtlBackend(CONFIG, seed=78, stall=STALL)
    print(f"trace vectors {tuple(trace.shape)}, random seed 77, rtl seed 78, stall={STALL}")
    for vectors in (trace, rand):
        assert 0 < int((vectors != 0).sum()) < vectors.numel()
        want = evaluate_unit(BitmapEncode(vectors), PARAMS)
        got = backend.unit(BitmapEncode(vectors))
        assert torch.equal(got.bitmap, want.bitmap) and torch.equal(got.values, want.values)
        assert torch.equal(backend.unit(BitmapDecode(want)), vectors)


def test_encoder_output_is_the_cores_operand_stream(steps):
    """The beats the bitmap encoder makes for a real BWI program's compressed operands are, beat
    for beat, what the core's data stream defines (``encode_program``)."""
    _, inp, _ = steps("zero_skip")
    lowered = lower_pass("conv2d", "bwi", dy=inp.dy, w=inp.w, x_shape=tuple(inp.x.shape), stride=inp.stride,
                         padding=inp.padding, a_format="bitmap", b_format="dense", tiles=PARAMS.tiles,
                         acc_bits=PARAMS.acc_bits, drain=Drain(0, inp.bwi_shift, PARAMS.operand_bits, "half_away"))
    enc = encode_program(truncate_program(lowered.program, 2), CONFIG)
    assert enc.compressed
    beats = RtlBackend(CONFIG, seed=79, stall=STALL).encode_vectors([list(c) for _, _, c in enc.compressed])
    for (first, count, _), got in zip(enc.compressed, beats, strict=True):
        assert got == list(enc.data[first:first + count])


def test_swat_stored_threshold_keeps_on_the_result_path(steps):
    """SWAT between recomputations keeps |v| >= the stored threshold. With A's own recomputed
    threshold stored (SWAT's K-th largest magnitude, ``ref.topk_codes.select_threshold``), the FWD
    drain's keep bits from the core's result path equal the top-K unit's mask of A
    (``apply_threshold``) and keep at least K; the RTL chain equals the reference chain, and every
    other intermediate equals the step without the stored threshold."""
    _, inp, want = steps("swat")
    codes = want.a.flatten().tolist()
    k = keep_count(inp.topk_keep, len(codes))
    thr = select_threshold(codes, k, operand_bits=CONFIG.operand_bits)
    print(f"A: {len(codes)} codes, keep {inp.topk_keep:.2f} -> K = {k}, threshold {thr}")
    stored = dataclasses.replace(inp, a_topk_threshold=thr)
    ref_step = layer_step(stored, PARAMS)
    unit_mask, _ = apply_threshold(codes, thr)
    assert ref_step.a_keep.flatten().tolist() == unit_mask
    assert k <= int(ref_step.a_keep.sum()) < ref_step.a_keep.numel()
    for f in dataclasses.fields(LayerStep):
        if f.name != "a_keep":
            w, g = getattr(want, f.name), getattr(ref_step, f.name)
            assert (torch.equal(w, g) if isinstance(w, torch.Tensor) else w == g), f.name
    got, _ = run_layer_chain(stored, CONFIG, seed=120, stall=STALL)
    print("RTL chain seed=120")
    assert_steps_equal(got, ref_step)


def test_stored_threshold_is_swat_only_and_fits_the_comparator(steps):
    _, inp, _ = steps("swat")
    with pytest.raises(ValueError, match="a_topk_threshold must be None or, for swat"):
        dataclasses.replace(inp, algo="dense", a_topk_threshold=3)
    with pytest.raises(ValueError, match="a_topk_threshold = 16, but the result path compares operand_bits = 4"):
        layer_step(dataclasses.replace(inp, a_topk_threshold=16), PARAMS)
