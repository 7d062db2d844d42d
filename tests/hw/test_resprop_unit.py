# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the ReSprop unit against ``ref.resprop_codes.ReSpropCodes``.

Every S code, nnz, threshold and exponent is compared with the reference model, under random
input starvation and output backpressure on all four streams.
"""

from __future__ import annotations

import random
import re

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw import resprop as hw_resprop
from hw.resprop import ReSpropUnit, resprop_command_layout
from ref import resprop_codes
from ref.resprop_codes import ReSpropCodes
from sim.resprop_vectors import ResPropPass, digits_trace_passes, make_resprop_trace, random_passes


def run_unit(unit: ReSpropUnit, passes: list[ResPropPass], rng: random.Random, *, idle: float, stall: float):
    """Drive ``passes`` through the unit; returns (S codes per pass, done beats, s cycles, done cycles)."""
    layout = resprop_command_layout(unit.operand_bits, unit.max_elems, unit.max_batch)
    cmds = [layout.const(p.command()) for p in passes]
    dys = [v for p in passes for v in p.dy]
    total = len(dys)
    s_out: list[int] = []
    s_cycles: list[int] = []
    dones: list[dict[str, int]] = []
    done_cycles: list[int] = []

    async def bench(ctx):
        ci = di = cycle = 0
        cmd_valid = dy_valid = False
        held = None  # o_s payload offered but not taken: must stay until taken
        while len(dones) < len(passes) or len(s_out) < total:
            if not cmd_valid and ci < len(cmds) and rng.random() >= idle:
                cmd_valid = True
            if not dy_valid and di < total and rng.random() >= idle:
                dy_valid = True
            s_ready = rng.random() >= stall
            done_ready = rng.random() >= stall
            ctx.set(unit.i_cmd.valid, cmd_valid)
            ctx.set(unit.i_cmd.payload, cmds[ci] if cmd_valid else layout.const({}))
            ctx.set(unit.i_dy.valid, dy_valid)
            ctx.set(unit.i_dy.payload, dys[di] if dy_valid else 0)
            ctx.set(unit.o_s.ready, s_ready)
            ctx.set(unit.o_done.ready, done_ready)
            _, _, cmd_ready, dy_ready, s_valid, s_pay, d_valid, d_pay = await ctx.tick().sample(
                unit.i_cmd.ready, unit.i_dy.ready, unit.o_s.valid, unit.o_s.payload,
                unit.o_done.valid, unit.o_done.payload)
            if held is not None:
                assert s_valid and s_pay == held, f"o_s changed before its transfer (cycle {cycle})"
            held = None
            if cmd_valid and cmd_ready:
                ci, cmd_valid = ci + 1, False
            if dy_valid and dy_ready:
                di, dy_valid = di + 1, False
            if s_valid:
                if s_ready:
                    s_out.append(s_pay)
                    s_cycles.append(cycle)
                else:
                    held = s_pay
            if d_valid and done_ready:
                dones.append({"nnz": d_pay.nnz, "thr_used": d_pay.thr_used, "thr_exp": d_pay.thr_exp})
                done_cycles.append(cycle)
            cycle += 1
            assert cycle < 20 * (total + 10 * len(passes)) + 200, "the unit stopped making progress"

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    per_pass, k = [], 0
    for p in passes:
        per_pass.append(s_out[k:k + len(p.dy)])
        k += len(p.dy)
    return per_pass, dones, s_cycles, done_cycles


def expected(passes: list[ResPropPass], bits: int, depth: int):
    model = ReSpropCodes(bits, depth)
    return [p.run_on(model) for p in passes]


def check(passes, bits, depth, got_s, got_done):
    for i, (p, want) in enumerate(zip(passes, expected(passes, bits, depth), strict=True)):
        where = f"pass {i} ({p.label})"
        assert len(got_s[i]) == len(want.s), where
        wrong = [k for k, (a, b) in enumerate(zip(got_s[i], want.s, strict=True)) if a != b]
        assert not wrong, f"{where}: S differs at elements {wrong[:5]}"
        assert got_done[i] == {"nnz": want.nnz, "thr_used": want.thr_used, "thr_exp": want.exp_after}, where


@pytest.mark.parametrize("bits,max_elems,max_batch,pass_elems,seed", [
    (4, 16, 4, 16, 1), (8, 32, 8, 32, 2), (3, 1, 2, 1, 3),
    (12, 8, 3, 15, 4),  # samples longer than a P bank: addresses wrap
])
def test_random_passes_equal_ref_under_stalls(bits, max_elems, max_batch, pass_elems, seed):
    print(f"seed={seed}")
    rng = random.Random(seed)
    passes = random_passes(rng, bits, max_elems, max_batch, 40, pass_elems)
    unit = ReSpropUnit(operand_bits=bits, max_elems=max_elems, max_batch=max_batch)
    got_s, got_done, _, _ = run_unit(unit, passes, rng, idle=0.3, stall=0.3)
    check(passes, bits, max_elems, got_s, got_done)
    # The stimulus exercised what it is for: both controller directions, no-change, P reuse, ties.
    results = expected(passes, bits, max_elems)
    before = []
    e = 0
    for p, r in zip(passes, results, strict=True):
        e = p.load[1] if p.load else e
        before.append(e)
        e = r.exp_after
    steps = {r.exp_after - b for p, r, b in zip(passes, results, before, strict=True) if not p.dense}
    assert {-1, 0, 1} <= steps, steps
    reused = [not p.dense and any(v != s for v, s in zip(p.dy, r.s, strict=True))
              for p, r in zip(passes, results, strict=True)]
    assert any(reused)
    assert any(r.thr_used > 0 for r in results)


def test_edge_passes():
    """Empty passes, no stored sample, the most negative code against the most positive P, and
    elements beyond max_elems (addresses wrap)."""
    bits, depth = 4, 4
    lo, hi = -8, 7
    passes = [
        ResPropPass(2, 4, 1, True, 0, (3, 0), (0, 0, 0, 0, hi, hi, hi, lo), "store"),
        ResPropPass(2, 4, 0, False, 5000, None, (lo, lo, hi, 3, lo, 4, 2, hi), "extreme"),  # D = -15 at e=0
        ResPropPass(0, 4, 0, False, 5000, None, (), "no samples"),
        ResPropPass(3, 0, 0, False, 5000, None, (), "no elems"),
        ResPropPass(1, 4, 1, False, 10000, None, (1, 2, 3, 4), "nothing stored"),
        ResPropPass(1, 6, 0, False, 0, (1, -2), (1, 2, 3, 4, 5, 6), "wraps"),
        ResPropPass(1, 4, 0, False, 0, None, (5, 6, 3, 4), "after wrap"),
    ]
    unit = ReSpropUnit(operand_bits=bits, max_elems=depth, max_batch=3)
    got_s, got_done, _, _ = run_unit(unit, passes, random.Random(7), idle=0.2, stall=0.2)
    check(passes, bits, depth, got_s, got_done)
    # Hand-checked anchors (independent of the model): D = lo - hi = -15 needs 5 bits and survives.
    assert got_s[1][0] == -15 and got_s[1][4] == lo - hi
    # By hand: P = (7, 7, 7, -8), T = 3; D = (-15, -15, 0, 11, -15, -3, -5, 15): |D| > 3 keeps 6 of 8,
    # 75 % > 50 % doubles the threshold (exp 0 -> 1, T = 6); the empty pass keeps it.
    assert got_s[1] == [-15, -15, 0, 11, -15, 0, -5, 15]
    assert got_done[1] == {"nnz": 6, "thr_used": 3, "thr_exp": 1}
    assert got_done[2] == {"nnz": 0, "thr_used": 6, "thr_exp": 1}


def test_exponent_saturates():
    bits, depth = 4, 2
    down = [ResPropPass(1, 2, 0, False, 10000, (5, -127) if i == 0 else None, (0, 0), "down") for i in range(3)]
    # mant 0: T = 0 at any exponent, so every D != 0 counts and 0 % target means "more": x2.
    up = [ResPropPass(1, 2, 0, False, 0, (0, 126) if i == 0 else None, dy, "up") for i, dy in
          enumerate(((7, -8), (-8, 7), (7, -8)))]
    unit = ReSpropUnit(operand_bits=bits, max_elems=depth, max_batch=1)
    got_s, got_done, _, _ = run_unit(unit, down + up, random.Random(8), idle=0.0, stall=0.0)
    assert [d["thr_exp"] for d in got_done] == [-128, -128, -128, 127, 127, 127]
    check(down + up, bits, depth, got_s, got_done)


def test_latency_and_throughput():
    """No stalls: S of the dY taken in cycle c is taken in cycle c + 2, one per cycle; back-to-back
    passes of n elements take n + 4 cycles each."""
    n = 24
    passes = [ResPropPass(3, 8, 0, False, 1500, (1, 0), tuple(range(-12, 12)), "a")] * 2
    unit = ReSpropUnit(operand_bits=6, max_elems=8, max_batch=4)
    _, _, s_cycles, done_cycles = run_unit(unit, passes, random.Random(0), idle=0.0, stall=0.0)
    # Command in cycle 0, PREP in 1, first dY in 2, its S in 4.
    assert s_cycles[:n] == list(range(4, 4 + n))
    assert done_cycles[0] == n + 3  # offered with the last S
    assert s_cycles[n] == done_cycles[0] + 5  # next command the cycle after done, then the same
    assert done_cycles[1] - done_cycles[0] == n + 4


def test_digits_trace_two_iterations(tmp_path):
    """dY of conv2 from a real digits training run, steps 1 and 2, quantized to int8."""
    passes, info = digits_trace_passes(make_resprop_trace(tmp_path), 8, layer="conv2", samples=4)
    print(f"trace seed=0 stored samples={info['stored']} scale={info['scale']:.3g}")
    depth = 512
    # The P the unit stores in pass 1 is the one the training run stored (the trace's P of step 2).
    j1 = info["stored"][0]
    assert info["step1_codes"][j1] == info["p2_codes"]
    unit = ReSpropUnit(operand_bits=8, max_elems=depth, max_batch=32)
    got_s, got_done, _, _ = run_unit(unit, passes, random.Random(9), idle=0.1, stall=0.1)
    check(passes, 8, depth, got_s, got_done)
    want = expected(passes, 8, depth)
    # The second pass really reuses P: S != dY, and S == dY - P where kept.
    p = info["p2_codes"]
    assert got_s[1] != list(passes[1].dy)
    assert all(s in (0, v - p[k % depth]) for k, (s, v) in enumerate(zip(got_s[1], passes[1].dy, strict=True)))
    assert 0 < want[1].nnz < len(passes[1].dy)


def test_constants_agree_with_ref():
    assert hw_resprop.EXP_BITS == resprop_codes.EXP_BITS
    assert hw_resprop.PERCENT_SCALE == resprop_codes.PERCENT_SCALE


@pytest.mark.parametrize("kwargs,message", [
    ({"operand_bits": 1, "max_elems": 4, "max_batch": 1}, "operand_bits must be an integer in 2..32, not 1"),
    ({"operand_bits": 8, "max_elems": 6, "max_batch": 1}, "max_elems must be a power of two in 1..2\\*\\*20, not 6"),
    ({"operand_bits": 8, "max_elems": 4, "max_batch": 0}, "max_batch must be an integer in 1..65535, not 0"),
])
def test_invalid_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReSpropUnit(**kwargs)


def test_config_builds_the_unit_and_checks_its_fields():
    from hw.config import ConfigError, StagConfig, preset
    from hw.units import build_unit

    for name in ("tiny", "default"):
        cfg = preset(name)
        unit = build_unit(cfg, "resprop")
        Fragment.get(unit, None)  # elaborates (and so uses) the unit made in hw.units
        assert isinstance(unit, ReSpropUnit)
        assert (unit.operand_bits, unit.max_elems, unit.max_batch) == (
            cfg.operand_bits, cfg.resprop_max_elems, cfg.resprop_max_batch)
    assert preset("default").resprop_max_elems >= 16 * 8 * 8  # the digits CNN's largest conv dY sample
    for field, value, message in [
        ("resprop_max_elems", 48, "config field 'resprop_max_elems': expected a power of two, got 48"),
        ("resprop_max_elems", 0, "config field 'resprop_max_elems': expected an integer in 1..1048576, got 0"),
        ("resprop_max_batch", 65536, "config field 'resprop_max_batch': expected an integer in 1..65535, got 65536"),
        ("resprop_max_batch", True, "config field 'resprop_max_batch': expected an integer"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            StagConfig(name="x", **{field: value})
