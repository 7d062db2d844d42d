# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of ReluMaskEmit and MaskApply against ``ref.relu_mask_codes``.

Every stream gets random valid/ready stalls; stimulus mixes zeros, the most negative code, the
extremes, all-zero, all-positive and all-negative vectors, and vectors from a real digits trace.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from hw.relu_mask import MaskApply, ReluMaskEmit
from ref.relu_mask_codes import apply_stream, bitmap_beats, emit_stream, pack_codes, unpack_bitmap, unpack_codes
from sim.relu_mask_vectors import random_code_vectors as random_vectors
from sim.relu_mask_vectors import random_masks

# (operand_bits, bus_elems, vector_elems): the tiny and default presets' tile_k vectors, a vector
# of several mask beats, one whose last mask beat is partial, 1-element beats, and a vector
# shorter than one mask beat.
GEOMETRIES = [(4, 4, 8), (8, 16, 64), (4, 2, 24), (3, 2, 10), (2, 1, 5), (8, 4, 4)]


async def put(ctx, port, beats, rng, idle, accepted):
    """Send ``beats`` on an input stream with random idle cycles; record each transfer's cycle."""
    cycle = 0
    for beat in beats:
        while idle and rng.random() < idle:
            ctx.set(port.valid, 0)
            await ctx.tick()
            cycle += 1
        ctx.set(port.payload, beat)
        ctx.set(port.valid, 1)
        while True:
            *_, ready = await ctx.tick().sample(port.ready)
            cycle += 1
            if ready:
                accepted.append(cycle - 1)
                break
    ctx.set(port.valid, 0)


async def get(ctx, port, count, rng, stall, received):
    """Take ``count`` beats with random ready stalls, checking the stream rules (valid held,
    payload stable until the transfer); appends (payload, cycle)."""
    cycle, pending = 0, None
    while len(received) < count:
        ready = not (stall and rng.random() < stall)
        ctx.set(port.ready, ready)
        *_, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if pending is not None:
            assert valid, f"valid dropped before the transfer (cycle {cycle})"
            assert payload == pending, f"payload changed before the transfer (cycle {cycle})"
        if valid:
            pending = None if ready else payload
            if ready:
                received.append((payload, cycle))
        cycle += 1
    ctx.set(port.ready, 0)


def run(unit, inputs: dict, outputs: dict, rng: random.Random, *, idle: float, stall: float):
    """Drive every input port of ``unit`` (name -> beats) and collect every output (name -> count).

    Returns ({output: [(payload, cycle)]}, {input: [cycle]}).
    """
    received = {name: [] for name in outputs}
    accepted = {name: [] for name in inputs}
    sim = Simulator(unit)
    sim.add_clock(1e-8)
    def bench(function, port, *args):
        async def testbench(ctx):
            await function(ctx, port, *args)
        return testbench

    for name, beats in inputs.items():
        sim.add_testbench(bench(put, getattr(unit, name), beats, random.Random(rng.random()), idle, accepted[name]))
    for name, count in outputs.items():
        sim.add_testbench(bench(get, getattr(unit, name), count, random.Random(rng.random()), stall, received[name]))
    sim.run_until(1e-8 * (50 + 20 * sum(len(b) for b in inputs.values())))
    for name, count in outputs.items():
        assert len(received[name]) == count, f"{name}: {len(received[name])} of {count} beats arrived"
    return received, accepted


def run_emit(geometry, vectors, rng, *, idle, stall):
    ob, be, ve = geometry
    unit = ReluMaskEmit(operand_bits=ob, bus_elems=be, vector_elems=ve)
    act, mask = emit_stream(vectors, bus_elems=be, operand_bits=ob)
    beats = [b for v in vectors for b in pack_codes(v, be, ob)]
    got, accepted = run(unit, {"i_stream": beats}, {"o_act": len(act), "o_mask": len(mask)}, rng,
                        idle=idle, stall=stall)
    return got, accepted, act, mask


def run_apply(geometry, vectors, masks, rng, *, idle, stall):
    ob, be, ve = geometry
    unit = MaskApply(operand_bits=ob, bus_elems=be, vector_elems=ve)
    bus_bits = ob * be
    data = [b for v in vectors for b in pack_codes(v, be, ob)]
    mask_beats = [b for k in masks for b in bitmap_beats(k, bus_bits)]
    expected = apply_stream(vectors, masks, bus_elems=be, operand_bits=ob)
    got, accepted = run(unit, {"i_data": data, "i_mask": mask_beats}, {"o_data": len(expected)}, rng,
                        idle=idle, stall=stall)
    return got, accepted, expected


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.4)], ids=["no_stalls", "stalls"])
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "ob{}_be{}_ve{}".format(*g))
def test_emit_equals_ref(geometry, seed, stalls):
    print(f"seed={seed} geometry={geometry} stalls={stalls}")
    rng = random.Random(seed)
    vectors = random_vectors(rng, geometry[0], geometry[2], 24)
    got, _, act, mask = run_emit(geometry, vectors, rng, idle=stalls[0], stall=stalls[1])
    assert [p for p, _ in got["o_act"]] == act
    assert [p for p, _ in got["o_mask"]] == mask


@pytest.mark.parametrize("stalls", [(0.0, 0.0), (0.3, 0.4)], ids=["no_stalls", "stalls"])
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "ob{}_be{}_ve{}".format(*g))
def test_apply_equals_ref(geometry, seed, stalls):
    print(f"seed={seed} geometry={geometry} stalls={stalls}")
    rng = random.Random(seed)
    ob, _, ve = geometry
    vectors = random_vectors(rng, ob, ve, 24)
    masks = random_masks(rng, ve, 24)  # independent of the data
    got, _, expected = run_apply(geometry, vectors, masks, rng, idle=stalls[0], stall=stalls[1])
    assert [p for p, _ in got["o_data"]] == expected


def test_emit_known_values():
    """Hand-worked tiny example: 4-bit codes, 4 per beat, 8 per vector."""
    z = [3, 0, -8, 7, -1, 1, 0, -3]  # -8 is the most negative 4-bit code
    got, _, _, _ = run_emit((4, 4, 8), [z], random.Random(0), idle=0.0, stall=0.0)
    # ReLU: 3, 0, 0, 7 | 0, 1, 0, 0 -> nibbles from element 0 up.
    assert [p for p, _ in got["o_act"]] == [0x7003, 0x0010]
    # Mask z > 0: elements 0, 3, 5 (zero is masked off). The port is 8 bits: the vector has 8
    # elements, so the upper half of a 16-bit bitmap beat would always be 0.
    assert len(ReluMaskEmit(operand_bits=4, bus_elems=4, vector_elems=8).o_mask.payload) == 8
    assert len(MaskApply(operand_bits=4, bus_elems=4, vector_elems=24).i_mask.payload) == 16
    assert [p for p, _ in got["o_mask"]] == [0b00101001]


def test_apply_known_values():
    dx = [3, -2, -8, 7, -1, 1, 5, -3]
    keep = [True, False, True, False, False, True, True, True]
    got, _, _ = run_apply((4, 4, 8), [dx], [keep], random.Random(0), idle=0.0, stall=0.0)
    # 3, 0, -8, 0 | 0, 1, 5, -3
    assert [p for p, _ in got["o_data"]] == [0x0803, 0xD510]


@pytest.mark.parametrize("geometry", [(4, 4, 8), (4, 2, 24), (8, 16, 64)], ids=str)
def test_emit_latency_and_throughput(geometry):
    """No stalls: one beat taken per cycle, o_act one cycle after its input, o_mask one cycle
    after the input beat that completes it."""
    ob, be, ve = geometry
    vectors = random_vectors(random.Random(3), ob, ve, 12)
    got, accepted, _, _ = run_emit(geometry, vectors, random.Random(3), idle=0.0, stall=0.0)
    taken = accepted["i_stream"]
    assert taken == list(range(len(taken)))
    assert [c for _, c in got["o_act"]] == [t + 1 for t in taken]
    per_vector = ve // be
    completing = [j for j in range(len(taken)) if (j % per_vector) % ob == ob - 1 or j % per_vector == per_vector - 1]
    assert [c for _, c in got["o_mask"]] == [taken[j] + 1 for j in completing]


@pytest.mark.parametrize("geometry", [(4, 4, 8), (4, 2, 24), (2, 1, 5)], ids=str)
def test_apply_latency_and_throughput(geometry):
    """Both inputs offered from cycle 0: the first value beat is taken one cycle after the first
    mask beat, then one per cycle with no bubble; o_data one cycle after each."""
    ob, _, ve = geometry
    rng = random.Random(4)
    vectors = random_vectors(rng, ob, ve, 12)
    masks = [[rng.random() < 0.5 for _ in range(ve)] for _ in vectors]
    got, accepted, _ = run_apply(geometry, vectors, masks, rng, idle=0.0, stall=0.0)
    taken = accepted["i_data"]
    assert taken == list(range(1, len(taken) + 1))
    assert [c for _, c in got["o_data"]] == [t + 1 for t in taken]


def test_emit_mask_backpressure_stalls_input_at_completing_beat():
    """With o_mask never taken, exactly the beats up to the second completed mask beat enter
    (one mask beat waits in the output register, the next completing beat cannot)."""
    unit = ReluMaskEmit(operand_bits=4, bus_elems=4, vector_elems=8)  # 2 value beats per mask beat
    beats = [b for v in random_vectors(random.Random(5), 4, 8, 4) for b in pack_codes(v, 4, 4)]
    accepted: list[int] = []
    act: list = []

    async def hold_mask(ctx):
        ctx.set(unit.o_mask.ready, 0)
        await ctx.tick().repeat(40)

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    async def producer(ctx):
        await put(ctx, unit.i_stream, beats, random.Random(0), 0.0, accepted)

    async def consumer(ctx):
        await get(ctx, unit.o_act, 3, random.Random(0), 0.0, act)

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(hold_mask)
    sim.run_until(1e-8 * 40)
    assert len(accepted) == 3 and len(act) == 3


def test_digits_trace_vectors(digits_vectors):
    """Pre-activations and dX of the fc layer of a real relu_mask digits trace (4-bit codes)."""
    vec = digits_vectors
    ob, ve, be = vec["operand_bits"], vec["vector_elems"], 4
    # The trace is self-consistent: the recomputed Z gives the recorded mask and activation.
    for z, keep, x in zip(vec["z_float"], vec["recorded_mask"], vec["recorded_x"], strict=True):
        assert [v > 0 for v in z] == keep
        assert all(abs(max(a, 0.0) - b) <= 1e-5 * max(1.0, abs(b)) for a, b in zip(z, x, strict=True))
    got, _, act, mask = run_emit((ob, be, ve), vec["pre"], random.Random(7), idle=0.2, stall=0.3)
    assert [p for p, _ in got["o_act"]] == act
    assert [p for p, _ in got["o_mask"]] == mask
    # Against the recording: the code mask keeps exactly the recorded positions whose code did
    # not round to 0.
    for v, (z, keep) in enumerate(zip(vec["pre"], vec["recorded_mask"], strict=True)):
        hw_mask = unpack_bitmap([p for p, _ in got["o_mask"][v:v + 1]], ve, be * ob)
        assert hw_mask == [k and c != 0 for k, c in zip(keep, z, strict=True)]
    # BWI side: dense dX masked with the recorded mask.
    out, _, expected = run_apply((ob, be, ve), vec["dx"], vec["recorded_mask"], random.Random(8),
                                 idle=0.2, stall=0.3)
    assert [p for p, _ in out["o_data"]] == expected
    dz = unpack_codes([p for p, _ in out["o_data"]], be, ob)
    recorded = [c for v in vec["dy_prev"] for c in v]
    keep = [k for m in vec["recorded_mask"] for k in m]
    # Exactly 0 where the recorded mask is 0 (the recorded gradient is 0 there too); elsewhere
    # within one code of the recorded gradient (dX is recomputed in float64, then rounded).
    assert all(d == 0 and r == 0 for d, r, k in zip(dz, recorded, keep, strict=True) if not k)
    assert max(abs(d - r) for d, r in zip(dz, recorded, strict=True)) <= 1


@pytest.fixture(scope="module")
def digits_vectors(tmp_path_factory):
    from ref.contract.trace_programs import make_digits_trace
    from ref.traces import load_trace
    from sim.relu_mask_vectors import digits_relu_vectors

    print("make_digits_trace(algo='relu_mask', seed=0)")
    trace = load_trace(make_digits_trace(tmp_path_factory.mktemp("trace"), algo="relu_mask", seed=0))
    return digits_relu_vectors(trace, operand_bits=4, vector_elems=8, max_vectors=64)


@pytest.mark.parametrize("cls", [ReluMaskEmit, MaskApply])
@pytest.mark.parametrize("kwargs,message", [
    ({"operand_bits": 1, "bus_elems": 4, "vector_elems": 8}, "operand_bits must be an integer in 2..32, not 1"),
    ({"operand_bits": 4, "bus_elems": 3, "vector_elems": 6}, "bus_elems must be a power of two in 1..64, not 3"),
    ({"operand_bits": 4, "bus_elems": 4, "vector_elems": 6},
     "vector_elems must be a multiple of bus_elems = 4 in 1..4096, not 6"),
    ({"operand_bits": 4, "bus_elems": 4, "vector_elems": True}, "vector_elems must be a multiple"),
])
def test_invalid_parameters(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)
