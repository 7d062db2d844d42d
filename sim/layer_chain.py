"""One layer step of each algorithm on the RTL: the core and the generated units in the Amaranth simulator.

``run_layer_chain(inputs, config)`` runs ``ref.contract.layer_step.layer_step`` (the composition:
which program or unit command runs when, and the host's glue) with :class:`RtlBackend`, which
executes every program on ``hw.core.SparseCore`` (``sim.core_amaranth.run_core_amaranth``), with
its bitmap-compressed operands made by ``hw.bitmap_codec.BitmapEncoder``, and every unit command
(``ref.contract.units``) on a fresh component from ``hw.units.build_unit(config, name)``. Data
moves between them in Python as a host driver would move it: encode a tensor into the unit's
stream beats (the wire formats of ``ref.relu_mask_codes``, ``ref.bitmap_codec`` and
docs/core.md), simulate, decode the output beats. Nothing
the backend returns is computed in Python; the host glue of the step (lowering, reassembly,
ReSprop's broadcast add and requantization) is the same code for the RTL and the reference.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from amaranth.sim import Simulator

from hw.config import StagConfig
from hw.resprop import resprop_command_layout
from hw.stochastic_pruner import PruneMode
from hw.units import build_unit
from ref import bitmap_codec as codec
from ref.contract import BitmapTile, Program, decode_bitmap, encode_bitmap
from ref.contract.layer_step import LayerInputs, LayerStep, StepParams, layer_step
from ref.contract.units import (
    BitmapDecode,
    BitmapEncode,
    MaskApply,
    PruneOut,
    ReluMaskEmit,
    ReluMaskOut,
    ReSpropDifference,
    ReSpropOut,
    StochasticPrune,
    TopKOut,
    TopKSelect,
    UnitCommand,
    UnitResult,
)
from ref.relu_mask_codes import bitmap_beats, pack_codes, unpack_bitmap, unpack_codes
from sim.core_amaranth import run_core_amaranth
from sim.core_program import encode_program

__all__ = ["RtlBackend", "run_layer_chain", "step_params"]


def step_params(config: StagConfig) -> StepParams:
    """The :class:`StepParams` of a generated design."""
    return StepParams(
        operand_bits=config.operand_bits, acc_bits=config.acc_bits, tile_m=config.tile_m, tile_n=config.tile_n,
        tile_k=config.tile_k, bus_elems=config.bus_elems, lfsr_width=config.lfsr_width, lfsr_taps=config.lfsr_taps,
        prune_frac_bits=config.prune_frac_bits, prune_count_bits=config.prune_count_bits,
        topk_max_elems=config.topk_max_elems, resprop_max_elems=config.resprop_max_elems,
        resprop_max_batch=config.resprop_max_batch)  # fmt: skip


def _drive(unit, inputs: dict[str, list], outputs: dict[str, int], rng: random.Random, *, stall: float,
           read_after: tuple[str, ...] = ()) -> tuple[dict[str, list], dict[str, int]]:
    """Simulate ``unit``: send each input port's payloads in order (one source per port), take
    ``outputs[port]`` beats from each output port, with random valid/ready stalls of probability
    ``stall``. Returns the received payloads per port and the values of ``read_after`` signals once
    every output has arrived. Raises if the unit stops making progress."""
    received: dict[str, list] = {name: [] for name in outputs}
    finals: dict[str, int] = {}
    done: list[str] = []
    limit = 200 + 60 * (sum(len(v) for v in inputs.values()) + sum(outputs.values()))

    def source(port, items, r):
        async def bench(ctx):
            for item in items:
                while stall and r.random() < stall:
                    ctx.set(port.valid, 0)
                    await ctx.tick()
                ctx.set(port.payload, item)
                ctx.set(port.valid, 1)
                while True:
                    *_, ready = await ctx.tick().sample(port.ready)
                    if ready:
                        break
            ctx.set(port.valid, 0)
        return bench

    def sink(name, port, count, r):
        async def bench(ctx):
            cycles = 0
            while len(received[name]) < count:
                ready = not (stall and r.random() < stall)
                ctx.set(port.ready, ready)
                *_, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                if valid and ready:
                    received[name].append(payload)
                cycles += 1
                if cycles > limit:
                    raise RuntimeError(f"{type(unit).__name__}.{name}: {len(received[name])} of {count} "
                                       f"beats after {cycles} cycles")
            ctx.set(port.ready, 0)
            done.append(name)
            if len(done) == len(outputs):
                for sig in read_after:
                    finals[sig] = ctx.get(getattr(unit, sig))
        return bench

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    for name, items in inputs.items():
        sim.add_testbench(source(getattr(unit, name), items, random.Random(rng.random())))
    for name, count in outputs.items():
        sim.add_testbench(sink(name, getattr(unit, name), count, random.Random(rng.random())))
    sim.run()
    return received, finals


@dataclass
class RtlBackend:
    """A :class:`ref.contract.layer_step.StepBackend` on the RTL of ``config``.

    ``stall``: probability of a withheld valid/ready per cycle on every stream (core and units).
    ``log`` records (what, cycles or beats) per call, for reports.
    """

    config: StagConfig
    seed: int = 0
    stall: float = 0.0
    log: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    # -- core ------------------------------------------------------------------------------------
    def gemm(self, program: Program) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The program on the core; its bitmap-compressed operand vectors come from the bitmap
        encoder (the host sends the encoder dense vectors and forwards its output to the core)."""
        enc = encode_program(program, self.config)
        data = list(enc.data)
        if enc.compressed:
            beats = self.encode_vectors([list(codes) for _, _, codes in enc.compressed])
            for (first, count, _), got in zip(enc.compressed, beats, strict=True):
                data[first:first + count] = got
        run = run_core_amaranth(program, self.config, seed=self._rng.randrange(1 << 30), stall=self.stall,
                                data=data)
        self.log.append(("core", run.cycles))
        return run.tiles, run.masks

    def unit(self, command: UnitCommand) -> UnitResult:
        """One unit command on a fresh component of the unit that runs it."""
        if isinstance(command, ReluMaskEmit):
            return self._relu_emit(command)
        if isinstance(command, MaskApply):
            return self._mask_apply(command)
        if isinstance(command, StochasticPrune):
            return self._prune(command)
        if isinstance(command, TopKSelect):
            return self._topk(command)
        if isinstance(command, ReSpropDifference):
            return self._resprop(command)
        if isinstance(command, BitmapEncode):
            return self._bitmap_encode(command)
        if isinstance(command, BitmapDecode):
            return self._bitmap_decode(command)
        raise ValueError(f"not a unit command: {type(command).__name__}")

    # -- ReLU mask units: tensors travel as tile_k-code vectors (zero-padded at the end) ---------
    def _vectors(self, t: torch.Tensor) -> list[list[int]]:
        ve = self.config.tile_k
        flat = t.flatten().tolist()
        flat += [0] * (-len(flat) % ve)
        return [flat[i:i + ve] for i in range(0, len(flat), ve)]

    def _relu_emit(self, command: ReluMaskEmit) -> ReluMaskOut:
        cfg, z = self.config, command.z
        ob, be, ve = cfg.operand_bits, cfg.bus_elems, cfg.tile_k
        vectors = self._vectors(z)
        beats = [b for v in vectors for b in pack_codes(v, be, ob)]
        mask_beats = -(-ve // cfg.bus_bits)
        got, _ = _drive(build_unit(cfg, "relu_mask"), {"i_stream": beats},
                        {"o_act": len(beats), "o_mask": mask_beats * len(vectors)}, self._rng, stall=self.stall)
        act = unpack_codes(got["o_act"], be, ob)[:z.numel()]
        mask = [m for i in range(len(vectors))
                for m in unpack_bitmap(got["o_mask"][i * mask_beats:(i + 1) * mask_beats], ve, cfg.bus_bits)]
        self.log.append(("relu_mask", len(beats)))
        return ReluMaskOut(torch.tensor(act, dtype=torch.int64).reshape(z.shape),
                           torch.tensor(mask[:z.numel()], dtype=torch.bool).reshape(z.shape))

    def _mask_apply(self, command: MaskApply) -> torch.Tensor:
        cfg, dx = self.config, command.dx
        ob, be = cfg.operand_bits, cfg.bus_elems
        vectors = self._vectors(dx)
        masks = [[bool(m) for m in v] for v in self._vectors(command.mask.to(torch.int64))]
        data = [b for v in vectors for b in pack_codes(v, be, ob)]
        mbeats = [b for k in masks for b in bitmap_beats(k, cfg.bus_bits)]
        got, _ = _drive(build_unit(cfg, "mask_apply"), {"i_data": data, "i_mask": mbeats},
                        {"o_data": len(data)}, self._rng, stall=self.stall)
        self.log.append(("mask_apply", len(data)))
        return torch.tensor(unpack_codes(got["o_data"], be, ob)[:dx.numel()], dtype=torch.int64).reshape(dx.shape)

    # -- stochastic pruner -------------------------------------------------------------------------
    def _prune(self, command: StochasticPrune) -> PruneOut:
        q = command.codes
        codes = q.flatten().tolist()
        unit = build_unit(self.config, "stochastic_pruner")
        ctrl = {"mode": PruneMode.TWO_PASS, "n": len(codes), "c_fixed": command.c_fixed}
        # The reseed is taken at once (i_seed is always ready); draws start after the summing pass.
        got, finals = _drive(unit, {"i_seed": [command.seed], "i_ctrl": [ctrl], "i_stream": codes + codes},
                             {"o_stream": len(codes)}, self._rng, stall=self.stall, read_after=("tau",))
        self.log.append(("stochastic_pruner", 2 * len(codes)))
        return PruneOut(torch.tensor(got["o_stream"], dtype=torch.int64).reshape(q.shape), int(finals["tau"]))

    # -- top-K ---------------------------------------------------------------------------------------
    def _topk(self, command: TopKSelect) -> TopKOut:
        codes = command.codes
        flat = codes.flatten().tolist()
        cmd = {"n": len(flat), "k": command.k, "slice_len": command.slice_len, "period": 1, "restart": 0,
               "force": 1}
        got, _ = _drive(build_unit(self.config, "topk"), {"i_cmd": [cmd], "i_data": flat},
                        {"o_data": len(flat), "o_status": 1}, self._rng, stall=self.stall)
        status = got["o_status"][0]
        self.log.append(("topk", len(flat)))
        values = torch.tensor([int(p.value) for p in got["o_data"]], dtype=torch.int64)
        keep = torch.tensor([bool(p.keep) for p in got["o_data"]], dtype=torch.bool)
        return TopKOut(values=values.reshape(codes.shape), keep=keep.reshape(codes.shape),
                       threshold=int(status.threshold), kept=int(status.kept))

    # -- ReSprop -------------------------------------------------------------------------------------
    def _resprop(self, command: ReSpropDifference) -> ReSpropOut:
        """A dense one-sample pass stores ``p`` in the fresh unit, then the sparse pass over dY."""
        cfg = self.config
        p, dy = command.p.flatten().tolist(), command.dy.flatten().tolist()
        layout = resprop_command_layout(cfg.operand_bits, cfg.resprop_max_elems, cfg.resprop_max_batch)
        store = {"n_samples": 1, "elems": len(p), "sample": 0, "dense": 1, "target": command.target_cp,
                 "load_thr": 0, "thr_mant": 0, "thr_exp": 0}
        sparse = {"n_samples": command.dy.shape[0], "elems": len(p), "sample": command.sample, "dense": 0,
                  "target": command.target_cp, "load_thr": 1, "thr_mant": command.load[0],
                  "thr_exp": command.load[1]}
        got, _ = _drive(build_unit(cfg, "resprop"), {"i_cmd": [layout.const(store), layout.const(sparse)],
                                                     "i_dy": p + dy},
                        {"o_s": len(p) + len(dy), "o_done": 2}, self._rng, stall=self.stall)
        done = got["o_done"][1]
        self.log.append(("resprop", len(p) + len(dy)))
        s = torch.tensor([int(v) for v in got["o_s"][len(p):]], dtype=torch.int64).reshape(command.dy.shape)
        return ReSpropOut(s=s, nnz=int(done.nnz), thr_used=int(done.thr_used), exp_after=int(done.thr_exp))

    # -- bitmap codec --------------------------------------------------------------------------------
    def _geometry(self) -> dict[str, int]:
        cfg = self.config
        return {"operand_bits": cfg.operand_bits, "bus_elems": cfg.bus_elems, "tile_k": cfg.tile_k}

    def encode_vectors(self, vectors: list[list[int]]) -> list[list[int]]:
        """The encoder's compressed beats of each dense vector (split by each vector's length rule)."""
        geo = self._geometry()
        dense = [b for v in vectors for b in codec.dense_beats(v, **geo)]
        counts = [codec.compressed_beats(sum(1 for e in v if e), **geo) for v in vectors]
        got, _ = _drive(build_unit(self.config, "bitmap_encode"), {"i_stream": dense},
                        {"o_stream": sum(counts)}, self._rng, stall=self.stall)
        self.log.append(("bitmap_encode", len(dense)))
        out, start = [], 0
        for n in counts:
            out.append([int(b) for b in got["o_stream"][start:start + n]])
            start += n
        return out

    def _bitmap_encode(self, command: BitmapEncode) -> BitmapTile:
        vectors = command.vectors.tolist()
        beats = self.encode_vectors(vectors)
        dense = [codec.decode_compressed(b, **self._geometry())[0] for b in beats]
        return encode_bitmap(torch.tensor(dense, dtype=torch.int64).reshape(command.vectors.shape))

    def _bitmap_decode(self, command: BitmapDecode) -> torch.Tensor:
        geo = self._geometry()
        rows = decode_bitmap(command.tile).tolist()
        compressed = [b for v in rows for b in codec.encode_compressed(v, **geo)]
        per_vector = self.config.tile_k // self.config.bus_elems
        got, _ = _drive(build_unit(self.config, "bitmap_decode"), {"i_stream": compressed},
                        {"o_stream": per_vector * len(rows)}, self._rng, stall=self.stall)
        self.log.append(("bitmap_decode", len(compressed)))
        beats = [int(b) for b in got["o_stream"]]
        dense = [codec.decode_dense(beats[i:i + per_vector], **geo) for i in range(0, len(beats), per_vector)]
        return torch.tensor(dense, dtype=torch.int64).reshape(command.tile.shape)


def run_layer_chain(inputs: LayerInputs, config: StagConfig, *, seed: int = 0,
                    stall: float = 0.0) -> tuple[LayerStep, RtlBackend]:
    """The layer step of ``inputs.algo`` with every program and unit on the RTL of ``config``."""
    backend = RtlBackend(config, seed=seed, stall=stall)
    return layer_step(inputs, step_params(config), backend), backend
