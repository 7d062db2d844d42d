# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the stochastic pruner against ``ref.stochastic_prune_codes``.

Every output code and every threshold is compared with ``PrunerModel`` (which takes its draws from
``ref.lfsr.GaloisLFSR``), under random input starvation and output backpressure. The statistical
tests check the RTL's own outputs against the pruning rule's expectation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from statistics import NormalDist

import pytest
import torch
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw.stochastic_pruner import PruneMode, StochasticPruner
from ref.lfsr import DEFAULT_TAPS, GaloisLFSR
from ref.numerics import qmax, quantize_symmetric, tau_constant, tau_fixed, to_fixed
from ref.stochastic_prune_codes import PrunerModel, mean_deviation_bound

FRAC_BITS = 12


@dataclass
class Job:
    """One tensor for the unit: row-major codes, its constant, its mode, optional LFSR reseed."""

    codes: list[int]
    c_fixed: int
    mode: str  # "two_pass" | "previous"
    reseed: int | None = None  # reseed the LFSR (through i_seed) before this job


@dataclass
class Run:
    outputs: list[list[int]] = field(default_factory=list)  # per job
    taus: list[int] = field(default_factory=list)  # register after each job
    job_cycles: list[int] = field(default_factory=list)  # cycle of each i_ctrl transfer
    end_cycle: int = 0


def make_unit(bits: int, width: int, *, seed: int = 1, count_bits: int = 16) -> StochasticPruner:
    return StochasticPruner(operand_bits=bits, lfsr_width=width, lfsr_taps=DEFAULT_TAPS[width], lfsr_seed=seed,
                            count_bits=count_bits, frac_bits=FRAC_BITS)


def simulate(unit: StochasticPruner, jobs: list[Job], rng: random.Random, *, idle: float = 0.0,
             stall: float = 0.0) -> Run:
    """Drive ``jobs`` through the unit; ``idle``/``stall``: chance per cycle of valid/ready low."""
    run = Run()
    # The input side as a list of actions; a two-pass tensor is sent twice.
    actions: list[tuple[str, object]] = []
    expect = []
    for j in jobs:
        if j.reseed is not None:
            actions.append(("seed", j.reseed))
        actions.append(("ctrl", j))
        passes = 2 if j.mode == "two_pass" else 1
        actions += [("elem", v) for _ in range(passes) for v in j.codes]
        expect.append(len(j.codes) if j.codes else 0)
    total_out = sum(expect)
    outputs: list[int] = []

    async def bench(ctx):
        pos, cycle, offered = 0, 0, False
        while pos < len(actions) or len(outputs) < total_out:
            kind, value = actions[pos] if pos < len(actions) else (None, None)
            offered = offered or (kind is not None and rng.random() >= idle)
            ready = rng.random() >= stall
            ctx.set(unit.i_seed.valid, offered and kind == "seed")
            ctx.set(unit.i_seed.payload, value if kind == "seed" else 0)
            ctx.set(unit.i_ctrl.valid, offered and kind == "ctrl")
            if kind == "ctrl":
                ctx.set(unit.i_ctrl.payload, {"mode": PruneMode[value.mode.upper()], "n": len(value.codes),
                                              "c_fixed": value.c_fixed})
            ctx.set(unit.i_stream.valid, offered and kind == "elem")
            ctx.set(unit.i_stream.payload, value if kind == "elem" else 0)
            ctx.set(unit.o_stream.ready, ready)
            (_, _, seed_rdy, ctrl_rdy, in_rdy, out_valid, out_payload, tau) = await ctx.tick().sample(
                unit.i_seed.ready, unit.i_ctrl.ready, unit.i_stream.ready, unit.o_stream.valid,
                unit.o_stream.payload, unit.tau)
            if out_valid and ready:
                outputs.append(out_payload)
            taken = {"seed": seed_rdy, "ctrl": ctrl_rdy, "elem": in_rdy}.get(kind, False)
            if offered and taken:
                if kind == "ctrl":
                    run.job_cycles.append(cycle)
                    if run.job_cycles[:-1]:
                        run.taus.append(tau)  # the register after the previous job
                pos += 1
                offered = False
            cycle += 1
            assert cycle < 50 * (len(actions) + 10), "the unit stopped making progress"
        # Wait for the last job's threshold (the divider runs after the last element).
        while True:
            ctx.set(unit.i_ctrl.valid, 0)
            _, _, ctrl_rdy, tau = await ctx.tick().sample(unit.i_ctrl.ready, unit.tau)
            cycle += 1
            if ctrl_rdy:
                run.taus.append(tau)
                run.end_cycle = cycle
                break

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    start = 0
    for count in expect:
        run.outputs.append(outputs[start:start + count])
        start += count
    return run


def model_run(unit: StochasticPruner, jobs: list[Job]) -> tuple[list[list[int]], list[int]]:
    lfsr = GaloisLFSR(unit.lfsr_width, unit.lfsr_taps, unit.lfsr_seed)
    model = PrunerModel(operand_bits=unit.operand_bits, lfsr=lfsr)
    outs, taus = [], []
    for j in jobs:
        if j.reseed:
            lfsr.state = j.reseed  # the next draw is GaloisLFSR(seed=reseed)'s first
        out, _ = model.run(torch.tensor(j.codes, dtype=torch.int64), c_fixed=j.c_fixed, frac_bits=FRAC_BITS,
                           mode=j.mode)
        outs.append(out.tolist())
        taus.append(model.tau)
    return outs, taus


def check(unit: StochasticPruner, jobs: list[Job], seed: int, *, idle: float, stall: float) -> Run:
    run = simulate(unit, jobs, random.Random(seed), idle=idle, stall=stall)
    outs, taus = model_run(unit, jobs)
    assert run.taus == taus
    for i, (got, want) in enumerate(zip(run.outputs, outs, strict=True)):
        first = next((k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
        assert got == want, f"job {i} ({jobs[i].mode}): {len(got)}/{len(want)} codes, first difference at {first}"
    return run


def c_of(p: float, rule: str = "mean_abs") -> int:
    return to_fixed(tau_constant(p, rule), FRAC_BITS)


def random_tensor(rng: random.Random, bits: int, n: int) -> list[int]:
    """Small-magnitude-heavy codes (many ties with tau), zeros and the most negative code."""
    low, high = -(1 << (bits - 1)), qmax(bits)
    kind = rng.choice(["laplace", "uniform", "sparse"])
    out = []
    for _ in range(n):
        if kind == "uniform":
            v = rng.randint(low, high)
        else:
            v = round(rng.expovariate(1.0) * rng.choice([1, 2, 4])) * rng.choice([-1, 1])
            if kind == "sparse" and rng.random() < 0.5:
                v = 0
        if rng.random() < 0.02:
            v = low
        out.append(max(low, min(high, v)))
    return out


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("bits,width", [(4, 8), (8, 16)])
def test_random_tensors_both_modes_under_stalls(bits, width, seed):
    print(f"seed={seed}")
    rng = random.Random(seed)
    unit = make_unit(bits, width)
    constants = [c_of(0.5), c_of(0.9), c_of(0.99, "normal"), 1 << FRAC_BITS, 0, (1 << (FRAC_BITS + 4)) - 1]
    jobs = [Job(random_tensor(rng, bits, rng.randint(1, 40)), rng.choice(constants),
                rng.choice(["two_pass", "previous"])) for _ in range(14)]
    check(unit, jobs, seed, idle=0.3, stall=0.4)


def test_edge_tensors(capsys):
    """All-zero, all-equal (tau > qmax: the clamp), most negative code, tau = 0 and c_fixed = 0."""
    bits = 8
    low = -(1 << (bits - 1))
    unit = make_unit(bits, 16)
    one = 1 << FRAC_BITS
    jobs = [
        Job([5, -3, 0, 7], 0, "previous"),  # reset tau = 0: bypass, no draws
        Job([0] * 9, c_of(0.9), "two_pass"),  # sum 0 -> tau 0: bypass
        Job([100] * 6 + [-100] * 6, 2 * one, "two_pass"),  # tau = 200 > qmax = 127: +-127 or 0
        Job([low, 127, low, -1, 0, 1], c_of(0.9, "normal"), "two_pass"),
        Job([low] * 5, one, "two_pass"),  # |g| = tau = 128: ties, all passed unchanged
        Job([low] * 5 + [3, -3], one, "previous"),  # tau 128 from the job before
        Job([1, -2, 3], 0, "previous"),  # pruned with the previous tau; then tau = 0
        Job([9, -9], c_of(0.9), "previous"),  # tau = 0: bypass
        Job([], c_of(0.9), "previous"),  # n = 0: ignored
        Job([4, 4, 4, 4], one, "two_pass"),  # all equal, tau == |g|: unchanged
    ]
    run = check(unit, jobs, 0, idle=0.2, stall=0.2)
    # Rule-level facts, independent of the model:
    assert run.outputs[0] == [5, -3, 0, 7] and run.outputs[1] == [0] * 9
    assert set(run.outputs[2]) <= {0, 127, -127} and run.taus[2] == 200
    assert run.outputs[4] == [low] * 5 and run.outputs[9] == [4] * 4
    assert run.outputs[7] == [9, -9] and run.outputs[8] == []


def test_drop_ties_are_kept():
    """|g| * 2**w == d * tau exactly: the rule drops only on '<', so the element becomes tau*sign(g)."""
    bits, width = 8, 8
    unit = make_unit(bits, width)
    one = 1 << FRAC_BITS
    # Job 0 sets tau = 16 (previous mode, bypassed itself). Job 1 is pruned with tau = 16 and draws
    # the LFSR's first 255 draws (a full period, so every d divisible by 16 occurs).
    draws = GaloisLFSR(width, DEFAULT_TAPS[width], 1).draw_many(255)
    rng = random.Random(7)
    codes, ties = [], []
    for i, d in enumerate(int(x) for x in draws):
        if d % 16 == 0:  # g = d * 16 / 256 is an integer: an exact tie
            codes.append(rng.choice([-1, 1]) * d // 16)
            ties.append(i)
        else:
            codes.append(rng.randint(-20, 20))
    assert len(ties) == 15
    run = check(unit, [Job([16] * 4, one, "previous"), Job(codes, one, "previous")], 3, idle=0.1, stall=0.3)
    assert all(run.outputs[1][i] == 16 * (1 if codes[i] > 0 else -1) for i in ties)


def test_latency_and_throughput():
    """No stalls: one element per cycle; per tensor n + b + 5 (previous) and 2n + b + 5 (two-pass)."""
    bits, n = 8, 37
    unit = make_unit(bits, 16)
    codes = list(range(-18, 19))
    jobs = [Job(codes, 1 << FRAC_BITS, "previous"), Job(codes, 1 << FRAC_BITS, "two_pass"),
            Job(codes, 1 << FRAC_BITS, "previous")]
    run = check(unit, jobs, 0, idle=0.0, stall=0.0)
    gaps = [b - a for a, b in zip(run.job_cycles, [*run.job_cycles[1:], run.end_cycle - 1], strict=True)]
    assert gaps == [n + bits + 5, 2 * n + bits + 5, n + bits + 5]


@pytest.fixture(scope="module")
def digits_dy(tmp_path_factory):
    """dY of every layer of a real digits training iteration (stochastic_prune policy, 16-bit LFSR)."""
    from ref.contract.trace_programs import make_digits_trace
    from ref.traces import load_trace

    print("make_digits_trace(algo='stochastic_prune', seed=0)")
    trace = load_trace(make_digits_trace(tmp_path_factory.mktemp("trace"), algo="stochastic_prune", seed=0))
    return trace.records[0].layers


@pytest.mark.parametrize("layer", ["fc", "conv2"])
def test_digits_dy(digits_dy, layer):
    """A real quantized dY, with the LFSR reseeded to the policy's own state for that layer."""
    rec = digits_dy[layer]
    assert rec.policy["lfsr_width"] == 16 and rec.policy["lfsr_taps"] == DEFAULT_TAPS[16]
    q, _ = quantize_symmetric(rec.tensors["dy"], 8)
    codes = q.flatten().tolist()
    c = to_fixed(rec.policy["c"], FRAC_BITS)
    unit = make_unit(8, 16, count_bits=16)
    jobs = [Job(codes, c, "two_pass", reseed=int(rec.scalars["lfsr_state_before"]))]
    if layer == "fc":  # the small one: also previous mode after it, stalled
        jobs.append(Job(codes, c, "previous"))
        run = check(unit, jobs, 4, idle=0.3, stall=0.3)
    else:
        run = check(unit, jobs, 4, idle=0.0, stall=0.0)
    assert run.taus[0] == tau_fixed(q, c, FRAC_BITS) > 0
    zeros = sum(v == 0 for v in run.outputs[0]) / len(codes)
    zeros_in = float((q == 0).double().mean())
    print(f"{layer}: n={len(codes)} tau={run.taus[0]} zero fraction {zeros:.3f} (input {zeros_in:.3f})")
    # The LFSR drew once per element, as the policy did for this layer (same draw count).
    lfsr = GaloisLFSR(16, DEFAULT_TAPS[16], int(rec.scalars["lfsr_state_before"]))
    lfsr.draw_many(len(codes))
    assert lfsr.state == int(rec.scalars["lfsr_state_after"])


# -- statistics of the RTL's own outputs ------------------------------------------------------------

def interleaved(values: list[int], repeats: int) -> list[int]:
    return [values[i % len(values)] for i in range(len(values) * repeats)]


def test_full_period_keep_counts_are_exact():
    """8-bit LFSR: element i gets draw i; K values interleaved over K * 255 elements, gcd(K, 255) = 1,
    so each value meets every draw 1..255 exactly once. Then the number kept is exactly
    #{d : d * tau <= |g| * 256} = floor(|g| * 256 / tau), and the mean output tau * that / 255
    differs from g by less than tau / 255 (the discrete-uniform bias; |g| < tau).
    """
    bits, width = 8, 8
    unit = make_unit(bits, width)
    tau = 100
    values = [1, -5, 17, 33, -50, 64, 99]  # K = 7, coprime to 255
    assert math.gcd(len(values), 255) == 1
    codes = interleaved(values, 255)
    run = check(unit, [Job([tau] * 3, 1 << FRAC_BITS, "previous"), Job(codes, 1 << FRAC_BITS, "previous")],
                5, idle=0.1, stall=0.1)
    outs = run.outputs[1]
    for k, g in enumerate(values):
        mine = outs[k::len(values)]
        assert set(mine) <= {0, tau * (1 if g > 0 else -1)}
        kept = sum(v != 0 for v in mine)
        assert kept == abs(g) * 256 // tau
        mean = sum(mine) / len(mine)
        assert abs(mean - g) < tau / 255


def unbiased_failures(samples: dict[int, list[int]], tau: int, width: int, z: float) -> list[str]:
    """Values whose sample mean is further from g than ``mean_deviation_bound`` allows."""
    failures = []
    for g, outs in samples.items():
        bound = mean_deviation_bound(g, tau, lfsr_width=width, count=len(outs), z=z)
        mean = sum(outs) / len(outs)
        if abs(mean - g) > bound:
            failures.append(f"g={g}: mean {mean:.3f} off by {abs(mean - g):.3f} > {bound:.3f}")
    return failures


def test_outputs_are_unbiased_16_bit_lfsr():
    """3000 draws each for g in {3, -20, 45, 90} below tau = 111, 16-bit LFSR (stream order).

    Tolerance: bias bound tau/(2**16 - 1) plus z standard errors, z = 4.0 for each of the 4 values
    (two-sided, treating draws as independent): a false alarm probability below 4 * 6.3e-5. The
    same check on outputs of a deliberately biased rule (u quantized to 3 bits, i.e. a coarse RNG,
    keep probability (floor(8x) + 1) / 8) computed from the very same draws must fail.
    """
    bits, width, tau, per = 8, 16, 111, 3000
    values = [3, -20, 45, 90]
    unit = make_unit(bits, width, seed=0xACE1)
    codes = interleaved(values, per)
    run = simulate(unit, [Job([tau] * 2, 1 << FRAC_BITS, "previous"), Job(codes, 1 << FRAC_BITS, "previous")],
                   random.Random(6), idle=0.0, stall=0.2)
    outs = run.outputs[1]
    z = -NormalDist().inv_cdf(6.3e-5 / 2)
    assert round(z, 1) == 4.0
    samples = {g: outs[k::len(values)] for k, g in enumerate(values)}
    assert unbiased_failures(samples, tau, width, z) == []
    # The check can fail: a coarse-RNG rule on the same draws.
    draws = GaloisLFSR(width, DEFAULT_TAPS[width], 0xACE1).draw_many(len(codes)).tolist()
    coarse = [0 if abs(g) * (1 << width) < ((d >> (width - 3)) << (width - 3)) * tau else (tau if g > 0 else -tau)
              for g, d in zip(codes, draws, strict=True)]
    biased = {g: coarse[k::len(values)] for k, g in enumerate(values)}
    assert len(unbiased_failures(biased, tau, width, z)) >= 2


# -- parameters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "default"])
def test_unit_from_preset(name):
    from hw.config import preset
    from hw.units import build_unit

    config = preset(name)
    unit = build_unit(config, "stochastic_pruner")
    Fragment.get(unit, None)  # elaborates (and so uses) it
    assert (unit.operand_bits, unit.lfsr_width, unit.lfsr_taps, unit.lfsr_seed) == (
        config.operand_bits, config.lfsr_width, config.lfsr_taps, config.lfsr_seed)
    assert unit.tau.shape().width == config.operand_bits + 3
    assert unit.i_ctrl.payload.shape().size == 1 + config.prune_count_bits + config.prune_frac_bits + 4


@pytest.mark.parametrize("field,value,message", [
    ("prune_frac_bits", 33, "config field 'prune_frac_bits': expected an integer in 0..32, got 33"),
    ("prune_count_bits", 0, "config field 'prune_count_bits': expected an integer in 1..32, got 0"),
    ("prune_count_bits", True, "config field 'prune_count_bits': expected an integer in 1..32, got True"),
])
def test_invalid_config_fields(field, value, message):
    from hw.config import ConfigError, StagConfig

    with pytest.raises(ConfigError, match=message):
        StagConfig(name="x", **{field: value})


@pytest.mark.parametrize("kwargs,message", [
    ({"count_bits": 0}, "count_bits must be an integer in 1..32, not 0"),
    ({"frac_bits": -1}, "frac_bits must be an integer in 0..32, not -1"),
    ({"operand_bits": 1}, "operand_bits must be an integer in 2..32, not 1"),
    ({"lfsr_seed": 0}, "seed must be an integer in 1..255, not 0"),
])
def test_invalid_parameters(kwargs, message):
    args = {"operand_bits": 8, "lfsr_width": 8, "lfsr_taps": DEFAULT_TAPS[8], "lfsr_seed": 1, "count_bits": 8,
            "frac_bits": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        StochasticPruner(**args)
