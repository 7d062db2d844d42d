"""Programs from captured training traces (ref.contract.trace_programs) against torch.

For every algorithm and every pass the test rebuilds, from the raw trace tensors and its own table
of what each policy feeds the GEMM, the quantized operands, and computes the pass with torch in
float64 on those integer codes (exact: 8-bit codes and reductions of at most a few thousand terms
keep every partial sum far below 2**53). The evaluated program must equal that exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ref.contract import Drain, TileGemm, evaluate, make_digits_trace, trace_programs, truncate_program
from ref.contract.trace_programs import TracePass
from ref.numerics import quantize_symmetric
from ref.policies import ALGOS
from ref.traces import Trace, load_trace

SEED = 0
BITS = 8
# GEMM formats (a, b) per layer policy and pass, from docs/contract.md ("Which operand each policy
# sends as a bitmap"); written out here rather than derived from the policies' skips.
B, D = "bitmap", "dense"
FORMATS = {
    "dense": {"fwd": (D, D), "bwi": (D, D), "bww": (D, D)},
    "relu_mask": {"fwd": (B, D), "bwi": (B, D), "bww": (B, B)},
    "zero_skip": {"fwd": (B, D), "bwi": (B, D), "bww": (D, B)},
    "stochastic_prune": {"fwd": (B, D), "bwi": (B, D), "bww": (B, B)},
    "resprop": {"fwd": (D, D), "bwi": (B, D), "bww": (B, D)},
    "swat": {"fwd": (D, B), "bwi": (D, B), "bww": (D, B)},
}
# Layers the registry keeps dense: SWAT's first layer (uniform allocation), ReSprop's linear layer.
LAYER_POLICY = {"swat": {"conv1": "dense"}, "resprop": {"fc": "dense"}}
LAYERS = ("conv1", "conv2", "conv3", "fc")


@pytest.fixture(scope="session")
def digits_trace(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Trace]:
    """Trace of one algorithm, trained and captured once per session (per xdist worker) on first use."""
    root = tmp_path_factory.mktemp("traces")
    cache: dict[str, Trace] = {}

    def get(algo: str) -> Trace:
        if algo not in cache:
            print(f"make_digits_trace(algo={algo!r}, seed={SEED})")
            cache[algo] = load_trace(make_digits_trace(root / algo, algo=algo, seed=SEED))
        return cache[algo]

    return get


def _q(t: torch.Tensor) -> torch.Tensor:
    return quantize_symmetric(t, BITS)[0]


def _zero_where_not(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, t, torch.zeros((), dtype=t.dtype))


def _expected_operands(policy: str, pass_: str, t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the layer policy feeds the pass (ref/policies), quantized per tensor."""
    x, w, dy = t["x"], t["w"], t["dy"]
    if policy == "swat":
        w = _zero_where_not(w, t["swat_mask_w"])
        if pass_ == "bww":
            x = _zero_where_not(x, t["swat_mask_x"])
    if policy == "stochastic_prune":
        dy = t["dy_pruned"]
    if policy == "resprop":
        dy = t["S"]
    ops = {"fwd": {"x": x, "w": w}, "bwi": {"dy": dy, "w": w}, "bww": {"x": x, "dy": dy}}[pass_]
    return {k: _q(v) for k, v in ops.items()}


def _torch_pass(kind: str, pass_: str, ops: dict[str, torch.Tensor], x_shape: torch.Size, w_shape: torch.Size,
                stride: int, padding: int) -> torch.Tensor:  # fmt: skip
    f = {k: v.double() for k, v in ops.items()}
    if kind == "linear":
        out = {"fwd": lambda: f["x"] @ f["w"].t(), "bwi": lambda: f["dy"] @ f["w"],
               "bww": lambda: f["dy"].t() @ f["x"]}[pass_]()  # fmt: skip
    elif pass_ == "fwd":
        out = F.conv2d(f["x"], f["w"], None, stride, padding)
    elif pass_ == "bwi":
        out = torch.nn.grad.conv2d_input(x_shape, f["w"], f["dy"], stride, padding)
    else:
        out = torch.nn.grad.conv2d_weight(f["x"], w_shape, f["dy"], stride, padding)
    return out.to(torch.int64)


@pytest.mark.parametrize("algo", ALGOS)
def test_every_pass_equals_torch(algo: str, digits_trace: Callable[[str], Trace]) -> None:
    trace = digits_trace(algo)
    rec = trace.records[0]
    assert rec.iteration == 1
    tps = trace_programs(trace, tile_m=8, tile_n=8, tile_k=8, operand_bits=BITS, acc_bits=32)
    # The first layer's BWI is not run in training (its input is the image), so it is not lowered.
    want = [(lay, p) for lay in LAYERS for p in ("fwd", "bwi", "bww") if (lay, p) != ("conv1", "bwi")]
    assert [(tp.layer, tp.pass_) for tp in tps] == want
    for tp in tps:
        lay = rec.layers[tp.layer]
        t = lay.tensors
        policy = LAYER_POLICY.get(algo, {}).get(tp.layer, algo)
        assert (tp.algo, tp.policy, tp.iteration) == (algo, policy, 1)
        assert (tp.a_format, tp.b_format) == FORMATS[policy][tp.pass_], (tp.layer, tp.pass_)
        ops = _expected_operands(policy, tp.pass_, t)
        assert tp.operands.keys() == ops.keys()
        for k, v in ops.items():
            assert torch.equal(tp.operands[k], v), (tp.layer, tp.pass_, k, tp.sources[k])
        mask = t.get("relu_mask_x") if (policy == "relu_mask" and tp.pass_ == "bwi") else None
        assert (tp.out_mask is None) == (mask is None)
        if mask is not None:
            assert torch.equal(tp.out_mask, mask)
        want_out = _torch_pass(tp.kind, tp.pass_, ops, t["x"].shape, t["w"].shape, lay.stride, lay.padding)
        if mask is not None:
            want_out = _zero_where_not(want_out, mask)
        assert not tp.truncated
        res = evaluate(tp.program)
        assert torch.equal(tp.reassemble(res.output), want_out), (tp.layer, tp.pass_)
        assert torch.equal(tp.reference, want_out)
        assert all(torch.equal(a, b) for a, b in zip(res.tiles, tp.expected_tiles, strict=True))
        # Bitmap operands carry exactly the zeros of the quantized tensors.
        for g in tp.program.commands:
            if isinstance(g, TileGemm):
                assert g.a.format == tp.a_format and g.b.format == tp.b_format
    print(algo, {f"{tp.layer}.{tp.pass_}": tp.sources for tp in tps if set(tp.sources.values()) - {"x", "w", "dy"}})


def test_policy_operands_are_sparse(digits_trace: Callable[[str], Trace]) -> None:
    """The trace really holds the policies' sparsity (quantized nonzero fractions at 8 bits)."""

    def nz(tp: TracePass, arg: str) -> float:
        return float((tp.operands[arg] != 0).double().mean())

    by = {algo: {(tp.layer, tp.pass_): tp for tp in trace_programs(digits_trace(algo), tile_m=16, tile_n=16, tile_k=16,
                                                                     operand_bits=BITS, acc_bits=32, max_gemms=1)}
          for algo in ("swat", "resprop", "relu_mask")}  # fmt: skip
    for lay in ("conv2", "conv3", "fc"):
        assert nz(by["swat"][lay, "fwd"], "w") <= 0.11  # top-10 % weights (ties may keep a few more)
        assert nz(by["swat"][lay, "bww"], "x") <= 0.11
        assert by["relu_mask"][lay, "bwi"].out_mask is not None
    for lay in ("conv1", "conv2", "conv3"):
        # Quantile threshold (make_digits_trace's resprop options): at most 10 % of S is nonzero.
        assert nz(by["resprop"][lay, "bww"], "dy") <= 0.10
        assert by["resprop"][lay, "bww"].sources["dy"] == "S"
    assert by["resprop"]["fc", "bww"].sources["dy"] == "dy"  # linear layer dense


def _cmd_key(c: TileGemm | Drain) -> object:
    """A command by value (TileGemm compares by identity)."""
    if isinstance(c, Drain):
        return c
    mask = None if c.out_mask is None else c.out_mask.tolist()
    return (c.acc, c.accumulate, c.a.format, c.b.format, c.a.to_dense().tolist(), c.b.to_dense().tolist(), mask)


def test_truncated_programs_with_requantizing_drain(digits_trace: Callable[[str], Trace]) -> None:
    trace = digits_trace("relu_mask")
    drain = Drain(acc=0, shift=6, out_bits=8, rounding="half_even", relu=True)
    kw = {"tile_m": 5, "tile_n": 3, "tile_k": 7, "operand_bits": BITS, "acc_bits": 32, "drain": drain}
    full = {(tp.layer, tp.pass_): tp for tp in trace_programs(trace, layers=["conv2", "fc"], **kw)}
    cut = trace_programs(trace, layers=["conv2", "fc"], max_gemms=3, **kw)
    assert len(cut) == len(full) == 6
    for tp in cut:
        ref = full[tp.layer, tp.pass_]
        assert tp.truncated and tp.n_tiles == 3 and tp.full_tiles == ref.full_tiles > 3
        p, q = tp.program, ref.program
        n = len(p.commands)
        assert [_cmd_key(c) for c in p.commands] == [_cmd_key(c) for c in q.commands[:n]]
        assert isinstance(p.commands[-1], Drain)
        assert p.output_shape == q.output_shape and p.drain_regions == q.drain_regions[:3]
        assert all((d.shift, d.out_bits, d.rounding, d.relu) == (6, 8, "half_even", True)
                   for d in p.commands if isinstance(d, Drain))  # fmt: skip
        res = evaluate(p)
        assert len(res.tiles) == 3
        assert all(torch.equal(a, b) for a, b in zip(res.tiles, tp.expected_tiles, strict=True))
        assert all(torch.equal(a, b) for a, b in zip(res.tiles, ref.expected_tiles[:3], strict=True))
    # truncate_program directly: more tiles than exist keeps the program whole.
    q = full["fc", "fwd"].program
    assert truncate_program(q, 10**6).commands == q.commands


def test_one_accumulator_buffer(digits_trace: Callable[[str], Trace]) -> None:
    """``acc_buffers = 1`` (a core with ``accumulators = 1``, issue 19): every command of every pass
    uses accumulator 0 and the tiles still equal the pass's expected tiles."""
    tps = trace_programs(digits_trace("dense"), layers=["conv2"], tile_m=8, tile_n=8, tile_k=8, operand_bits=BITS,
                         acc_bits=32, max_gemms=3, acc_buffers=1)  # fmt: skip
    for tp in tps:
        assert {c.acc for c in tp.program.commands} == {0}
        res = evaluate(tp.program)
        assert all(torch.equal(a, b) for a, b in zip(res.tiles, tp.expected_tiles, strict=True))


def test_narrow_accumulator_wraps_like_the_reference(digits_trace: Callable[[str], Trace]) -> None:
    """acc_bits = 12 < 2*8 + log2(K): the accumulators wrap; expected tiles wrap the exact reference."""
    trace = digits_trace("dense")
    tps = trace_programs(trace, layers=["conv3"], tile_m=8, tile_n=8, tile_k=8, operand_bits=BITS, acc_bits=12,
                         max_gemms=4)  # fmt: skip
    wrapped = False
    for tp in tps:
        res = evaluate(tp.program)
        assert all(torch.equal(a, b) for a, b in zip(res.tiles, tp.expected_tiles, strict=True))
        wrapped |= bool((tp.reference_matrix().abs() >= 2**11).any())
    assert wrapped


def test_options_and_errors(digits_trace: Callable[[str], Trace], tmp_path: Path) -> None:
    trace = digits_trace("dense")
    kw = {"tile_m": 16, "tile_n": 16, "tile_k": 16, "operand_bits": BITS, "acc_bits": 32, "max_gemms": 1}
    tps = trace_programs(trace, passes=("bwi",), first_layer_bwi=True, **kw)
    assert [tp.layer for tp in tps] == list(LAYERS)
    assert [tp.pass_ for tp in trace_programs(trace, passes=("bww", "fwd"), layers=["fc"], **kw)] == ["bww", "fwd"]
    for bad, match in [
        ({"passes": ("fwd", "bwd")}, r"passes must be a non-empty subset of \('fwd', 'bwi', 'bww'\)"),
        ({"passes": ()}, r"passes must be a non-empty subset"),
        ({"layers": ["conv9"]}, r"layers must be names from the trace"),
        ({"iteration_index": 1}, r"iteration_index must be an int in \[0, 1\)"),
        ({"operand_bits": 17}, r"operand_bits must be an int in \[2, 16\]"),
        ({"max_gemms": 0}, r"max_gemms must be None or an int >= 1"),
    ]:
        with pytest.raises(ValueError, match=match):
            trace_programs(trace, **{**kw, **bad})
    with pytest.raises(ValueError, match=r"trace must be a ref\.traces\.Trace"):
        trace_programs(str(tmp_path), **kw)
    with pytest.raises(ValueError, match="max_tiles must be an int >= 1"):
        truncate_program(tps[0].program, 0)
