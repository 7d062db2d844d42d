"""cocotb tests of the generated stochastic pruner against ``ref.stochastic_prune_codes.PrunerModel``.

Expected codes and thresholds come only from ``ref`` (draws from ``ref.lfsr.GaloisLFSR``). Each
test records the output codes, the threshold after every tensor and the cycle of every transfer
so the Icarus and Verilator runs can be compared exactly.

``STAG_PRUNER_TENSOR`` (optional) names a JSON file ``{"codes": [...], "c_fixed": int,
"lfsr_state": int}`` holding a real dY tensor already quantized to the design's ``operand_bits``
(see ``tests/sim/test_stochastic_pruner_cosim.py``); without it ``test_real_tensor`` uses a random
Laplace-like tensor.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import torch
from amaranth import signed, unsigned
from cocotb.triggers import ReadOnly, RisingEdge

from hw.stochastic_pruner import PruneMode, pruner_control_layout
from ref.lfsr import GaloisLFSR
from ref.numerics import qmax, tau_constant, to_fixed
from ref.stochastic_prune_codes import PrunerModel
from sim.design import current_design
from sim.env import reset_and_count, test_rng, write_record
from sim.stream import StreamSink, StreamSource

# One job: (codes in row-major order, c_fixed, mode, LFSR reseed value or None).
Job = tuple[list[int], int, str, int | None]


async def _watch_ctrl(dut, counter, taus: list[int], cycles: list[int]) -> None:
    """Record the threshold register at every i_ctrl transfer (its value after the previous job)."""
    while True:
        await ReadOnly()
        if int(dut.i_ctrl__valid.value) and int(dut.i_ctrl__ready.value):
            taus.append(int(dut.tau.value))
            cycles.append(counter.now)
        await RisingEdge(dut.clk)


async def run_jobs(dut, test_name: str, jobs: list[Job], *, idle: float, stall: float) -> dict:
    """Drive ``jobs``, compare every output code and threshold with ``ref``, record and return them."""
    config = current_design().config
    b, w = config.operand_bits, config.lfsr_width
    rng = test_rng(test_name)
    counter = await reset_and_count(dut)
    ctrl = StreamSource(dut, "i_ctrl", pruner_control_layout(config.prune_count_bits, config.prune_frac_bits),
                        clock=dut.clk, counter=counter, rng=rng, idle_probability=idle)
    elems = StreamSource(dut, "i_stream", signed(b), clock=dut.clk, counter=counter, rng=rng,
                         idle_probability=idle)
    seeds = StreamSource(dut, "i_seed", unsigned(w), clock=dut.clk, counter=counter, rng=rng)
    sink = StreamSink(dut, "o_stream", signed(b), clock=dut.clk, counter=counter, rng=rng,
                      stall_probability=stall)
    taus: list[int] = []
    ctrl_cycles: list[int] = []
    cocotb.start_soon(_watch_ctrl(dut, counter, taus, ctrl_cycles))

    lfsr = GaloisLFSR(w, config.lfsr_taps, config.lfsr_seed)
    model = PrunerModel(operand_bits=b, lfsr=lfsr)
    expected: list[int] = []
    expected_taus: list[int] = []
    for codes, c_fixed, mode, reseed in jobs:
        if reseed is not None:
            lfsr.state = reseed
        out, _ = model.run(torch.tensor(codes, dtype=torch.int64), c_fixed=c_fixed,
                           frac_bits=config.prune_frac_bits, mode=mode)
        expected += out.tolist()
        expected_taus.append(model.tau)

    receiving = cocotb.start_soon(sink.receive(len(expected)))
    for codes, c_fixed, mode, reseed in jobs:
        if reseed is not None:
            await seeds.send([reseed])
        await ctrl.send([{"mode": PruneMode[mode.upper()], "n": len(codes), "c_fixed": c_fixed}])
        await elems.send(codes * (2 if mode == "two_pass" else 1))
    received = await receiving
    while True:  # the last job's threshold: wait for the divider
        await ReadOnly()
        if int(dut.i_ctrl__ready.value):
            final_tau = int(dut.tau.value)
            break
        await RisingEdge(dut.clk)
    got = [r.payload for r in received]
    got_taus = [*taus[1:], final_tau]
    record = {"codes": got, "out_cycles": [r.cycle for r in received], "taus": got_taus,
              "ctrl_cycles": ctrl_cycles, "in_cycles": elems.accepted_at}
    write_record(test_name, record)
    assert got_taus == expected_taus, f"thresholds {got_taus} != ref {expected_taus}"
    mismatch = [i for i, (x, y) in enumerate(zip(got, expected, strict=True)) if x != y]
    assert not mismatch, f"{len(mismatch)} codes differ from ref, first at output {mismatch[0]}"
    return record


def _constants(frac_bits: int) -> list[int]:
    return [to_fixed(tau_constant(0.5), frac_bits), to_fixed(tau_constant(0.9), frac_bits),
            to_fixed(tau_constant(0.99, "normal"), frac_bits), 1 << frac_bits, 0, (1 << (frac_bits + 4)) - 1]


def _random_codes(rng: random.Random, bits: int, n: int) -> list[int]:
    """Small magnitudes (ties with tau), zeros and the most negative code."""
    low, high = -(1 << (bits - 1)), qmax(bits)
    out = []
    for _ in range(n):
        v = rng.randint(low, high) if rng.random() < 0.3 else round(rng.expovariate(0.5)) * rng.choice((-1, 1))
        if rng.random() < 0.2:
            v = 0
        if rng.random() < 0.03:
            v = low
        out.append(max(low, min(high, v)))
    return out


@cocotb.test()
async def test_random_jobs_under_stalls(dut):
    """Random tensors, constants (0 included) and modes, with random starvation and backpressure."""
    config = current_design().config
    rng = test_rng("random_jobs:tensors")
    constants = _constants(config.prune_frac_bits)
    jobs = [(_random_codes(rng, config.operand_bits, rng.randint(1, 48)), rng.choice(constants),
             rng.choice(("two_pass", "previous")), None) for _ in range(12)]
    await run_jobs(dut, "random_jobs", jobs, idle=0.3, stall=0.4)


@cocotb.test()
async def test_edge_tensors(dut):
    """All-zero, all-equal (tau > qmax), most negative code, |g| == tau, tau = 0, n = 0, reseed."""
    config = current_design().config
    b, f = config.operand_bits, config.prune_frac_bits
    low, high, one = -(1 << (b - 1)), qmax(b), 1 << f
    c90 = to_fixed(tau_constant(0.9), f)
    jobs: list[Job] = [
        ([1, -1, 0, high], 0, "previous", None),  # reset tau = 0: bypass
        ([0] * 7, c90, "two_pass", None),  # sum 0 -> tau 0
        ([high] * 4 + [-high] * 4, 2 * one, "two_pass", None),  # tau = 2 qmax: clamped +-qmax or 0
        ([low, high, low, -1, 0, 1], c90, "two_pass", None),
        ([low] * 5, one, "two_pass", None),  # |g| == tau = 2**(b-1): all unchanged
        ([low] * 3 + [1, -1, 2], one, "previous", 0x5),  # reseeded LFSR, previous tau
        ([1, -2, 3], 0, "previous", None),  # then tau = 0
        ([3, -3], c90, "previous", None),  # bypass
        ([], c90, "previous", None),  # ignored
        ([2] * 5, one, "two_pass", None),  # tau == |g|: unchanged
    ]
    record = await run_jobs(dut, "edge_tensors", jobs, idle=0.2, stall=0.2)
    assert record["codes"][:4] == [1, -1, 0, high]  # rule-level facts, independent of the model
    assert record["taus"][2] == 2 * high


@cocotb.test()
async def test_real_tensor(dut):
    """A (real, when STAG_PRUNER_TENSOR is set) dY tensor: two-pass, then previous mode, no stalls."""
    config = current_design().config
    path = os.environ.get("STAG_PRUNER_TENSOR")
    if path:
        data = json.loads(open(path, encoding="utf-8").read())
        codes, c_fixed, state = data["codes"], data["c_fixed"], data["lfsr_state"]
    else:
        rng = test_rng("real_tensor:tensor")
        codes = _random_codes(rng, config.operand_bits, 300)
        c_fixed, state = to_fixed(tau_constant(0.9), config.prune_frac_bits), 1
    jobs: list[Job] = [(codes, c_fixed, "two_pass", state), (codes, c_fixed, "previous", None)]
    record = await run_jobs(dut, "real_tensor", jobs, idle=0.0, stall=0.0)
    n, b = len(codes), config.operand_bits
    # Full throughput, and the documented per-tensor cycles (two-pass: 2n + b + 5).
    assert record["ctrl_cycles"][1] - record["ctrl_cycles"][0] == 2 * n + b + 5
    cocotb.log.info("real_tensor: n=%d tau=%s zeros in %d -> out %d", n, record["taus"],
                    sum(v == 0 for v in codes), sum(v == 0 for v in record["codes"][:n]))
