"""cocotb tests of the generated top-K threshold unit against ``ref.topk_codes.TopKUnitModel``.

Expected values come only from ``ref``. Each test records every output beat, every status beat and
the cycle of each transfer, so the Icarus and Verilator runs can be compared exactly.
``STAG_TOPK_TRACE`` names a JSON file of quantized digits-trace weights (:mod:`sim.topk_vectors`);
without it the trace test is skipped.
"""

from __future__ import annotations

import os
import random
from typing import Any

import cocotb

from hw.topk_threshold import topk_command_layout, topk_output_layout, topk_status_layout
from ref.topk_codes import TopKUnitModel, keep_count
from sim.design import current_design
from sim.env import reset_and_count, test_rng, write_record
from sim.stream import StreamSink, StreamSource
from sim.topk_vectors import load_topk_tensors, random_codes

TRACE_ENV = "STAG_TOPK_TRACE"


def job(codes: list[int], k: int, slice_len: int = 1, period: int = 1, restart: bool = False,
        force: bool = False) -> dict[str, Any]:
    return {"codes": codes, "k": k, "slice_len": slice_len, "period": period, "restart": restart, "force": force}


def fit_jobs(jobs: list[dict[str, Any]], max_elems: int) -> list[dict[str, Any]]:
    """``jobs`` cut to what a unit of ``max_elems`` takes: a longer tensor keeps its first whole
    items (``k`` at most their number), and a job whose one item is longer than ``max_elems`` is
    left out. Jobs that fit are unchanged (so are all of them from 96 elements up)."""
    fitted = []
    for j in jobs:
        items = min(len(j["codes"]), max_elems) // j["slice_len"]
        if items:
            fitted.append({**j, "codes": j["codes"][:items * j["slice_len"]], "k": min(j["k"], items)})
    return fitted


async def run_and_check(dut, test_name: str, jobs: list[dict[str, Any]], *, idle: float, stall: float) -> None:
    """Stream ``jobs`` through the unit; compare every beat with the model; write the record."""
    config = current_design().config
    b, max_elems = config.operand_bits, config.topk_max_elems
    rng = test_rng(test_name)
    counter = await reset_and_count(dut)
    common = {"clock": dut.clk, "counter": counter}
    cmd = StreamSource(dut, "i_cmd", topk_command_layout(max_elems), rng=random.Random(rng.random()), **common)
    data = StreamSource(dut, "i_data", b, rng=random.Random(rng.random()), idle_probability=idle, **common)
    out = StreamSink(dut, "o_data", topk_output_layout(b), rng=random.Random(rng.random()),
                     stall_probability=stall, **common)
    status = StreamSink(dut, "o_status", topk_status_layout(b, max_elems), rng=random.Random(rng.random()),
                        stall_probability=stall, **common)
    total = sum(len(j["codes"]) for j in jobs)
    out_task = cocotb.start_soon(out.receive(total))
    status_task = cocotb.start_soon(status.receive(len(jobs)))
    for j in jobs:
        await cmd.send([{"n": len(j["codes"]), "k": j["k"], "slice_len": j["slice_len"], "period": j["period"],
                         "restart": int(j["restart"]), "force": int(j["force"])}])
        await data.send([v & ((1 << b) - 1) for v in j["codes"]])
    beats = await out_task
    stats = await status_task

    # Expected, from ref only.
    model = TopKUnitModel(b, max_elems)
    at = 0
    for i, (j, st) in enumerate(zip(jobs, stats, strict=True)):
        want = model.process(j["codes"], j["k"], slice_len=j["slice_len"], period=j["period"],
                             restart=j["restart"], force=j["force"])
        n = len(j["codes"])
        got = beats[at:at + n]
        at += n
        where = f"{test_name}: tensor {i} (n={n}, k={j['k']}, slice_len={j['slice_len']})"
        values = [int(r.payload.value) for r in got]
        keeps = [bool(r.payload.keep) for r in got]
        lasts = [bool(r.payload.last) for r in got]
        assert values == want.values, f"{where}: values differ at {_first_diff(values, want.values)}"
        assert keeps == want.mask, f"{where}: mask differs at {_first_diff(keeps, want.mask)}"
        assert lasts == [False] * (n - 1) + [True], f"{where}: last flag"
        status_got = (int(st.payload.threshold), bool(st.payload.recomputed), int(st.payload.kept))
        assert status_got == (want.threshold, want.recomputed, want.kept), f"{where}: status {status_got}"
    write_record(test_name, {
        "values": [int(r.payload.value) for r in beats],
        "keeps": [int(r.payload.keep) for r in beats],
        "cycles": [r.cycle for r in beats],
        "status": [[int(s.payload.threshold), int(s.payload.recomputed), int(s.payload.kept), s.cycle] for s in stats],
    })


def _first_diff(a: list, b: list) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), -1)


@cocotb.test()
async def test_random_tensors(dut):
    """Random tensors (element and channel mode, every code kind, random keep/period/restart/force)."""
    config = current_design().config
    rng = test_rng("random_tensors_jobs")
    limit = min(config.topk_max_elems, 96)
    jobs = []
    for _ in range(8):
        slice_len = rng.choice([s for s in (1, 1, 2, 3, 9) if s <= limit])
        items = rng.randint(1, limit // slice_len)
        codes = random_codes(rng, items * slice_len, config.operand_bits,
                       rng.choice(["random", "zeros", "equal", "extreme", "sparse"]))
        keep = rng.choice([1e-6, 0.1, 0.5, 0.999, 1.0, rng.random()])
        jobs.append(job(codes, keep_count(keep, items), slice_len, period=rng.choice([0, 1, 2, 3]),
                        restart=rng.random() < 0.2, force=rng.random() < 0.2))
    await run_and_check(dut, "random_tensors", jobs, idle=0.3, stall=0.4)


@cocotb.test()
async def test_edge_cases(dut):
    """Distinct magnitudes, ties, all-zero, all-equal, extreme codes, keep near 0 and 1, n = max_elems."""
    config = current_design().config
    b = config.operand_bits
    lo, hi = -(1 << (b - 1)), (1 << (b - 1)) - 1
    rng = test_rng("edge_cases_jobs")
    distinct = [m if rng.random() < 0.5 else -m for m in rng.sample(range(hi + 1), min(hi + 1, 40))]
    full = random_codes(rng, config.topk_max_elems if config.topk_max_elems <= 512 else 512, b, "random")
    jobs = [
        job(distinct, 1), job(distinct, len(distinct) // 3), job(distinct, len(distinct)),
        job([3, -3, 3, 1, 2, -2, 0, 3], 2),
        job([0] * 20, 1), job([0] * 20, 20),
        job([lo] * 7, 3), job([hi, -hi] * 5, 1),
        job([hi, lo, 0, lo + 1, -1, hi, lo], 1), job([hi, lo, 0, lo + 1, -1, hi, lo], 3),
        job(full, keep_count(1e-9, len(full))), job(full, keep_count(0.999, len(full))),
        job([lo, hi] * 9, 1, slice_len=9), job([lo] * 9 + [hi] * 9 + [0] * 9, 2, slice_len=9),
    ]
    await run_and_check(dut, "edge_cases", fit_jobs(jobs, config.topk_max_elems), idle=0.1, stall=0.2)


@cocotb.test()
async def test_period_reuse(dut):
    """Period 3 with a restart and a forced recompute: the stored threshold is reused in between."""
    config = current_design().config
    rng = test_rng("period_reuse_jobs")
    b = config.operand_bits
    base = random_codes(rng, 32, b, "random")
    lo, hi = -(1 << (b - 1)), (1 << (b - 1)) - 1
    jobs = []
    for i in range(9):
        codes = [max(lo, min(hi, v + rng.randint(-2, 2))) for v in base]
        jobs.append(job(codes, 8, period=3, restart=i == 5, force=i == 7))
    await run_and_check(dut, "period_reuse", fit_jobs(jobs, config.topk_max_elems), idle=0.2, stall=0.2)


@cocotb.test(skip=TRACE_ENV not in os.environ)
async def test_digits_trace_weights(dut):
    """Quantized weights of a real digits SWAT training iteration, element and channel mode, keep 0.1."""
    jobs = []
    for t in load_topk_tensors(os.environ[TRACE_ENV]):
        codes, shape = t["codes"], t["shape"]
        if "element" in t["modes"]:
            jobs.append(job(codes, keep_count(0.1, len(codes))))
        if "channel" in t["modes"]:
            slice_len = shape[2] * shape[3]
            jobs.append(job(codes, keep_count(0.1, len(codes) // slice_len), slice_len))
    await run_and_check(dut, "digits_trace_weights", jobs, idle=0.05, stall=0.1)
