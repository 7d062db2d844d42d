# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the top-K threshold unit against ``ref``, with random stalls."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw.config import ConfigError, StagConfig, preset
from hw.topk_threshold import PERIOD_BITS, TopKThresholdUnit
from hw.units import build_unit
from ref.contract.trace_programs import make_digits_trace
from ref.numerics import quantize_symmetric
from ref.policies.swat import channel_mask, topk_mask
from ref.topk_codes import PERIOD_BITS as REF_PERIOD_BITS
from ref.topk_codes import TopKUnitModel, keep_count
from ref.traces import load_trace
from sim.topk_vectors import random_codes


@dataclass
class Job:
    codes: list[int]
    k: int
    slice_len: int = 1
    period: int = 1
    restart: bool = False
    force: bool = False

    def command(self) -> dict[str, int]:
        return {"n": len(self.codes), "k": self.k, "slice_len": self.slice_len, "period": self.period,
                "restart": int(self.restart), "force": int(self.force)}


@dataclass
class Observed:
    values: list[int]
    keeps: list[bool]
    lasts: list[bool]
    threshold: int
    recomputed: bool
    kept: int
    latency: int  # cycles from the command transfer to the status transfer


def run_unit(unit: TopKThresholdUnit, jobs: list[Job], seed: int, *, idle: float = 0.0,
             stall: float = 0.0) -> list[Observed]:
    """Stream ``jobs`` through ``unit`` with random input gaps and output stalls; check stream rules."""
    rngs = [random.Random(f"{seed}:{i}") for i in range(3)]
    total = sum(len(j.codes) for j in jobs)
    outs: list[tuple[int, bool, bool]] = []
    stats: list[tuple[int, bool, int, int]] = []
    cmd_at: list[int] = []
    limit = 40 * total + 1000 * len(jobs)

    async def source(ctx):
        t, rng = 0, rngs[0]
        for job in jobs:
            ctx.set(unit.i_cmd.payload, job.command())
            ctx.set(unit.i_cmd.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(unit.i_cmd.ready)
                t += 1
                if ready:
                    cmd_at.append(t - 1)
                    break
            ctx.set(unit.i_cmd.valid, 0)
            for v in job.codes:
                while idle and rng.random() < idle:
                    ctx.set(unit.i_data.valid, 0)
                    await ctx.tick()
                    t += 1
                ctx.set(unit.i_data.payload, v)
                ctx.set(unit.i_data.valid, 1)
                while True:
                    _, _, ready = await ctx.tick().sample(unit.i_data.ready)
                    t += 1
                    if ready:
                        break
            ctx.set(unit.i_data.valid, 0)

    def sink(port, count, rng, store, convert):
        async def bench(ctx):
            t, pending = 0, None
            while len(store) < count:
                assert t < limit, f"no progress after {t} cycles"
                ready = not (stall and rng.random() < stall)
                ctx.set(port.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                value = convert(payload, t)
                if pending is not None:  # a stream may not withdraw or change an offered beat
                    assert valid and value[:-1] == pending[:-1], f"{port} changed an offered beat at cycle {t}"
                pending = None
                if valid and ready:
                    store.append(value)
                elif valid:
                    pending = value
                t += 1
        return bench

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink(unit.o_data, total, rngs[1], outs,
                           lambda p, t: (p.value, bool(p.keep), bool(p.last), t)))
    sim.add_testbench(sink(unit.o_status, len(jobs), rngs[2], stats,
                           lambda p, t: (int(p.threshold), bool(p.recomputed), int(p.kept), t)))
    sim.run()
    observed, at = [], 0
    for job, (thr, rec, kept, t_status), t_cmd in zip(jobs, stats, cmd_at, strict=True):
        part = outs[at:at + len(job.codes)]
        at += len(job.codes)
        observed.append(Observed([p[0] for p in part], [p[1] for p in part], [p[2] for p in part],
                                 thr, rec, kept, t_status - t_cmd))
    return observed


def check_against_model(unit: TopKThresholdUnit, jobs: list[Job], got: list[Observed]) -> None:
    model = TopKUnitModel(unit.operand_bits, unit.max_elems)
    for i, (job, obs) in enumerate(zip(jobs, got, strict=True)):
        want = model.process(job.codes, job.k, slice_len=job.slice_len, period=job.period,
                             restart=job.restart, force=job.force)
        where = f"tensor {i} (n={len(job.codes)}, k={job.k}, slice_len={job.slice_len})"
        assert obs.values == want.values, where
        assert obs.keeps == want.mask, where
        assert obs.lasts == [False] * (len(job.codes) - 1) + [True], where
        assert (obs.threshold, obs.recomputed, obs.kept) == (want.threshold, want.recomputed, want.kept), where


def random_jobs(rng: random.Random, bits: int, max_elems: int, count: int) -> list[Job]:
    jobs = []
    for _ in range(count):
        slice_len = rng.choice([1, 1, 1, 2, 3, 9])
        items = rng.randint(1, max_elems // slice_len)
        codes = random_codes(rng, items * slice_len, bits, rng.choice(["random", "zeros", "equal", "extreme",
                                                                        "sparse"]))
        keep = rng.choice([1e-6, 0.01, 0.1, 0.5, 0.9, 0.999, 1.0, rng.random()])
        jobs.append(Job(codes, keep_count(keep, items), slice_len, period=rng.choice([0, 1, 2, 3]),
                        restart=rng.random() < 0.2, force=rng.random() < 0.2))
    return jobs


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_random_tensors_equal_model_under_stalls(bits, seed):
    print(f"seed={seed}")
    rng = random.Random(seed * 100 + bits)
    unit = TopKThresholdUnit(operand_bits=bits, max_elems=48)
    jobs = random_jobs(rng, bits, 48, 10)
    check_against_model(unit, jobs, run_unit(unit, jobs, seed, idle=0.3, stall=0.4))


def test_distinct_magnitudes_keep_exactly_k():
    rng = random.Random(3)
    print("seed=3")
    mags = [*rng.sample(range(1, 128), 60), 128]  # 128 is |-128|, the most negative code
    codes = [-m if m == 128 or rng.random() < 0.5 else m for m in mags]
    rng.shuffle(codes)
    unit = TopKThresholdUnit(operand_bits=8, max_elems=64)
    ks = [1, 2, 30, 60, 61]
    got = run_unit(unit, [Job(codes, k) for k in ks], 3, idle=0.2, stall=0.2)
    by_size = sorted(codes, key=abs, reverse=True)
    for k, obs in zip(ks, got, strict=True):
        assert obs.kept == sum(obs.keeps) == k
        assert sorted((v for v in obs.values if v), key=abs, reverse=True) == by_size[:k]
        assert obs.threshold == abs(by_size[k - 1])


def test_ties_keep_every_code_at_the_threshold():
    codes = [3, -3, 3, 1, 2, -2, 0, 3]  # k = 2: four codes tie at |v| = 3
    unit = TopKThresholdUnit(operand_bits=4, max_elems=8)
    (obs,) = run_unit(unit, [Job(codes, 2)], 0)
    assert obs.threshold == 3 and obs.kept == 4
    assert obs.values == [3, -3, 3, 0, 0, 0, 0, 3]
    want, thr = topk_mask(torch.tensor(codes, dtype=torch.float64), 0.25)
    assert obs.keeps == want.tolist() and thr == obs.threshold


def test_all_zero_and_all_equal_tensors_keep_everything():
    unit = TopKThresholdUnit(operand_bits=4, max_elems=16)
    jobs = [Job([0] * 16, 1), Job([0] * 5, 5), Job([-5, 5] * 8, 1), Job([7] * 3, 2)]
    got = run_unit(unit, jobs, 0, stall=0.3)
    assert [(o.threshold, o.kept) for o in got] == [(0, 16), (0, 5), (5, 16), (7, 3)]
    assert all(all(o.keeps) for o in got)
    assert got[2].values == [-5, 5] * 8


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_extreme_codes(bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    codes = [hi, lo, 0, lo + 1, -1, hi, lo]
    unit = TopKThresholdUnit(operand_bits=bits, max_elems=8)
    got = run_unit(unit, [Job(codes, k) for k in (1, 2, 3, 7)], bits, stall=0.3)
    # |lo| = 2**(b-1) is the largest magnitude and is kept alone (twice, a tie) for k = 1, 2.
    assert [o.threshold for o in got] == [1 << (bits - 1), 1 << (bits - 1), hi, 0]
    assert got[0].values == [0, lo, 0, 0, 0, 0, lo] == got[1].values
    # k = 3: thr = hi = |lo + 1|; -1 ties with it only when bits = 2 (hi = 1).
    assert got[2].values == [hi, lo, 0, lo + 1, -1 if bits == 2 else 0, hi, lo]
    assert got[3].keeps == [True] * 7


def test_keep_near_zero_and_one():
    rng = random.Random(5)
    print("seed=5")
    codes = random_codes(rng, 200, 8, "random")
    unit = TopKThresholdUnit(operand_bits=8, max_elems=256)
    keeps = [1e-9, 0.004, 0.996, 1.0]
    got = run_unit(unit, [Job(codes, keep_count(k, 200)) for k in keeps], 5)
    v = torch.tensor(codes, dtype=torch.float64)
    for keep, obs in zip(keeps, got, strict=True):
        mask, thr = topk_mask(v, keep)
        assert obs.keeps == mask.tolist() and obs.threshold == thr
    assert got[3].kept == 200 and got[0].threshold == max(abs(c) for c in codes)


def test_period_reuse_restart_and_force():
    rng = random.Random(6)
    print("seed=6")
    unit = TopKThresholdUnit(operand_bits=8, max_elems=32)
    base = random_codes(rng, 32, 8, "random")
    jobs = []
    for i in range(9):
        drift = [max(-128, min(127, v + rng.randint(-20, 20))) for v in base]
        jobs.append(Job(drift, 8, period=3, restart=i == 5, force=i == 7))
    got = run_unit(unit, jobs, 6, idle=0.2, stall=0.2)
    # Counter: 0 1 2 0 1 | restart 0 1 | force 2 0: recompute at 0, 3, 5, 7 (forced), 8.
    assert [o.recomputed for o in got] == [True, False, False, True, False, True, False, True, True]
    for i, obs in enumerate(got):
        if not obs.recomputed:  # the stored threshold of the last recompute, applied with >=
            assert obs.threshold == got[i - 1].threshold
            assert obs.keeps == [abs(v) >= obs.threshold for v in jobs[i].codes]
    check_against_model(unit, jobs, got)


@pytest.fixture(scope="module")
def digits_weights(tmp_path_factory):
    """The weights of a real digits SWAT training iteration (make_digits_trace, seed 0)."""
    print("make_digits_trace(algo='swat', seed=0)")
    trace = load_trace(make_digits_trace(tmp_path_factory.mktemp("trace"), algo="swat", seed=0))
    return {name: rec.tensors["w"] for name, rec in trace.records[0].layers.items()}


@pytest.mark.parametrize("layer,bits", [("conv1", 8), ("conv1", 4)])
def test_digits_trace_weights(digits_weights, layer, bits):
    """Quantized trace weights, element and channel mode, against ``ref.policies.swat`` directly."""
    w = quantize_symmetric(digits_weights[layer], bits)[0]
    codes = w.flatten().tolist()
    wf = w.to(torch.float64)
    slice_len = w.shape[2] * w.shape[3]
    keep = 0.1
    unit = TopKThresholdUnit(operand_bits=bits, max_elems=len(codes))
    jobs = [Job(codes, keep_count(keep, len(codes))),
            Job(codes, keep_count(keep, len(codes) // slice_len), slice_len)]
    elem, chan = run_unit(unit, jobs, 7, stall=0.1)
    for obs, (mask, thr) in ((elem, topk_mask(wf, keep)), (chan, channel_mask(wf, keep))):
        assert obs.keeps == mask.flatten().tolist() and obs.threshold == thr
        assert obs.values == torch.where(mask, w, 0).flatten().tolist()


def expected_latency(n: int, bits: int, slice_len: int, recompute: bool) -> int:
    """The module docstring's latency formula."""
    passes = bits - 2 + slice_len.bit_length()
    emit = n if slice_len == 1 else 2 * n
    return n + emit + 2 + (passes * n + 2 * passes + 1 if recompute else 0)


@pytest.mark.parametrize("n,bits,slice_len", [(64, 8, 1), (63, 8, 9), (200, 4, 1), (100, 4, 4)])
def test_latency_without_stalls(n, bits, slice_len):
    unit = TopKThresholdUnit(operand_bits=bits, max_elems=256)
    codes = random_codes(random.Random(n), n, bits, "random")
    jobs = [Job(codes, 1, slice_len, period=2), Job(codes, 1, slice_len, period=2)]
    recomputing, reusing = run_unit(unit, jobs, 0)
    print(f"n={n} bits={bits} slice_len={slice_len}: {recomputing.latency} cycles recomputing, "
          f"{reusing.latency} reusing")
    assert recomputing.recomputed and not reusing.recomputed
    assert recomputing.latency == expected_latency(n, bits, slice_len, True)
    assert reusing.latency == expected_latency(n, bits, slice_len, False)


@pytest.mark.parametrize("kwargs,message", [
    ({"operand_bits": 1, "max_elems": 8}, "operand_bits must be an integer in 2..32, not 1"),
    ({"operand_bits": 8, "max_elems": 1}, "max_elems must be an integer in 2..1048576, not 1"),
    ({"operand_bits": 8, "max_elems": True}, "max_elems must be an integer in 2..1048576, not True"),
])
def test_invalid_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TopKThresholdUnit(**kwargs)


def test_period_field_width_matches_ref():
    assert PERIOD_BITS == REF_PERIOD_BITS


@pytest.mark.parametrize("value", [1, 0, (1 << 20) + 1, 2.5, True])
def test_config_rejects_bad_topk_max_elems(value):
    with pytest.raises(ConfigError, match=r"config field 'topk_max_elems': expected an integer in 2\.\.1048576"):
        StagConfig(name="x", topk_max_elems=value)


def test_presets_build_the_unit_from_config():
    for name, elems in (("tiny", 256), ("default", 16384)):
        unit = build_unit(preset(name), "topk")
        Fragment.get(unit, None)  # elaborates (and marks used: build_unit's module warns otherwise)
        assert isinstance(unit, TopKThresholdUnit)
        assert (unit.operand_bits, unit.max_elems) == (preset(name).operand_bits, elems)
