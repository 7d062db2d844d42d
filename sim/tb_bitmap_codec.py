"""cocotb tests of the generated bitmap codec units, ``bitmap_encode`` and ``bitmap_decode``.

One module serves both units: the direction follows from the top-level module's name. Expected
beats come only from ``ref.bitmap_codec`` (the integer model of the core's wire format, itself
tested against ``ref.contract.formats`` and ``sim.core_program``). Each test records the beats and
the edge index of every transfer so the Icarus and Verilator runs can be compared exactly.

``STAG_CODEC_VECTORS`` (optional) names a JSON file of operand vectors from a real training trace
(:mod:`sim.bitmap_codec_vectors`); without it the trace test is skipped.
"""

from __future__ import annotations

import os
import random

import cocotb
from amaranth import unsigned
from cocotb.triggers import ReadOnly, RisingEdge

from ref.bitmap_codec import compressed_beats, dense_beats, encode_compressed
from sim.bitmap_codec_vectors import load_codec_vectors
from sim.design import current_design
from sim.env import reset_and_count, test_rng, write_record
from sim.stream import StreamSink, StreamSource

DENSITIES = (0.0, 0.1, 0.5, 0.9, 1.0)


def _geometry() -> dict[str, int]:
    c = current_design().config
    return {"operand_bits": c.operand_bits, "bus_elems": c.bus_elems, "tile_k": c.tile_k}


def _encoding(dut) -> bool:
    """True for the encoder unit, False for the decoder (from the module name)."""
    name = dut._name
    if name.endswith("_bitmap_encode"):
        return True
    if name.endswith("_bitmap_decode"):
        return False
    raise RuntimeError(f"sim.tb_bitmap_codec runs against a bitmap_encode or bitmap_decode unit, not {name}")


def random_vector(rng: random.Random, operand_bits: int, tile_k: int, density: float) -> list[int]:
    """``tile_k`` codes, each nonzero with probability ``density``; extremes (the most negative
    code, the largest, +-1) appear often."""
    low, high = -(1 << (operand_bits - 1)), (1 << (operand_bits - 1)) - 1
    out = []
    for _ in range(tile_k):
        if rng.random() >= density:
            out.append(0)
        elif rng.random() < 0.3:
            out.append(rng.choice((low, high, -1, 1)))
        else:
            out.append(rng.choice([v for v in range(low, high + 1) if v != 0]))
    return out


def noisy_compressed(rng: random.Random, vector: list[int], geo: dict[str, int]) -> list[int]:
    """The compressed beats of ``vector`` with junk where the core ignores the bits: bitmap bits
    at ``k >= tile_k`` and the padding elements of the last value beat."""
    ob, w, k = geo["operand_bits"], geo["bus_elems"], geo["tile_k"]
    bus_bits = w * ob
    beats = encode_compressed(vector, **geo)
    nb = -(-k // bus_bits)
    for j in range(nb):
        lo = j * bus_bits
        ignored = ((1 << bus_bits) - 1) & ~(((1 << k) - 1) >> lo if lo < k else 0)
        beats[j] |= rng.getrandbits(bus_bits) & ignored
    nnz = sum(1 for v in vector if v)
    used = nnz % w
    if used:
        beats[-1] |= rng.getrandbits(bus_bits) & ~((1 << (used * ob)) - 1) & ((1 << bus_bits) - 1)
    return beats


async def run_vectors(dut, test_name: str, vectors: list[list[int]], *, idle: float, stall: float,
                      rng: random.Random) -> dict:
    """Stream ``vectors`` through the unit and compare every output beat with ``ref``."""
    geo = _geometry()
    bus_bits = geo["operand_bits"] * geo["bus_elems"]
    encoding = _encoding(dut)
    dense = [dense_beats(v, **geo) for v in vectors]
    compressed = [encode_compressed(v, **geo) for v in vectors]
    if encoding:
        inputs, expected = [b for v in dense for b in v], [b for v in compressed for b in v]
    else:
        inputs = [b for v in vectors for b in noisy_compressed(rng, v, geo)]
        expected = [b for v in dense for b in v]
    counter = await reset_and_count(dut)
    source = StreamSource(dut, "i_stream", unsigned(bus_bits), clock=dut.clk, counter=counter, rng=rng,
                          idle_probability=idle)
    sink = StreamSink(dut, "o_stream", unsigned(bus_bits), clock=dut.clk, counter=counter, rng=rng,
                      stall_probability=stall)
    sending = cocotb.start_soon(source.send(inputs))
    received = await sink.receive(len(expected))
    await sending
    got = [r.payload for r in received]
    mismatches = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
    assert not mismatches, (f"{test_name}: first mismatch at output beat {mismatches[0]}: got {got[mismatches[0]]:#x}, "
                            f"ref {expected[mismatches[0]]:#x}")
    # Nothing more may come out: no duplicated beat.
    dut.o_stream__ready.value = 1
    for _ in range(2 * (geo["tile_k"] // geo["bus_elems"]) + 8):
        await ReadOnly()
        assert not int(dut.o_stream__valid.value), f"{test_name}: an output beat beyond the expected ones"
        await RisingEdge(dut.clk)
    record = {"beats": got, "cycles": [r.cycle for r in received], "accepted_at": source.accepted_at}
    write_record(test_name, record)
    return record


@cocotb.test()
async def test_random_vectors_under_stalls(dut):
    """Densities 0/10/50/90/100 %, random input idles and output stalls; the decoder's input has
    junk in every ignored field."""
    geo = _geometry()
    rng = test_rng("random_vectors_under_stalls")
    vectors = [random_vector(rng, geo["operand_bits"], geo["tile_k"], d) for d in DENSITIES for _ in range(6)]
    rng.shuffle(vectors)
    await run_vectors(dut, "random_vectors_under_stalls", vectors, idle=0.3, stall=0.4, rng=rng)


@cocotb.test()
async def test_extreme_and_empty_vectors(dut):
    """All zero, all the most negative code, all the largest code, alternating, back to back."""
    geo = _geometry()
    ob, k = geo["operand_bits"], geo["tile_k"]
    low, high = -(1 << (ob - 1)), (1 << (ob - 1)) - 1
    patterns = [[0] * k, [low] * k, [high] * k, [low if i % 2 else high for i in range(k)],
                [0] * (k - 1) + [low], [low] + [0] * (k - 1), [-1] * k, [0] * k]
    rng = test_rng("extreme_and_empty_vectors")
    await run_vectors(dut, "extreme_and_empty_vectors", patterns + patterns[::-1], idle=0.2, stall=0.5, rng=rng)


@cocotb.test()
async def test_throughput_without_stalls(dut):
    """No stalls: a run of vectors takes the format's bound (per vector the larger of its dense and
    compressed beat counts) plus at most one vector's fill latency."""
    geo = _geometry()
    w, k = geo["bus_elems"], geo["tile_k"]
    rng = test_rng("throughput_without_stalls")
    rates = {}
    for density in DENSITIES:
        vectors = [random_vector(rng, geo["operand_bits"], k, density) for _ in range(16)]
        name = f"throughput_{int(density * 100)}"
        record = await run_vectors(dut, name, vectors, idle=0.0, stall=0.0, rng=rng)
        cycles = record["cycles"][-1] - record["accepted_at"][0] + 1
        bound = sum(max(k // w, compressed_beats(sum(1 for x in v if x), **geo)) for v in vectors)
        assert cycles <= bound + k // w + 4, f"density {density}: {cycles} cycles, bound {bound}"
        rates[density] = len(vectors) * k / cycles
    cocotb.log.info("%s elements/cycle: %s", "encode" if _encoding(dut) else "decode",
                    ", ".join(f"{d:.0%}: {r:.2f}" for d, r in rates.items()))


@cocotb.test(skip="STAG_CODEC_VECTORS" not in os.environ)
async def test_trace_vectors(dut):
    """Operand vectors of a real digits training step (ReLU activations, pruned gradients)."""
    vectors = load_codec_vectors(os.environ["STAG_CODEC_VECTORS"])
    assert vectors, "STAG_CODEC_VECTORS holds no vectors"
    rng = test_rng("trace_vectors")
    await run_vectors(dut, "trace_vectors", vectors, idle=0.2, stall=0.3, rng=rng)
