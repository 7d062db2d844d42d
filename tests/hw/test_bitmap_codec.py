# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the bitmap codec (``hw.bitmap_codec``) with random stalls on both sides.

Expected beats come from the contract's own encoder: ``sim.core_program.encode_program`` for a
program whose A rows are the vectors (compressed or dense), cross-checked against
``ref.contract.formats.encode_bitmap``; never from the codec. Vectors: random at densities
0/10/50/90/100 %, extreme codes (the most negative code, the largest, +-1), and rows of a real
digits training trace (ReLU activations and pruned gradients, quantized as the contract does).
"""

from __future__ import annotations

import random
import tempfile

import pytest
import torch
from amaranth import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.bitmap_codec import BitmapDecoder, BitmapEncoder
from hw.config import StagConfig, preset
from ref.bitmap_codec import dense_beats, encode_compressed
from ref.contract import Drain, Operand, Program, TileGemm, encode_bitmap, make_digits_trace
from ref.traces import load_trace
from sim.bitmap_codec_vectors import trace_vectors
from sim.core_program import encode_program

# (operand_bits, bus_elems, tile_k): the two presets, several bitmap beats per vector
# (bus_bits = 2 < tile_k), one element per beat, a dense-beat count that is not a power of two, and
# one-beat vectors.
GEOMETRIES = [(4, 4, 8), (8, 16, 64), (2, 1, 5), (3, 2, 12), (8, 8, 24), (4, 8, 8)]
DENSITIES = (0.0, 0.1, 0.5, 0.9, 1.0)


def codec_config(ob: int, w: int, k: int) -> StagConfig:
    """A core configuration with the codec's geometry (1x1 output tiles keep programs small)."""
    return StagConfig(name="codec", operand_bits=ob, bus_elems=w, tile_k=k, tile_m=1, tile_n=1, lanes=1,
                      max_reduction=max(k, 2) if k & (k - 1) == 0 else 1 << k.bit_length())


def random_vector(rng: random.Random, ob: int, k: int, density: float, extremes: bool = True) -> list[int]:
    low, high = -(1 << (ob - 1)), (1 << (ob - 1)) - 1
    out = []
    for _ in range(k):
        if rng.random() >= density:
            out.append(0)
        elif extremes and rng.random() < 0.3:
            out.append(rng.choice((low, high, -1, 1)))
        else:
            out.append(rng.choice([v for v in (rng.randint(low, high), low) if v != 0]))
    return out


def vector_set(rng: random.Random, ob: int, k: int, per_density: int) -> list[list[int]]:
    """Every density, shuffled, plus the all-most-negative and all-max vectors."""
    low, high = -(1 << (ob - 1)), (1 << (ob - 1)) - 1
    vectors = [random_vector(rng, ob, k, d) for d in DENSITIES for _ in range(per_density)]
    vectors += [[low] * k, [high] * k, [0] * k, [low if i % 2 else 0 for i in range(k)]]
    rng.shuffle(vectors)
    return vectors


def contract_beats(vectors: list[list[int]], cfg: StagConfig, fmt: str) -> list[int]:
    """The core's data beats for ``vectors`` sent as A rows in format ``fmt`` (one GEMM each)."""
    k = cfg.tile_k
    commands = []
    for v in vectors:
        a = torch.tensor([v], dtype=torch.int64)
        commands += [TileGemm(0, Operand.of(a, fmt), Operand.dense(torch.zeros((k, 1), dtype=torch.int64))),
                     Drain(0)]
    encoded = encode_program(Program(tuple(commands), acc_bits=cfg.acc_bits, tile_m=1, tile_n=1, tile_k=k), cfg)
    beats, at = [], 0
    dense_b = k // cfg.bus_elems
    for n in encoded.data_per_command:
        if n:
            beats += encoded.data[at:at + n - dense_b]  # drop the B column (dense zeros)
        at += n
    return beats


def check_against_formats(vectors: list[list[int]], compressed: list[int], cfg: StagConfig) -> None:
    """Second reference: the bitmap and values of ``ref.contract.formats.encode_bitmap``."""
    ob, w, k, bus_bits = cfg.operand_bits, cfg.bus_elems, cfg.tile_k, cfg.bus_bits
    nb = -(-k // bus_bits)
    at = 0
    for v in vectors:
        bt = encode_bitmap(torch.tensor([v], dtype=torch.int64))
        bitmap = sum(compressed[at + j] << (j * bus_bits) for j in range(nb))
        assert [bool((bitmap >> i) & 1) for i in range(k)] == bt.bitmap[0].tolist()
        assert bitmap >> k == 0
        at += nb
        n_val = -(-bt.nnz // w)
        codes = []
        for beat in compressed[at:at + n_val]:
            for e in range(w):
                c = (beat >> (e * ob)) & ((1 << ob) - 1)
                codes.append(c - (1 << ob) if c >> (ob - 1) else c)
        assert codes[:bt.nnz] == bt.values.tolist()
        assert all(c == 0 for c in codes[bt.nnz:])
        at += n_val
    assert at == len(compressed)


def stream_through(dut, inputs: list[int], n_out: int, rng: random.Random, *, idle: float, stall: float,
                   drain_cycles: int = 40) -> tuple[list[int], list[int], list[int]]:
    """Send ``inputs`` into ``dut.i_stream`` and take ``n_out`` beats from ``dut.o_stream``.

    ``idle``: chance of holding a beat back for a cycle; ``stall``: chance of ``ready`` low.
    Checks the stream rules on the output (valid and payload hold until the transfer) and, after
    the last expected beat, that nothing more comes out. Returns (outputs, input transfer cycles,
    output transfer cycles).
    """
    width = len(dut.i_stream.payload)
    out, in_at, out_at = [], [], []

    async def bench(ctx):
        sent, cycle, presenting, pending, quiet = 0, 0, False, None, 0
        while quiet < drain_cycles:
            if not presenting and sent < len(inputs):
                presenting = rng.random() >= idle
            ready = len(out) >= n_out or rng.random() >= stall
            ctx.set(dut.i_stream.valid, presenting)
            ctx.set(dut.i_stream.payload, inputs[sent] if presenting else rng.getrandbits(width))
            ctx.set(dut.o_stream.ready, ready)
            _, _, i_ready, o_valid, o_payload = await ctx.tick().sample(
                dut.i_stream.ready, dut.o_stream.valid, dut.o_stream.payload)
            if presenting and i_ready:
                in_at.append(cycle)
                sent += 1
                presenting = False
            if pending is not None:
                assert o_valid and o_payload == pending, f"output changed before its transfer at cycle {cycle}"
            pending = None
            if o_valid:
                if ready:
                    out.append(o_payload)
                    out_at.append(cycle)
                else:
                    pending = o_payload
            cycle += 1
            if len(out) >= n_out and sent == len(inputs):
                quiet += 1
            assert cycle < 50 * (len(inputs) + n_out) + 200, "no progress: the codec is stuck"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, in_at, out_at


def split_dense(vectors: list[list[int]], cfg: StagConfig) -> list[int]:
    return contract_beats(vectors, cfg, "dense")


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_ref_model_equals_core_program(geometry):
    """The cocotb testbench's expected beats (``ref.bitmap_codec``) are the core's wire format."""
    rng = random.Random(7)
    print("seed=7")
    cfg = codec_config(*geometry)
    geo = {"operand_bits": cfg.operand_bits, "bus_elems": cfg.bus_elems, "tile_k": cfg.tile_k}
    vectors = vector_set(rng, cfg.operand_bits, cfg.tile_k, per_density=4)
    assert [b for v in vectors for b in encode_compressed(v, **geo)] == contract_beats(vectors, cfg, "bitmap")
    assert [b for v in vectors for b in dense_beats(v, **geo)] == contract_beats(vectors, cfg, "dense")


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("seed", [1, 2])
def test_encoder_equals_contract_under_stalls(geometry, seed):
    print(f"geometry={geometry} seed={seed}")
    rng = random.Random(seed)
    cfg = codec_config(*geometry)
    vectors = vector_set(rng, cfg.operand_bits, cfg.tile_k, per_density=3)
    expected = contract_beats(vectors, cfg, "bitmap")
    check_against_formats(vectors, expected, cfg)
    dut = BitmapEncoder(operand_bits=cfg.operand_bits, bus_elems=cfg.bus_elems, tile_k=cfg.tile_k)
    got, _, _ = stream_through(dut, split_dense(vectors, cfg), len(expected), rng, idle=0.3, stall=0.4)
    assert got == expected


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("seed", [1, 2])
def test_decoder_equals_contract_under_stalls(geometry, seed):
    print(f"geometry={geometry} seed={seed}")
    rng = random.Random(seed)
    cfg = codec_config(*geometry)
    vectors = vector_set(rng, cfg.operand_bits, cfg.tile_k, per_density=3)
    expected = split_dense(vectors, cfg)
    dut = BitmapDecoder(operand_bits=cfg.operand_bits, bus_elems=cfg.bus_elems, tile_k=cfg.tile_k)
    got, _, _ = stream_through(dut, contract_beats(vectors, cfg, "bitmap"), len(expected), rng,
                               idle=0.3, stall=0.4)
    assert got == expected


@pytest.mark.parametrize("geometry", [(4, 4, 8), (3, 2, 12), (2, 1, 5)])
def test_decoder_ignores_padding_and_bitmap_bits_beyond_tile_k(geometry):
    """docs/core.md: padding elements of the last value beat and bitmap bits at k >= tile_k are ignored."""
    rng = random.Random(3)
    print("seed=3")
    cfg = codec_config(*geometry)
    ob, w, k, bus_bits = cfg.operand_bits, cfg.bus_elems, cfg.tile_k, cfg.bus_bits
    nb = -(-k // bus_bits)
    vectors = [random_vector(rng, ob, k, d) for d in (0.1, 0.5, 0.0, 0.3, 1.0) for _ in range(3)]
    noisy = []
    for v in vectors:
        bitmap = sum(1 << i for i, x in enumerate(v) if x)
        bitmap |= rng.getrandbits(nb * bus_bits) & ~((1 << k) - 1)  # junk above tile_k
        noisy += [(bitmap >> (j * bus_bits)) & ((1 << bus_bits) - 1) for j in range(nb)]
        nonzeros = [x for x in v if x]
        nonzeros += [rng.randint(1, (1 << ob) - 1) for _ in range(-len(nonzeros) % w)]  # junk padding
        for j in range(0, len(nonzeros), w):
            noisy.append(sum((x & ((1 << ob) - 1)) << (e * ob) for e, x in enumerate(nonzeros[j:j + w])))
    expected = split_dense(vectors, cfg)
    dut = BitmapDecoder(operand_bits=ob, bus_elems=w, tile_k=k)
    got, _, _ = stream_through(dut, noisy, len(expected), rng, idle=0.2, stall=0.2)
    assert got == expected


class _RoundTrip(Elaboratable):
    def __init__(self, ob: int, w: int, k: int) -> None:
        self.encoder = BitmapEncoder(operand_bits=ob, bus_elems=w, tile_k=k)
        self.decoder = BitmapDecoder(operand_bits=ob, bus_elems=w, tile_k=k)
        self.i_stream = self.encoder.i_stream
        self.o_stream = self.decoder.o_stream

    def elaborate(self, platform):
        m = Module()
        m.submodules.encoder = self.encoder
        m.submodules.decoder = self.decoder
        wiring.connect(m, self.encoder.o_stream, self.decoder.i_stream)
        return m


@pytest.mark.parametrize("geometry", [(4, 4, 8), (8, 16, 64), (3, 2, 12)])
def test_round_trip_under_stalls(geometry):
    rng = random.Random(4)
    print("seed=4")
    cfg = codec_config(*geometry)
    vectors = vector_set(rng, cfg.operand_bits, cfg.tile_k, per_density=4)
    dense = split_dense(vectors, cfg)
    got, _, _ = stream_through(_RoundTrip(*geometry), dense, len(dense), rng, idle=0.3, stall=0.3)
    assert got == dense


@pytest.fixture(scope="module")
def digits_trace():
    with tempfile.TemporaryDirectory() as root:
        print("make_digits_trace(algo='stochastic_prune', seed=0)")
        yield load_trace(make_digits_trace(f"{root}/sp", algo="stochastic_prune", seed=0))


@pytest.mark.parametrize("preset_name", ["tiny", "default"])
def test_trace_vectors_both_directions(digits_trace, preset_name):
    """ReLU activations (FWD A rows) and pruned gradients (BWW operands) of a real training step."""
    rng = random.Random(5)
    print("seed=5")
    p = preset(preset_name)
    cfg = codec_config(p.operand_bits, p.bus_elems, p.tile_k)
    vectors = trace_vectors(digits_trace, operand_bits=p.operand_bits, tile_k=p.tile_k, limit=40)
    assert len(vectors) == 40
    densities = sorted(sum(1 for x in v if x) / p.tile_k for v in vectors)
    print(f"trace vector densities: min {densities[0]:.2f} median {densities[20]:.2f} max {densities[-1]:.2f}")
    compressed = contract_beats(vectors, cfg, "bitmap")
    dense = split_dense(vectors, cfg)
    check_against_formats(vectors, compressed, cfg)
    encoder = BitmapEncoder(operand_bits=p.operand_bits, bus_elems=p.bus_elems, tile_k=p.tile_k)
    got, _, _ = stream_through(encoder, dense, len(compressed), rng, idle=0.2, stall=0.3)
    assert got == compressed
    decoder = BitmapDecoder(operand_bits=p.operand_bits, bus_elems=p.bus_elems, tile_k=p.tile_k)
    got, _, _ = stream_through(decoder, compressed, len(dense), rng, idle=0.2, stall=0.3)
    assert got == dense


@pytest.mark.parametrize("preset_name", ["tiny", "default"])
def test_latency_as_documented(preset_name):
    """The docstrings' latencies: an output beat is transferred two edges after its last input."""
    p = preset(preset_name)
    cfg = codec_config(p.operand_bits, p.bus_elems, p.tile_k)
    geo = {"operand_bits": p.operand_bits, "bus_elems": p.bus_elems, "tile_k": p.tile_k}
    rng = random.Random(0)
    for vector in ([0] * p.tile_k, [1] * p.tile_k, [0] * (p.tile_k - 1) + [-1]):
        dense, compressed = contract_beats([vector], cfg, "dense"), contract_beats([vector], cfg, "bitmap")
        _, in_at, out_at = stream_through(BitmapEncoder(**geo), dense, len(compressed), rng, idle=0.0, stall=0.0)
        assert out_at[0] == in_at[-1] + 2
        assert out_at == list(range(out_at[0], out_at[0] + len(compressed)))
        _, in_at, out_at = stream_through(BitmapDecoder(**geo), compressed, len(dense), rng, idle=0.0, stall=0.0)
        if len(compressed) == 1 + len(dense):  # every dense beat completed by its own value beat
            assert out_at == [t + 2 for t in in_at[1:]]
        else:  # the first dense beats need only the bitmap; the last waits for its value beat, if any
            assert out_at[0] == in_at[0] + 2
            assert out_at == list(range(out_at[0], out_at[0] + len(dense)))
            assert out_at[-1] >= in_at[-1] + 2


def _steady_bound(vectors: list[list[int]], cfg: StagConfig) -> int:
    """Cycles the format allows at one beat per cycle on each side: per vector the larger of its
    dense and compressed beat counts."""
    w, k, bus_bits = cfg.bus_elems, cfg.tile_k, cfg.bus_bits
    nb = -(-k // bus_bits)
    return sum(max(k // w, nb + -(-sum(1 for x in v if x) // w)) for v in vectors)


@pytest.mark.parametrize("preset_name", ["tiny", "default"])
@pytest.mark.parametrize("density", DENSITIES)
def test_throughput_without_stalls(preset_name, density):
    """With no stalls each side moves one beat per cycle: a run of vectors takes the format's bound
    (per vector the larger of its dense and compressed beat counts) plus a fixed fill latency."""
    rng = random.Random(6)
    p = preset(preset_name)
    cfg = codec_config(p.operand_bits, p.bus_elems, p.tile_k)
    vectors = [random_vector(rng, p.operand_bits, p.tile_k, density, extremes=False) for _ in range(24)]
    compressed = contract_beats(vectors, cfg, "bitmap")
    dense = split_dense(vectors, cfg)
    bound = _steady_bound(vectors, cfg)
    elements = len(vectors) * p.tile_k
    rates = {}
    for name, dut, inputs, outputs in (
        ("encode", BitmapEncoder(operand_bits=p.operand_bits, bus_elems=p.bus_elems, tile_k=p.tile_k),
         dense, compressed),
        ("decode", BitmapDecoder(operand_bits=p.operand_bits, bus_elems=p.bus_elems, tile_k=p.tile_k),
         compressed, dense),
    ):
        got, in_at, out_at = stream_through(dut, inputs, len(outputs), rng, idle=0.0, stall=0.0)
        assert got == outputs
        cycles = out_at[-1] - in_at[0] + 1
        rates[name] = elements / cycles
        slack = p.tile_k // p.bus_elems + 4  # filling the first vector, and the output register
        assert cycles <= bound + slack, f"{name}: {cycles} cycles for a bound of {bound}"
        assert rates[name] >= min(1.0, p.tile_k / (p.tile_k // p.bus_elems + 1)) - 0.05
    print(f"{preset_name} density {density:.0%}: encode {rates['encode']:.2f}, decode {rates['decode']:.2f} "
          f"elements/cycle (format bound {elements / bound:.2f})")


@pytest.mark.parametrize("cls", [BitmapEncoder, BitmapDecoder])
@pytest.mark.parametrize("kwargs,message", [
    ({"operand_bits": 1, "bus_elems": 4, "tile_k": 8}, "operand_bits must be an integer in 2..32, not 1"),
    ({"operand_bits": 4, "bus_elems": 3, "tile_k": 9}, "bus_elems must be a power of two in 1..64, not 3"),
    ({"operand_bits": 4, "bus_elems": 4, "tile_k": 10},
     "tile_k must be an integer in 1..1024 and a multiple of bus_elems = 4, not 10"),
    ({"operand_bits": 4, "bus_elems": 4, "tile_k": True}, "tile_k must be"),
])
def test_invalid_parameters(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)
